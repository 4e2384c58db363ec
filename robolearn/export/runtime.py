"""Robot-side policy runtime: load an artifact, validate inputs, infer, clamp and rate-limit outputs.

Imports only numpy, onnxruntime and safetensors (torch only for backend="torch"), so a robot computer
needs `pip install 'robolearn[export]'` without torch::

    rt = PolicyRuntime.load("artifacts/hover", max_age_s=0.05)
    a = rt.act(obs, stamp=msg_time, now=clock_now)   # (A,) normalized, clamped to the manifest limits
    cmd = rt.to_physical(a)                          # offset + scale * a, per action term
"""

from __future__ import annotations

import copy
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from robolearn.export.artifact import (
    CheckpointError,
    RobolearnError,
    one_line,
    read_manifest,
    require,
    term_offsets,
    verify_files,
)

BACKENDS = ("onnx", "torch")

Backend = Callable[[np.ndarray], np.ndarray]
"""Batched inference: float32 raw observations (B, D) -> normalized actions (B, A)."""


class InvalidInputError(RobolearnError):
    """An observation has the wrong shape or type, or holds NaN/inf (the message names the term)."""


class StaleInputError(RobolearnError):
    """An observation is older than `max_age_s` (or stamped in the future: clocks disagree)."""


def _onnx_backend(artifact: Path, manifest: dict[str, Any], threads: int) -> Backend:
    """An onnxruntime session on CPU; checks the graph's input/output names and shapes against the manifest."""
    ort = require("onnxruntime", "export")
    if "onnx" not in manifest["files"]:
        raise CheckpointError(f"{artifact / 'manifest.json'}: missing key 'files.onnx' (exported without the onnx "
                              "target; use backend='torch')")
    path = artifact / manifest["files"]["onnx"]["path"]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads  # a small MLP: one thread has the lowest and steadiest latency
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf/... for malformed graphs
        raise CheckpointError(f"{path}: not a loadable ONNX model ({one_line(e)})") from None
    d, a = manifest["observation"]["dim"], manifest["action"]["dim"]
    ins, outs = sess.get_inputs(), sess.get_outputs()
    if [i.name for i in ins] != ["obs"] or [o.name for o in outs] != ["action"]:
        raise CheckpointError(f"{path}: graph inputs/outputs are {[i.name for i in ins]}/{[o.name for o in outs]}, "
                              "expected ['obs']/['action']")
    if len(ins[0].shape) != 2 or ins[0].shape[1] != d:
        raise CheckpointError(f"{path}: input 'obs' has shape {ins[0].shape}, manifest key 'observation.dim' is {d}")
    if len(outs[0].shape) != 2 or outs[0].shape[1] != a:
        raise CheckpointError(f"{path}: output 'action' has shape {outs[0].shape}, manifest key 'action.dim' is {a}")

    def infer(x: np.ndarray) -> np.ndarray:
        return sess.run(["action"], {"obs": x})[0]

    return infer


def _torch_backend(manifest: dict[str, Any], weights: dict[str, np.ndarray]) -> Backend:
    """The MLPPolicy rebuilt from the manifest's network description and the safetensors weights."""
    torch = require("torch", "all")
    from robolearn.networks.mlp import MLPPolicy

    policy = MLPPolicy.from_description(manifest["network"])
    norm = manifest["observation"]["normalization"]
    policy.normalizer.eps, policy.normalizer.clip = norm["eps"], norm["clip"]
    policy.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
    policy.eval()

    def infer(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return policy(torch.from_numpy(x)).numpy()

    return infer


class PolicyRuntime:
    """A loaded policy artifact: validated inputs in, clamped (optionally rate-limited) normalized actions out."""

    def __init__(
        self,
        path: str | Path,
        backend: str = "onnx",
        *,
        max_age_s: float | None = None,
        max_delta_per_step: float | None = None,
        latency_window: int = 1000,
        threads: int = 1,
        verify_hashes: bool = True,
        self_check: bool = True,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend '{backend}'; choose from {list(BACKENDS)}")
        if max_age_s is not None and not max_age_s > 0:
            raise ValueError(f"max_age_s must be > 0, got {max_age_s}")
        if max_delta_per_step is not None and not max_delta_per_step > 0:
            raise ValueError(f"max_delta_per_step must be > 0, got {max_delta_per_step}")
        self.path = Path(path)
        m = read_manifest(self.path)
        weights = verify_files(self.path, m, hashes=verify_hashes)
        self._manifest = m
        self.backend = backend
        self._infer = self._make_backend(m, weights, threads)
        self.max_age_s, self.max_delta_per_step = max_age_s, max_delta_per_step

        obs, act = m["observation"], m["action"]
        self._obs_dim, self._action_dim = int(obs["dim"]), int(act["dim"])
        self._low, self._high = float(act["low"]), float(act["high"])
        self._obs_slices = [(t["name"], t["offset"], t["offset"] + t["dim"]) for t in obs["terms"]]
        self._scale = np.array([s for t in act["terms"] for s in t["scale"]], dtype=np.float64)
        self._offset = np.array([o for t in act["terms"] for o in t["offset"]], dtype=np.float64)
        self._prev: np.ndarray | None = None  # last output, for the rate limit (B, A)
        self._latency: deque[float] = deque(maxlen=latency_window)
        self._calls = self._rejected = 0
        if self_check and "check" in m:
            self._self_check()

    @classmethod
    def load(cls, path: str | Path, backend: str = "onnx", **kwargs: Any) -> PolicyRuntime:
        """Load and verify any artifact directory: an MLP here, ACT / Diffusion Policy as a `ChunkPolicyRuntime`.

        Same keywords as the constructor (plus `sampler_steps` for diffusion).
        """
        if cls is PolicyRuntime and read_manifest(Path(path))["network"]["kind"] != "mlp":
            from robolearn.export.chunked import ChunkPolicyRuntime

            return ChunkPolicyRuntime(path, backend, **kwargs)
        return cls(path, backend, **kwargs)

    def _make_backend(self, m: dict[str, Any], weights: dict[str, np.ndarray], threads: int) -> Backend:
        """The inference function of an MLP artifact."""
        if m["network"]["kind"] != "mlp":
            raise CheckpointError(f"{self.path}: network.kind is '{m['network']['kind']}'; load the artifact with "
                                  "PolicyRuntime.load()")
        return _onnx_backend(self.path, m, threads) if self.backend == "onnx" else _torch_backend(m, weights)

    def _self_check(self) -> None:
        """Run the manifest's check observations through this backend and compare with the exporter's actions."""
        chk = self._manifest["check"]
        got = self._infer(np.asarray(chk["obs"], dtype=np.float32))
        err = float(np.abs(got - np.asarray(chk["action"], dtype=np.float32)).max())
        if not err <= float(chk["atol"]):
            raise CheckpointError(f"{self.path}: backend '{self.backend}' gives actions {err:.3g} away from the "
                                  f"manifest key 'check.action' (atol {chk['atol']}); numeric drift or wrong files")

    # ---- properties

    @property
    def manifest(self) -> dict[str, Any]:
        """A copy of the validated manifest."""
        return copy.deepcopy(self._manifest)

    @property
    def obs_dim(self) -> int:
        """Observation vector length D."""
        return self._obs_dim

    @property
    def action_dim(self) -> int:
        """Action vector length A."""
        return self._action_dim

    @property
    def obs_terms(self) -> tuple[dict[str, Any], ...]:
        """Observation terms in order (name, dim, unit, source, description, offset)."""
        return tuple(copy.deepcopy(self._manifest["observation"]["terms"]))

    @property
    def action_terms(self) -> tuple[dict[str, Any], ...]:
        """Action terms in order (name, dim, unit, scale, offset, description) plus their start index."""
        terms = self._manifest["action"]["terms"]
        starts = term_offsets(t["dim"] for t in terms)
        return tuple({**copy.deepcopy(t), "index": i} for t, i in zip(terms, starts, strict=True))

    @property
    def image_inputs(self) -> tuple[str, ...]:
        """Dataset keys of camera inputs the policy reads besides the observation vector (none for an MLP)."""
        return ()

    @property
    def control_rate_hz(self) -> float:
        """Rate the policy was trained to run at."""
        return float(self._manifest["control_rate_hz"])

    # ---- inference

    def reset(self) -> None:
        """Forget the previous action (rate limit) and any queued actions; call at episode start or after a pause."""
        self._prev = None

    def act(self, obs: np.ndarray, *, stamp: float | None = None, now: float | None = None) -> np.ndarray:
        """Normalized action (A,) or (B, A) for a raw observation (D,) or (B, D), clamped to [low, high].

        With `max_age_s` set, `stamp` (the observation's time) is required and `now` defaults to
        `time.time()`; pass `now` when stamps come from another clock (ROS time, monotonic).
        """
        t0 = time.perf_counter()
        try:
            x, single = self._validate(obs, stamp, now)
        except RobolearnError:
            self._rejected += 1
            raise
        a = np.clip(self._infer(x), self._low, self._high)  # (B, A)
        if self.max_delta_per_step is not None:
            if self._prev is not None and self._prev.shape != a.shape:
                self._rejected += 1
                raise InvalidInputError(f"batch of {a.shape[0]} after a batch of {self._prev.shape[0]} while "
                                        "rate limiting; call reset() first")
            if self._prev is not None:
                a = self._prev + np.clip(a - self._prev, -self.max_delta_per_step, self.max_delta_per_step)
            self._prev = a.copy()
        self._calls += 1
        self._latency.append(time.perf_counter() - t0)
        return a[0] if single else a

    def _validate(self, obs: Any, stamp: float | None, now: float | None) -> tuple[np.ndarray, bool]:
        """Shape, dtype, finiteness and age checks; returns float32 (B, D) and whether the input was (D,)."""
        if self.max_age_s is not None:
            if stamp is None:
                raise InvalidInputError(f"act() needs stamp= when max_age_s is set ({self.max_age_s} s)")
            age = (time.time() if now is None else now) - stamp
            if age > self.max_age_s:
                raise StaleInputError(f"observation is {age * 1e3:.1f} ms old (max_age_s = {self.max_age_s})")
            if age < -self.max_age_s:
                raise StaleInputError(f"observation is stamped {-age * 1e3:.1f} ms in the future; stamp and now "
                                      "come from different clocks?")
        arr = np.asarray(obs)
        if arr.dtype.kind not in "fiu":
            raise InvalidInputError(f"observation has dtype {arr.dtype}; expected a real (float) array")
        single = arr.ndim == 1
        if not (arr.ndim in (1, 2) and arr.shape[-1] == self._obs_dim and arr.size > 0):
            raise InvalidInputError(f"observation has shape {arr.shape}; expected ({self._obs_dim},) or "
                                    f"(B, {self._obs_dim})")
        x = np.ascontiguousarray(arr.reshape(-1, self._obs_dim), dtype=np.float32)
        finite = np.isfinite(x)
        if not finite.all():
            bad = [f"'{name}' (indices {lo}..{hi - 1})" for name, lo, hi in self._obs_slices
                   if not finite[:, lo:hi].all()]
            rows = "" if single else f" in rows {np.flatnonzero(~finite.all(axis=1)).tolist()[:8]}"
            which = f"term {bad[0]} is" if len(bad) == 1 else f"terms {', '.join(bad)} are"
            raise InvalidInputError(f"observation {which} not finite{rows}")
        return x, single

    def to_physical(self, a: np.ndarray) -> np.ndarray:
        """Robot command offset + scale * a per action term, with `a` first clamped to [low, high] (float64)."""
        arr = np.asarray(a, dtype=np.float64)
        if arr.ndim not in (1, 2) or arr.shape[-1] != self._action_dim:
            raise InvalidInputError(f"action has shape {arr.shape}; expected ({self._action_dim},) or "
                                    f"(B, {self._action_dim})")
        if not np.isfinite(arr).all():
            raise InvalidInputError("action holds NaN/inf")
        return self._offset + self._scale * np.clip(arr, self._low, self._high)

    def physical_limits(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-dimension (min, max) of `to_physical` output."""
        lo, hi = self._offset + self._scale * self._low, self._offset + self._scale * self._high
        return np.minimum(lo, hi), np.maximum(lo, hi)

    def stats(self) -> dict[str, float | int]:
        """Call counts and act() latency (ms) over the rolling window: p50, p99, max."""
        lat = np.asarray(self._latency, dtype=np.float64) * 1e3
        out: dict[str, float | int] = {"calls": self._calls, "rejected": self._rejected, "window": len(lat)}
        if len(lat):
            out |= {"p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
                    "max_ms": float(lat.max())}
        return out

    def __repr__(self) -> str:
        return (f"PolicyRuntime({str(self.path)!r}, backend={self.backend!r}, task={self._manifest['task']!r}, "
                f"obs_dim={self._obs_dim}, action_dim={self._action_dim})")


class ActionQueue:
    """Action chunks → one action per control step: a plain queue, or ACT's temporal ensembling.

    A chunking policy predicts `chunk` future actions (chunk, A) at once. Without ensembling the queue plays a
    chunk out and asks for the next one when it runs dry (`needs_chunk`). With `ensemble_coef` = m, a chunk is
    predicted every step and the action for step t averages every chunk that covers t with weights
    w_i = exp(-m * i), i = 0 for the oldest prediction (Zhao et al. 2023, ACT, eq. in sec. 3.3)::

        q = ActionQueue(action_dim=7, chunk=100, ensemble_coef=0.01)
        if q.needs_chunk:
            q.push(policy_chunk)          # (chunk, A)
        a = q.pop()                       # (A,)
    """

    def __init__(self, action_dim: int, chunk: int, *, ensemble_coef: float | None = None) -> None:
        if action_dim <= 0 or chunk <= 0:
            raise ValueError(f"action_dim and chunk must be > 0, got {action_dim}, {chunk}")
        if ensemble_coef is not None and not ensemble_coef >= 0:
            raise ValueError(f"ensemble_coef must be >= 0, got {ensemble_coef}")
        self.action_dim, self.chunk, self.ensemble_coef = action_dim, chunk, ensemble_coef
        self._queue: deque[np.ndarray] = deque()  # plain mode: actions still to play
        self._chunks: deque[np.ndarray] = deque(maxlen=chunk)  # ensembling: newest last, each (chunk, A)
        self._age: deque[int] = deque(maxlen=chunk)  # ensembling: steps since each chunk was pushed

    @property
    def needs_chunk(self) -> bool:
        """Whether the next `pop` needs a fresh chunk first (always when ensembling)."""
        return self.ensemble_coef is not None or not self._queue

    def reset(self) -> None:
        """Drop every queued action and chunk (episode start, after a fault)."""
        self._queue.clear()
        self._chunks.clear()
        self._age.clear()

    def __len__(self) -> int:
        """Actions left to play (plain mode) or chunks being ensembled."""
        return len(self._queue) if self.ensemble_coef is None else len(self._chunks)

    def push(self, chunk: np.ndarray, age: int = 0) -> None:
        """Add a predicted chunk (chunk, A); finite values only.

        `age`: control steps executed since the observation the chunk was computed from (asynchronous inference);
        row `age` is then its prediction for the next `pop`, and the rows before it (steps already executed) are
        dropped. A chunk with `age >= chunk` covers no future step and raises.
        """
        c = np.asarray(chunk, dtype=np.float64)
        if c.shape != (self.chunk, self.action_dim):
            raise InvalidInputError(f"action chunk has shape {c.shape}; expected ({self.chunk}, {self.action_dim})")
        if not np.isfinite(c).all():
            raise InvalidInputError("action chunk holds NaN/inf")
        if not 0 <= age < self.chunk:
            raise InvalidInputError(f"action chunk of {self.chunk} steps pushed {age} steps late covers no future step")
        if self.ensemble_coef is None:
            self._queue.clear()
            self._queue.extend(c[age:])
        else:
            self._chunks.append(c)
            self._age.append(age)

    def pop(self) -> np.ndarray:
        """The action (A,) for this control step."""
        if self.ensemble_coef is None:
            if not self._queue:
                raise InvalidInputError("action queue is empty; push a chunk first (needs_chunk)")
            return self._queue.popleft()
        if not self._chunks:
            raise InvalidInputError("no action chunk to ensemble; push one first")
        # chunk i (oldest first) was pushed age_i steps ago, so its row age_i is its prediction for now
        rows = np.stack([c[age] for c, age in zip(self._chunks, self._age, strict=True)])  # (K, A)
        w = np.exp(-self.ensemble_coef * np.arange(len(rows)))  # w_0 = 1 for the oldest prediction
        a = (w[:, None] * rows).sum(0) / w.sum()
        self._age = deque((age + 1 for age in self._age), maxlen=self.chunk)
        while self._age and self._age[0] >= self.chunk:  # a chunk that no longer covers the next step
            self._age.popleft()
            self._chunks.popleft()
        return a
