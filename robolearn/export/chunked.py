"""Chunking imitation policies (ACT, Diffusion Policy) as standard policy artifacts, and their runtime.

The artifact is the same directory and manifest as an MLP's (schema 2, see robolearn/export/artifact.py): task,
robot, control rate, observation terms (the task's `policy` group, so a robot adapter sees the same names), action
terms with scale/offset/limits, file hashes, provenance. What differs lives under `network` and in the graphs:

- ACT: `policy.onnx` (`files.onnx`): one observation (1, ...) -> action chunk "actions" (1, H, A).
- Diffusion: `encoder.onnx`: observation window (1, To, ...) -> condition "cond" (1, G); `denoiser.onnx`:
  ("sample" (1, H, A), "timestep" (1,), "cond") -> predicted noise "eps". The runtime runs a fixed-step DDIM sampler
  (eta = 0) in numpy with the schedule in `network.sampler`, then un-normalizes with `network.action_normalization`.
- `observation.inputs` maps ONNX input names to dataset keys; float inputs are slices (`offset`) of the flat
  observation vector, so a robot that sends the vector (the ROS 2 policy node) drives a state-based policy as it
  drives an MLP. Camera inputs (uint8 (H, W, C)) come in a dict keyed by dataset key.
- `network` also holds chunk_size, n_action_steps (executed per prediction), n_obs_steps, temporal_ensemble_coef and
  the policy's `describe()`; `weights.safetensors` holds its state_dict (for torch users; the runtime runs ONNX).
- `check`: a seeded input (and diffusion start noise) and the chunk it gave at export, re-run at every load.

The graphs take one robot at a time; `ChunkPolicyRuntime.act` keeps one action queue (and, for diffusion, one
observation history) per batch row, so `robolearn eval` runs N copies through the exact robot-side code path.

On a robot (`async_inference=True`, one row) the next chunk is computed by a background thread while the current
one plays out (`ChunkRunner`), so a control step never waits on the network.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import shutil
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from robolearn.core.errors import CheckpointError, require
from robolearn.export.artifact import (
    FORMAT,
    MANIFEST,
    SCHEMA_VERSION,
    WEIGHTS,
    ExportError,
    _jsonable,
    _non_empty,
    _provenance,
    _write_text,
    finish_artifact,
    one_line,
    sha256_file,
    term_offsets,
)
from robolearn.export.runtime import ActionQueue, Backend, InvalidInputError, PolicyRuntime

if TYPE_CHECKING:
    from robolearn.core.types import TaskSpec

IMAGE_PREFIX = "observation.images."
CHECK_ATOL = 1e-3  # ORT vs torch over a transformer / several DDIM steps in float32
GRAPHS = {"onnx": "policy.onnx", "encoder": "encoder.onnx", "denoiser": "denoiser.onnx"}


def _onnx(module: Any, args: tuple, path: Path, input_names: list[str], output_names: list[str]) -> None:
    torch = require("torch", "export")
    require("onnxscript", "export")
    from robolearn.export.onnx_export import _quiet

    try:
        with _quiet(), torch.no_grad():
            program = torch.onnx.export(module, args, dynamo=True, input_names=input_names,
                                        output_names=output_names, verbose=False)
            program.save(str(path), external_data=False)
    except Exception as e:
        raise ExportError(f"{path}: torch.onnx.export failed ({one_line(e)})") from None


def _terms(policy: Any, spec: TaskSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Observation terms (the task's groups the policy reads, in input order) and the ONNX input specs."""
    terms: list[dict[str, Any]] = []
    inputs: list[dict[str, Any]] = []
    offset = 0
    for i, key in enumerate(policy.input_keys):
        shape = [int(n) for n in policy.features[key]]
        spec_in: dict[str, Any] = {"name": f"in{i}", "key": key, "shape": shape}
        if key.startswith(IMAGE_PREFIX):
            inputs.append({**spec_in, "dtype": "uint8"})
            continue
        group = key.removeprefix("observation.")
        if group not in spec.obs_terms:
            raise ExportError(f"policy input '{key}': task '{spec.name}' has no observation group '{group}' "
                              f"(groups: {', '.join(spec.obs_terms)})")
        dim = sum(t.dim for t in spec.obs_terms[group])
        if shape != [dim]:
            raise ExportError(f"policy input '{key}' has shape {shape}; task '{spec.name}' group '{group}' "
                              f"has ({dim},)")
        terms += [t.to_dict() for t in spec.obs_terms[group]]
        inputs.append({**spec_in, "dtype": "float32", "offset": offset})
        offset += dim
    if not terms:
        raise ExportError("the policy reads no state vector; the artifact needs at least one observation term")
    for t, o in zip(terms, term_offsets(t["dim"] for t in terms), strict=True):
        t["offset"] = o
    return terms, inputs


def export_chunk_policy(policy: Any, out_dir: str | Path, spec: TaskSpec, *, num_inference_steps: int | None = None,
                        source: dict[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Write an ACT or Diffusion policy for task `spec` as a schema-2 artifact directory (atomically); return it.

    `spec` gives the observation/action terms a robot must provide and accept (a policy trained without a task
    cannot be exported: its actions have no meaning on a robot). `num_inference_steps` sets the DDIM steps of a
    diffusion policy's sampler (default: the policy's). An existing artifact is replaced only with `overwrite`.
    """
    torch = require("torch", "export")
    safetensors_torch = require("safetensors.torch", "export")
    out = Path(out_dir)
    if _non_empty(out) and not overwrite:
        raise ExportError(f"{out}: already holds files; refusing to overwrite a saved artifact (overwrite=True)")
    kind = policy.kind
    if kind not in ("act", "diffusion"):
        raise ExportError(f"cannot export policy kind '{kind}' as a chunk policy")
    if spec.action.dim != policy.action_dim:
        raise ExportError(f"policy outputs {policy.action_dim} actions but task '{spec.name}' has {spec.action.dim}")
    terms, inputs = _terms(policy, spec)
    policy = copy.deepcopy(policy).cpu().eval()
    keys, names = policy.input_keys, [s["name"] for s in inputs]
    c = policy.cfg
    t_obs = 1 if kind == "act" else c.n_obs_steps
    examples = tuple(torch.zeros((1, *([t_obs] if kind == "diffusion" else []), *s["shape"]),
                                 dtype=torch.uint8 if s["dtype"] == "uint8" else torch.float32) for s in inputs)
    network: dict[str, Any] = {"kind": kind, "action_dim": policy.action_dim, "n_obs_steps": t_obs,
                               "description": policy.describe()}
    if kind == "act":
        network |= {"chunk_size": c.chunk_size, "n_action_steps": c.n_action_steps,
                    "temporal_ensemble_coef": c.temporal_ensemble_coef}
    else:
        steps = num_inference_steps or (c.num_inference_steps if c.sampler == "ddim" else c.num_train_timesteps)
        if not 1 <= steps <= c.num_train_timesteps:
            raise ExportError(f"num_inference_steps must be in 1..{c.num_train_timesteps}, got {steps}")
        if c.prediction_type != "epsilon":
            raise ExportError(f"the runtime's DDIM sampler needs prediction_type 'epsilon', not '{c.prediction_type}'")
        sch = require("diffusers", "il").DDIMScheduler(num_train_timesteps=c.num_train_timesteps,
                                                       beta_schedule=c.beta_schedule, clip_sample=c.clip_sample,
                                                       prediction_type=c.prediction_type)
        sch.set_timesteps(steps)
        shift, scale = policy.normalizer._get("action")
        network |= {"chunk_size": c.horizon, "n_action_steps": c.n_action_steps, "temporal_ensemble_coef": None,
                    "sampler": {"kind": "ddim", "eta": 0.0, "num_train_timesteps": c.num_train_timesteps,
                                "timesteps": [int(t) for t in sch.timesteps],
                                "alphas_cumprod": sch.alphas_cumprod.double().tolist(),
                                "final_alpha_cumprod": float(sch.final_alpha_cumprod),
                                "clip_sample": bool(c.clip_sample), "prediction_type": c.prediction_type},
                    "action_normalization": {"shift": shift.double().tolist(), "scale": scale.double().tolist()}}
    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "format": FORMAT, "task": spec.name, "robot": spec.robot,
        "control_rate_hz": float(spec.action.rate_hz),
        "observation": {"group": "+".join(s["key"].removeprefix("observation.") for s in inputs
                                          if s["dtype"] == "float32"),
                        "dim": sum(t["dim"] for t in terms), "terms": terms, "inputs": inputs},
        "action": spec.action.to_dict(), "network": network, "files": {},
        "source": _jsonable({**_provenance(), **(source or {})}, "source"),
    }

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        if kind == "act":
            class _ACT(torch.nn.Module):
                def __init__(self, p: Any) -> None:
                    super().__init__()
                    self.p = p

                def forward(self, *xs: Any) -> Any:
                    return self.p.predict_action_chunk.__wrapped__(self.p, dict(zip(keys, xs, strict=True)))

            _onnx(_ACT(policy), examples, tmp / GRAPHS["onnx"], names, ["actions"])
            graphs = ["onnx"]
        else:
            net = policy.inference_net

            class _Encoder(torch.nn.Module):
                def __init__(self, p: Any, net: Any) -> None:
                    super().__init__()
                    self.p, self.net = p, net

                def forward(self, *xs: Any) -> Any:
                    return self.p._condition(self.net, dict(zip(keys, xs, strict=True)), augment=False)

            _onnx(_Encoder(policy, net), examples, tmp / GRAPHS["encoder"], names, ["cond"])
            with torch.no_grad():
                cond = _Encoder(policy, net)(*examples)
            sample = torch.zeros(1, c.horizon, policy.action_dim)
            _onnx(net, (sample, torch.zeros(1, dtype=torch.int64), cond), tmp / GRAPHS["denoiser"],
                  ["sample", "timestep", "cond"], ["eps"])
            graphs = ["encoder", "denoiser"]
        state = {k: (t.detach().float() if t.is_floating_point() else t.detach()).contiguous()
                 for k, t in policy.state_dict().items()}
        safetensors_torch.save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt", "robolearn": FORMAT})
        for key, path in [("weights", WEIGHTS), *((g, GRAPHS[g]) for g in graphs)]:
            manifest["files"][key] = {"path": path, "sha256": sha256_file(tmp / path)}
        _write_text(tmp / MANIFEST, json.dumps(manifest, indent=1, allow_nan=False) + "\n")

        # the self-check: a seeded input through the graphs just written (ACT: must match torch)
        rt = ChunkPolicyRuntime(tmp, self_check=False, verify_hashes=False)
        feed, noise = check_inputs(rt, seed=0)
        chunk = rt.predict_chunk(feed, noise=noise)
        if kind == "act":
            with torch.no_grad():
                want = policy.predict_action_chunk({k: torch.as_tensor(v)[None] for k, v in feed.items()})[0].numpy()
            err = float(np.abs(chunk - want).max())
            if not err <= CHECK_ATOL:
                raise ExportError(f"{out}: ONNX and torch chunks differ by {err:.3g} (> {CHECK_ATOL})")
        manifest["check"] = {"seed": 0, "chunk": chunk.tolist(), "atol": CHECK_ATOL}
        finish_artifact(tmp, out, manifest, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def check_inputs(rt: ChunkPolicyRuntime, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The manifest's self-check input: seeded observations (a window for diffusion) and start noise."""
    rng = np.random.default_rng(seed)
    t_obs = rt.spec["n_obs_steps"]
    window = [t_obs] if rt.kind == "diffusion" else []
    feed = {}
    for s in rt.inputs:
        shape = (*window, *s["shape"])
        feed[s["key"]] = (rng.integers(0, 256, shape, dtype=np.uint8) if s["dtype"] == "uint8"
                          else rng.standard_normal(shape).astype(np.float32))
    noise = (rng.standard_normal((rt.spec["chunk_size"], rt.action_dim)).astype(np.float32)
             if rt.kind == "diffusion" else None)
    return feed, noise


class ChunkPolicyRuntime(PolicyRuntime):
    """An ACT / Diffusion Policy artifact behind the `PolicyRuntime` interface (ONNX Runtime only).

    `act(obs)` takes the flat observation vector (D,) or (B, D) like an MLP's, or — for policies with cameras —
    a dict {dataset key: array} (state (D,) / (B, D), images (H, W, C) / (B, H, W, C) uint8), and returns the action
    of this control step from the row's action queue (temporal ensembling, or n_action_steps per prediction).
    `predict_chunk(obs)` is the raw prediction for one robot. Get one with `PolicyRuntime.load(path)`.
    With `async_inference` (one robot only) chunks are predicted in a background thread (`ChunkRunner`): the
    next one is requested when `prefetch_steps` steps of the current chunk's `n_action_steps` are left.
    """

    def __init__(self, path: str | Path, backend: str = "onnx", *, sampler_steps: int | None = None,
                 async_inference: bool = False, prefetch_steps: int | None = None, **kwargs: Any) -> None:
        if backend != "onnx":
            raise ValueError(f"chunk policies run on ONNX Runtime; backend '{backend}' is not available for them")
        if prefetch_steps is not None and prefetch_steps < 0:
            raise ValueError(f"prefetch_steps must be >= 0, got {prefetch_steps}")
        self._sampler_steps = sampler_steps
        self.runner: ChunkRunner | None = None
        super().__init__(path, backend, **kwargs)
        self.runner = ChunkRunner(self, prefetch_steps) if async_inference else None

    def _make_backend(self, m: dict[str, Any], weights: dict[str, np.ndarray], threads: int) -> Backend:
        ort = require("onnxruntime", "export")
        self.spec = m["network"]
        self.kind = self.spec["kind"]
        if self.kind not in ("act", "diffusion"):
            raise CheckpointError(f"{self.path}: network.kind '{self.kind}' is not a chunk policy")
        self.inputs = m["observation"]["inputs"]
        self._float_inputs = [s for s in self.inputs if s["dtype"] == "float32"]
        self._image_inputs = [s for s in self.inputs if s["dtype"] == "uint8"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3

        def session(key: str) -> Any:
            path = self.path / m["files"][key]["path"]
            try:
                return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            except Exception as e:
                raise CheckpointError(f"{path}: not a loadable ONNX model ({one_line(e)})") from None

        self.sessions = {k: session(k) for k in (("onnx",) if self.kind == "act" else ("encoder", "denoiser"))}
        self._sampler = copy.deepcopy(self.spec.get("sampler"))
        if self._sampler_steps is not None and self.kind == "diffusion":
            k = self._sampler["num_train_timesteps"]
            if not 1 <= self._sampler_steps <= k:
                raise ValueError(f"sampler_steps must be in 1..{k}, got {self._sampler_steps}")
            # diffusers' DDIM "leading" spacing: t = i * (K // steps), i = steps-1 .. 0
            self._sampler["timesteps"] = [i * (k // self._sampler_steps) for i in reversed(range(self._sampler_steps))]
        self._queues: list[ActionQueue] = []
        self._hist: list[list[dict[str, np.ndarray]]] = []
        self._images: dict[str, np.ndarray] = {}
        self.rng = np.random.default_rng(0)  # diffusion start noise
        return self._step_rows

    def _self_check(self) -> None:
        chk = self._manifest["check"]
        if self._sampler != self.spec.get("sampler"):
            return  # another step count than the exporter's: nothing to compare with
        feed, noise = check_inputs(self, int(chk["seed"]))
        err = float(np.abs(self.predict_chunk(feed, noise=noise) - np.asarray(chk["chunk"])).max())
        if not err <= float(chk["atol"]):
            raise CheckpointError(f"{self.path}: the graphs give a chunk {err:.3g} away from the manifest key "
                                  f"'check.chunk' (atol {chk['atol']}); numeric drift or wrong files")

    @property
    def image_inputs(self) -> tuple[str, ...]:
        """Dataset keys of the camera inputs (uint8 (H, W, C)), passed in a dict with the state."""
        return tuple(s["key"] for s in self._image_inputs)

    # ---- one robot

    def predict_chunk(self, obs: Mapping[str, np.ndarray], noise: np.ndarray | None = None,
                      full: bool = False) -> np.ndarray:
        """ACT: the chunk (H, A) for one observation; diffusion: the executed actions (n_action_steps, A).

        `obs` is keyed by dataset key (or ONNX input name); diffusion reads a window {key: (To, ...)}.
        `noise` (H, A) fixes the diffusion sampler's start. `full`: diffusion returns every predicted action from
        the current step on (H - To + 1, A), not only the n_action_steps it executes.
        """
        feed = self._feed(obs)
        if self.kind == "act":
            return self.sessions["onnx"].run(["actions"], feed)[0][0]
        cond = self.sessions["encoder"].run(["cond"], feed)[0]
        s = self._sampler
        h, a_dim = self.spec["chunk_size"], self.action_dim
        x = (self.rng.standard_normal((1, h, a_dim)) if noise is None else np.asarray(noise)[None]).astype(np.float32)
        ac = np.asarray(s["alphas_cumprod"])
        k, steps = s["num_train_timesteps"], len(s["timesteps"])
        for t in s["timesteps"]:
            eps = self.sessions["denoiser"].run(["eps"], {"sample": x, "timestep": np.array([t], np.int64),
                                                          "cond": cond})[0].astype(np.float64)
            prev = t - k // steps
            a_t, a_prev = ac[t], (ac[prev] if prev >= 0 else s["final_alpha_cumprod"])
            # DDIM (eta = 0): x0 = (x - √(1-ᾱ_t) ε) / √ᾱ_t;  x_prev = √ᾱ_prev x0 + √(1-ᾱ_prev) ε
            x0 = (x - np.sqrt(1 - a_t) * eps) / np.sqrt(a_t)
            if s["clip_sample"]:
                x0 = np.clip(x0, -1, 1)
            x = (np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev) * eps).astype(np.float32)
        norm = self.spec["action_normalization"]
        act = x[0] * np.asarray(norm["scale"]) + np.asarray(norm["shift"])
        start = self.spec["n_obs_steps"] - 1
        return act[start:] if full else act[start:start + self.spec["n_action_steps"]]

    def _feed(self, obs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        window = [self.spec["n_obs_steps"]] if self.kind == "diffusion" else []
        feed = {}
        for s in self.inputs:
            x = obs.get(s["key"], obs.get(s["name"]))
            if x is None:
                raise InvalidInputError(f"observation '{s['key']}' missing (inputs: "
                                        f"{', '.join(i['key'] for i in self.inputs)})")
            x = np.asarray(x)
            if list(x.shape) != [*window, *s["shape"]]:
                raise InvalidInputError(f"observation '{s['key']}' has shape {x.shape}, expected "
                                        f"{tuple([*window, *s['shape']])}")
            x = x.astype(s["dtype"], copy=False)
            if x.dtype.kind == "f" and not np.isfinite(x).all():
                raise InvalidInputError(f"observation '{s['key']}' holds NaN/inf")
            feed[s["name"]] = x[None]
        return feed

    # ---- the PolicyRuntime interface (batched: one queue per row)

    def reset(self) -> None:
        """Episode start: clear the action queues, observation histories and the rate limit."""
        super().reset()
        self._queues, self._hist = [], []
        if self.runner is not None:
            self.runner.reset()

    def stats(self) -> dict[str, float | int]:
        """act() latency and counts; with async inference also the chunk inference latency and late/starved steps."""
        out = super().stats()
        return out | self.runner.stats() if self.runner is not None else out

    def close(self) -> None:
        """Stop the background inference thread (async inference); the runtime can still run synchronously."""
        if self.runner is not None:
            self.runner.close()

    def _validate(self, obs: Any, stamp: float | None, now: float | None) -> tuple[np.ndarray, bool]:
        if isinstance(obs, Mapping):
            rows = []
            single = None
            for s in self._float_inputs:
                if s["key"] not in obs:
                    raise InvalidInputError(f"observation '{s['key']}' missing")
                x, d = np.asarray(obs[s["key"]]), s["shape"][0]
                if x.ndim not in (1, 2) or x.shape[-1] != d:
                    raise InvalidInputError(f"observation '{s['key']}' has shape {x.shape}; expected ({d},) "
                                            f"or (B, {d})")
                single = x.ndim == 1 if single is None else single
                rows.append(x.reshape(-1, d))
            vec = np.concatenate(rows, axis=1)
            self._images = {}
            for s in self._image_inputs:
                if s["key"] not in obs:
                    raise InvalidInputError(f"observation '{s['key']}' missing (camera image, uint8 H x W x C)")
                img = np.asarray(obs[s["key"]])
                if img.dtype != np.uint8 or tuple(img.shape[-3:]) != tuple(s["shape"]):
                    raise InvalidInputError(f"observation '{s['key']}' is {img.dtype} {img.shape}; expected uint8 "
                                            f"{tuple(s['shape'])} or (B, {', '.join(map(str, s['shape']))})")
                self._images[s["key"]] = img.reshape(-1, *s["shape"])
            x, _ = super()._validate(vec, stamp, now)
            if any(len(v) != len(x) for v in self._images.values()):
                raise InvalidInputError("camera images and state have different batch sizes")
            return x, bool(single)
        if self._image_inputs:
            cams = ", ".join(s["key"] for s in self._image_inputs)
            raise InvalidInputError(f"this policy also reads camera images ({cams}); pass a dict "
                                    "{dataset key: array}")
        return super()._validate(obs, stamp, now)

    def _step_rows(self, x: np.ndarray) -> np.ndarray:
        """One control step for each row of (B, D): push a fresh chunk where needed, pop the row's action."""
        b = len(x)
        if not self._queues:
            coef = self.spec["temporal_ensemble_coef"]
            size = self.spec["chunk_size"] if coef is not None else self.spec["n_action_steps"]
            self._queues = [ActionQueue(self.action_dim, size, ensemble_coef=coef) for _ in range(b)]
            self._hist = [[] for _ in range(b)]
        elif len(self._queues) != b:
            raise InvalidInputError(f"batch of {b} after a batch of {len(self._queues)}; call reset() first")
        if self.runner is not None and b != 1:
            raise InvalidInputError(f"asynchronous chunk inference runs one robot; got a batch of {b}")
        out = np.empty((b, self.action_dim), dtype=np.float32)
        for i in range(b):
            obs = {s["key"]: x[i, s["offset"]:s["offset"] + s["shape"][0]] for s in self._float_inputs}
            obs |= {k: v[i] for k, v in self._images.items()}
            if self.kind == "diffusion":
                to = self.spec["n_obs_steps"]
                self._hist[i] = ((self._hist[i] or [obs] * (to - 1)) + [obs])[-to:]
            if self.runner is not None:
                feed = obs if self.kind == "act" else {k: np.stack([o[k] for o in self._hist[i]]) for k in obs}
                out[i] = self.runner.step({k: np.array(v, copy=True) for k, v in feed.items()})
                continue
            q = self._queues[i]
            if q.needs_chunk:
                if self.kind == "act":
                    chunk = self.predict_chunk(obs)
                    q.push(chunk if self.spec["temporal_ensemble_coef"] is not None
                           else chunk[:self.spec["n_action_steps"]])
                else:
                    q.push(self.predict_chunk({k: np.stack([o[k] for o in self._hist[i]]) for k in obs}))
            out[i] = q.pop()
        return out

    def __repr__(self) -> str:
        return (f"ChunkPolicyRuntime({str(self.path)!r}, kind={self.kind!r}, task={self._manifest['task']!r}, "
                f"obs_dim={self.obs_dim}, action_dim={self.action_dim}, chunk={self.spec['chunk_size']})")


def _background_priority(nice: int = 5) -> None:
    """Run the calling thread below the control loop: SCHED_OTHER if the process is real-time, `nice` steps lower.

    Linux applies both per thread, so the control thread keeps its priority; elsewhere (or without permission)
    this does nothing.
    """
    if not hasattr(os, "sched_setscheduler") or not hasattr(threading, "get_native_id"):
        return
    tid = threading.get_native_id()
    try:
        if os.sched_getscheduler(tid) in (os.SCHED_FIFO, os.SCHED_RR):
            os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError:
        pass


class ChunkRunner:
    """Asynchronous chunk inference for one robot: the control step pops an action, a thread predicts the next chunk.

    Each step `step(obs)` (index k, counted from `reset`) first takes a chunk the thread has finished: computed
    from the observation of step k_obs, its row k - k_obs is its prediction for step k, so the rows before it
    (steps already executed from the old chunk) are dropped (temporal alignment). It then pops this step's
    action. The next chunk is requested, with this step's observation, once `prefetch_steps` or fewer of the
    current chunk's `n_action_steps` are left (with temporal ensembling: whenever the thread is idle). A chunk
    that is not back when the current one's `n_action_steps` are spent is late: the old chunk's remaining
    predictions keep playing (`late_steps`, counted once per chunk in `late_chunks`), then its last action is
    held (`starved_steps`); the control step never blocks. Only the first chunk after `reset` is computed in
    the control step (nothing to play before it). The inference thread runs below the control thread's priority
    (`_background_priority`), so on a busy CPU the scheduler prefers the control loop.
    """

    def __init__(self, rt: ChunkPolicyRuntime, prefetch_steps: int | None = None) -> None:
        self.rt = rt
        spec = rt.spec
        self.budget = int(spec["n_action_steps"])
        self.ensemble = spec["temporal_ensemble_coef"] if rt.kind == "act" else None
        # rows a chunk holds from its observation's step on: ACT's whole chunk, diffusion's horizon after To - 1
        self.length = int(spec["chunk_size"]) - (int(spec["n_obs_steps"]) - 1 if rt.kind == "diffusion" else 0)
        self.prefetch = self.budget // 2 if prefetch_steps is None else int(prefetch_steps)
        self.queue = ActionQueue(rt.action_dim, self.length, ensemble_coef=self.ensemble)
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._gen = 0  # bumped by reset(): results computed for an older episode are dropped
        self._request: tuple[int, int, dict[str, np.ndarray]] | None = None  # (gen, k_obs, obs)
        self._busy: int | None = None  # gen of the request being computed
        self._result: tuple[int, int, np.ndarray | BaseException] | None = None
        self.latency: deque[float] = deque(maxlen=1000)
        self.counts = {"chunks": 0, "late_chunks": 0, "late_steps": 0, "starved_steps": 0, "dropped_chunks": 0}
        self.reset()

    def reset(self) -> None:
        """Forget the queue and any chunk in flight (its result will be dropped)."""
        with self._cv:
            self._gen += 1
            self._request = self._result = None
        self.queue.reset()
        self.k = 0  # steps executed since reset
        self.k_chunk: int | None = None  # step of the observation the playing chunk was computed from
        self._late = False
        self._last: np.ndarray | None = None

    def _in_flight(self) -> bool:
        return self._request is not None or self._busy == self._gen or (
            self._result is not None and self._result[0] == self._gen)

    def step(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """The action (A,) of this control step for this step's observation (a window for diffusion)."""
        k = self.k
        with self._cv:
            res, self._result = self._result, None
        if res is not None and res[0] == self._gen:
            _, k_obs, chunk = res
            if isinstance(chunk, BaseException):
                raise InvalidInputError(f"asynchronous chunk inference failed: {one_line(chunk)}")
            if k - k_obs >= self.length:
                self.counts["dropped_chunks"] += 1  # covers no step from now on: keep what is playing
            else:
                self.queue.push(chunk, age=k - k_obs)
                self.k_chunk, self._late = k_obs, False
        if self.k_chunk is None:  # nothing to play yet: the first chunk is computed here
            t0 = time.perf_counter()
            self.queue.push(self.rt.predict_chunk(obs, full=True))
            self.latency.append(time.perf_counter() - t0)
            self.counts["chunks"] += 1
            self.k_chunk = k
        played = k - self.k_chunk  # steps already taken from the playing chunk
        due = self.ensemble is not None or self.budget - played <= self.prefetch
        with self._cv:
            if due and not self._in_flight():
                self._request = (self._gen, k, obs)
                self._ensure_thread()
                self._cv.notify_all()
        if self.ensemble is None and played >= self.budget:
            self.counts["late_steps"] += 1
            self.counts["late_chunks"] += not self._late
            self._late = True
        if len(self.queue):
            a = self.queue.pop()
        elif self._last is not None:
            self.counts["starved_steps"] += 1
            a = self._last
        else:  # unreachable: the first chunk covers step 0
            raise InvalidInputError("no action chunk to play")
        self._last = a
        self.k += 1
        return a

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._closed = False
            self._thread = threading.Thread(target=self._work, name="chunk-inference", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        _background_priority()
        while True:
            with self._cv:
                while self._request is None and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                gen, k_obs, obs = self._request
                self._request, self._busy = None, gen
            t0 = time.perf_counter()
            try:
                out: np.ndarray | BaseException = self.rt.predict_chunk(obs, full=True)
            except Exception as e:  # handed to the control step, which turns it into a fault
                out = e
            dt = time.perf_counter() - t0
            with self._cv:
                self._busy = None
                if gen == self._gen:
                    self._result = (gen, k_obs, out)
                    self.latency.append(dt)
                    self.counts["chunks"] += 1
                self._cv.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Block until no chunk is being computed or waiting to be computed (tests, shutdown); False on timeout."""
        with self._cv:
            return self._cv.wait_for(lambda: self._request is None and self._busy is None, timeout)

    def close(self) -> None:
        """Stop the inference thread (a chunk being computed finishes first)."""
        with self._cv:
            self._closed = True
            self._request = None
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
            self._thread = None

    def stats(self) -> dict[str, float | int]:
        """Chunk counts, late/starved steps and the chunk inference latency (ms) p50/p99/max."""
        out: dict[str, float | int] = {"async": 1, "prefetch_steps": self.prefetch, **self.counts}
        lat = np.asarray(self.latency, dtype=np.float64) * 1e3
        if len(lat):
            out |= {"chunk_p50_ms": float(np.percentile(lat, 50)), "chunk_p99_ms": float(np.percentile(lat, 99)),
                    "chunk_max_ms": float(lat.max())}
        return out
