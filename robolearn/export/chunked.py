"""Export of chunking imitation policies (ACT, Diffusion Policy) to ONNX, and their robot-side runtime.

An artifact directory holds `manifest.json` and ONNX graphs with the normalizers folded in:

- ACT: `policy.onnx`: observations (1, ...) in dataset units -> action chunk "actions" (1, H, A) in dataset units.
- Diffusion: `encoder.onnx`: observation windows (1, To, ...) -> condition "cond" (1, G); `denoiser.onnx`:
  ("sample" (1, H, A), "timestep" (1,), "cond") -> predicted noise "eps". The runtime runs a fixed-step DDIM
  sampler (eta = 0) in numpy with the schedule stored in the manifest, then un-normalizes the actions.

Manifest (`format: robolearn.chunk-policy`, `schema_version: 1`): `policy` {kind, chunk_size, n_action_steps,
n_obs_steps, temporal_ensemble_coef, action_dim}, `inputs` [{name, key, shape, dtype}], `action` {key, shift,
scale} (diffusion), `sampler` {kind: ddim, num_train_timesteps, timesteps, alphas_cumprod, clip_sample} (diffusion),
plus what the caller passes as `extra` (task, observation and action terms). Nothing is unpickled on load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from robolearn.core.errors import CheckpointError, require

FORMAT = "robolearn.chunk-policy"
SCHEMA_VERSION = 1


def _export(module: Any, args: tuple, path: Path, input_names: list[str], output_names: list[str]) -> None:
    torch = require("torch", "export")
    require("onnxscript", "export")
    from robolearn.export.artifact import ExportError, one_line
    from robolearn.export.onnx_export import _quiet

    try:
        with _quiet(), torch.no_grad():
            program = torch.onnx.export(module, args, dynamo=True, input_names=input_names,
                                        output_names=output_names, verbose=False)
            program.save(str(path), external_data=False)
    except Exception as e:
        raise ExportError(f"{path}: torch.onnx.export failed ({one_line(e)})") from None


def export_chunk_policy(policy: Any, out_dir: str | Path, *, num_inference_steps: int | None = None,
                        extra: dict[str, Any] | None = None) -> Path:
    """Write an ACT or Diffusion policy (object with `kind`, `describe()`) as ONNX graphs + manifest to `out_dir`."""
    torch = require("torch", "export")
    import copy

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        from robolearn.export.artifact import ExportError

        raise ExportError(f"{out}: exists and is not empty")
    out.mkdir(parents=True, exist_ok=True)
    policy = copy.deepcopy(policy).cpu().eval()
    feats = policy.features
    keys = policy.input_keys
    names = [f"in{i}" for i in range(len(keys))]
    kind = policy.kind
    t_obs = 1 if kind == "act" else policy.cfg.n_obs_steps
    inputs = []
    examples = []
    for name, key in zip(names, keys, strict=True):
        shape = [1, *feats[key]] if kind == "act" else [1, t_obs, *feats[key]]
        dtype = "uint8" if key.startswith("observation.images.") else "float32"
        inputs.append({"name": name, "key": key, "shape": shape, "dtype": dtype})
        examples.append(torch.zeros(shape, dtype=torch.uint8 if dtype == "uint8" else torch.float32))
    manifest: dict[str, Any] = {"format": FORMAT, "schema_version": SCHEMA_VERSION, "inputs": inputs,
                                "description": policy.describe(), **(extra or {})}
    if kind == "act":
        class _ACT(torch.nn.Module):
            def __init__(self, p: Any) -> None:
                super().__init__()
                self.p = p

            def forward(self, *xs: Any) -> Any:
                return self.p.predict_action_chunk.__wrapped__(self.p, dict(zip(keys, xs, strict=True)))

        _export(_ACT(policy), tuple(examples), out / "policy.onnx", names, ["actions"])
        c = policy.cfg
        manifest["policy"] = {"kind": kind, "chunk_size": c.chunk_size, "n_action_steps": c.n_action_steps,
                              "temporal_ensemble_coef": c.temporal_ensemble_coef, "n_obs_steps": 1,
                              "action_dim": policy.action_dim}
    elif kind == "diffusion":
        net = policy.inference_net

        class _Encoder(torch.nn.Module):
            def __init__(self, p: Any, net: Any) -> None:
                super().__init__()
                self.p, self.net = p, net

            def forward(self, *xs: Any) -> Any:
                return self.p._condition(self.net, dict(zip(keys, xs, strict=True)), augment=False)

        _export(_Encoder(policy, net), tuple(examples), out / "encoder.onnx", names, ["cond"])
        with torch.no_grad():
            cond = _Encoder(policy, net)(*examples)
        c = policy.cfg
        sample = torch.zeros(1, c.horizon, policy.action_dim)
        _export(net, (sample, torch.zeros(1, dtype=torch.int64), cond), out / "denoiser.onnx",
                ["sample", "timestep", "cond"], ["eps"])
        steps = num_inference_steps or (c.num_inference_steps if c.sampler == "ddim" else c.num_train_timesteps)
        sch = require("diffusers", "il").DDIMScheduler(num_train_timesteps=c.num_train_timesteps,
                                                       beta_schedule=c.beta_schedule, clip_sample=c.clip_sample,
                                                       prediction_type=c.prediction_type)
        sch.set_timesteps(steps)
        shift, scale = policy.normalizer._get("action")
        manifest["policy"] = {"kind": kind, "chunk_size": c.horizon, "n_action_steps": c.n_action_steps,
                              "n_obs_steps": c.n_obs_steps, "temporal_ensemble_coef": None,
                              "action_dim": policy.action_dim}
        manifest["action"] = {"key": "action", "shift": shift.tolist(), "scale": scale.tolist()}
        manifest["sampler"] = {"kind": "ddim", "eta": 0.0, "num_train_timesteps": c.num_train_timesteps,
                               "timesteps": [int(t) for t in sch.timesteps],
                               "alphas_cumprod": sch.alphas_cumprod.double().tolist(),
                               "final_alpha_cumprod": float(sch.final_alpha_cumprod),
                               "clip_sample": c.clip_sample, "prediction_type": c.prediction_type}
    else:
        raise CheckpointError(f"cannot export policy kind '{kind}'")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out


class ChunkPolicyRuntime:
    """Runs an exported chunk policy with ONNX Runtime: `predict_chunk(obs)` and, through an ActionQueue, `act(obs)`.

    `obs` maps dataset keys (or their ONNX input names) to one robot's arrays without batch dimension: (D,) state,
    (H, W, C) uint8 images; the diffusion runtime keeps the last n_obs_steps observations itself.
    """

    def __init__(self, path: str | Path, threads: int = 1, sampler_steps: int | None = None) -> None:
        ort = require("onnxruntime", "export")
        self.path = Path(path)
        try:
            self.manifest = json.loads((self.path / "manifest.json").read_text())
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{self.path}: cannot read manifest.json ({e})") from None
        if self.manifest.get("format") != FORMAT or self.manifest.get("schema_version") != SCHEMA_VERSION:
            raise CheckpointError(f"{self.path}: not a {FORMAT} v{SCHEMA_VERSION} artifact")
        self.spec = self.manifest["policy"]
        self.kind = self.spec["kind"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads

        def session(name: str) -> Any:
            return ort.InferenceSession(str(self.path / name), opts, providers=["CPUExecutionProvider"])

        if self.kind == "act":
            self.sessions = {"policy": session("policy.onnx")}
        else:
            self.sessions = {"encoder": session("encoder.onnx"), "denoiser": session("denoiser.onnx")}
        from robolearn.export.runtime import ActionQueue

        n_exec = self.spec["n_action_steps"]
        coef = self.spec.get("temporal_ensemble_coef")
        self.queue = ActionQueue(self.spec["action_dim"], self.spec["chunk_size"] if coef is not None else n_exec,
                                 ensemble_coef=coef)
        self._hist: list[dict[str, np.ndarray]] = []
        self.rng = np.random.default_rng(0)
        if sampler_steps is not None and self.kind == "diffusion":
            k = self.manifest["sampler"]["num_train_timesteps"]
            if not 1 <= sampler_steps <= k:
                raise ValueError(f"sampler_steps must be in 1..{k}, got {sampler_steps}")
            # diffusers' DDIM "leading" spacing: t = i * (K // steps), i = steps-1 .. 0
            self.manifest["sampler"]["timesteps"] = [i * (k // sampler_steps) for i in reversed(range(sampler_steps))]

    def _feed(self, obs: dict[str, np.ndarray], windowed: bool) -> dict[str, np.ndarray]:
        from robolearn.export.runtime import InvalidInputError

        feed = {}
        for spec in self.manifest["inputs"]:
            x = obs.get(spec["key"], obs.get(spec["name"]))
            if x is None:
                raise InvalidInputError(f"observation '{spec['key']}' missing")
            x = np.asarray(x, dtype=spec["dtype"])
            x = x.reshape(spec["shape"]) if windowed else x[None]
            if list(x.shape) != spec["shape"]:
                raise InvalidInputError(f"observation '{spec['key']}' has shape {x.shape[1:]}, "
                                        f"expected {spec['shape'][1:]}")
            if x.dtype.kind == "f" and not np.isfinite(x).all():
                raise InvalidInputError(f"observation '{spec['key']}' holds NaN/inf")
            feed[spec["name"]] = x
        return feed

    def predict_chunk(self, obs: dict[str, np.ndarray], noise: np.ndarray | None = None) -> np.ndarray:
        """ACT: the chunk (H, A) of one observation; diffusion: the executed actions (n_action_steps, A).

        Diffusion reads an observation window {key: (To, ...)}; `noise` (H, A) fixes the sampler's start.
        """
        if self.kind == "act":
            return self.sessions["policy"].run(["actions"], self._feed(obs, windowed=False))[0][0]
        cond = self.sessions["encoder"].run(["cond"], self._feed(obs, windowed=True))[0]
        s = self.manifest["sampler"]
        h, a_dim = self.spec["chunk_size"], self.spec["action_dim"]
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
        act = x[0] * np.asarray(self.manifest["action"]["scale"]) + np.asarray(self.manifest["action"]["shift"])
        start = self.spec["n_obs_steps"] - 1
        return act[start:start + self.spec["n_action_steps"]]

    def reset(self) -> None:
        """Episode start: clear the action queue and the observation history."""
        self.queue.reset()
        self._hist = []

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """The action (A,) for this control step (one robot, no batch dimension)."""
        if self.kind == "diffusion":
            to = self.spec["n_obs_steps"]
            self._hist = (self._hist or [obs] * (to - 1)) + [obs]
            self._hist = self._hist[-to:]
        if self.queue.needs_chunk:
            if self.kind == "act":
                chunk = self.predict_chunk(obs)
                self.queue.push(chunk if self.spec["temporal_ensemble_coef"] is not None
                                else chunk[:self.spec["n_action_steps"]])
            else:
                self.queue.push(self.predict_chunk({k: np.stack([o[k] for o in self._hist]) for k in obs}))
        return self.queue.pop()
