"""Benchmarks of the imitation policies: training throughput and inference latency per action chunk.

robolearn bench act-train --json [--batch-size 64 --steps 30 --device cpu --threads 0 --images]
                                [--lerobot-python PY]
robolearn bench diffusion-train --json [same options]
robolearn bench policy-latency --json [--repeats 20 --device cpu --threads 1]

Training figures include the data pipeline (WindowDataset batches from a synthetic zarr store of state-only
quadrotor-sized demos: 146-dim observation, 4-dim action; `--images` adds a 96x96 camera), gradient clipping and
the optimizer step, as in `robolearn train`. `--lerobot-python PY` also times LeRobot's own implementation of the
same policy with the same hyperparameters, batch and data, in PY, an interpreter with lerobot installed
(`lerobot_train_timing.py`; state-only).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robolearn.core.errors import ConfigError
from robolearn.learners.imitation import ImitationRunCfg
from robolearn.policies.act import ACTConfig, ACTPolicy
from robolearn.policies.diffusion import DiffusionConfig, DiffusionPolicy

STATE_DIM, ACTION_DIM, CAM = 146, 4, "observation.images.camera"
STATE_KEYS = {"observation.state": 18, "observation.environment_state": STATE_DIM - 18}
"""The training benchmarks' state, split in two as LeRobot names it: its ACT needs `observation.state` (its CVAE
encoder reads it) and, without a camera, also `observation.environment_state`. robolearn's policies concatenate
both into one vector; LeRobot's ACT gives them one encoder token each (one token more than robolearn's)."""


def _synthetic_store(path: Path, frames: int, images: bool) -> Any:
    from robolearn.data.stats import compute_stats, save_stats
    from robolearn.data.store import EpisodeStore, EpisodeWriter, Feature

    rng = np.random.default_rng(0)
    feats = {k: Feature((n,)) for k, n in STATE_KEYS.items()} | {"action": Feature((ACTION_DIM,))}
    if images:
        feats[CAM] = Feature((96, 96, 3), "uint8", axes=("height", "width", "channel"))
    with EpisodeWriter(path, feats, fps=100.0, durable=False) as w:
        for _ in range(max(1, frames // 200)):
            ep = {k: rng.normal(size=(200, n)).astype(np.float32) for k, n in STATE_KEYS.items()}
            ep |= {"action": rng.uniform(-1, 1, size=(200, ACTION_DIM)).astype(np.float32)}
            if images:
                ep[CAM] = rng.integers(0, 256, (200, 96, 96, 3), dtype=np.uint8)
            w.add_episode(ep)
    save_stats(path, compute_stats(path))
    return EpisodeStore(path)


def _parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"robolearn bench {prog}")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=30, help="timed optimizer steps (after 3 warm-up steps)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--images", action="store_true", help="add a 96x96 camera")
    p.add_argument("--lerobot-python", metavar="PYTHON",
                   help="also time LeRobot's implementation (same hyperparameters, batch, data) in PYTHON, an "
                        "interpreter with lerobot installed (`make lerobot-venv`); state-only")
    return p


def _train_bench(kind: str, args: list[str]) -> dict[str, Any]:
    from robolearn.data.stats import load_stats
    from robolearn.data.windows import WindowDataset
    from robolearn.policies.common import resolve_features

    a = _parser(f"{kind}-train").parse_args(args)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.lerobot_python and a.images:
        raise ConfigError("--lerobot-python times state-only policies; drop --images")
    cls, cfg = ((ACTPolicy, ACTConfig(state_keys=tuple(STATE_KEYS))) if kind == "act"
                else (DiffusionPolicy, DiffusionConfig(state_keys=tuple(STATE_KEYS))))
    grad_clip = ImitationRunCfg.grad_clip
    with tempfile.TemporaryDirectory() as tmp:
        store = _synthetic_store(Path(tmp) / "bench.zarr", 2000 if a.images else 10_000, a.images)
        torch.manual_seed(0)
        policy = cls(cfg, resolve_features(store, cfg.state_keys, cfg.image_keys), load_stats(store)).to(a.device)
        ds = WindowDataset(store, policy.deltas)
        loader = ds.loader(a.batch_size, drop_last=True)
        opt = torch.optim.AdamW(policy.param_groups())

        def batches() -> Any:
            while True:
                yield from loader

        it = batches()

        def step() -> None:
            batch = {k: v.to(a.device, non_blocking=True) for k, v in next(it).items()}
            loss, _ = policy(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), grad_clip)
            opt.step()
            if hasattr(policy, "ema_update"):
                policy.ema_update()

        for _ in range(3):
            step()
        _sync(a.device)
        start = time.perf_counter()
        for _ in range(a.steps):
            step()
        _sync(a.device)
        elapsed = time.perf_counter() - start
        lerobot = _lerobot_train(a, kind, cfg, store, Path(tmp) / "lerobot") if a.lerobot_python else {}
    trainable = sum(p.numel() for n, p in policy.named_parameters() if p.requires_grad and not n.startswith("ema."))
    out = {"samples_per_s": round(a.steps * a.batch_size / elapsed, 1), "batch_size": a.batch_size,
           "params": trainable, "step_ms": round(1000 * elapsed / a.steps, 2), "device": a.device,
           "threads": torch.get_num_threads(), "images": a.images,
           "config": "default " + ("ACTConfig" if kind == "act" else "DiffusionConfig")}
    if lerobot:
        out["lerobot"] = lerobot
        out["speedup_vs_lerobot"] = round(out["samples_per_s"] / lerobot["samples_per_s"], 2)
    return out


def _lerobot_config(kind: str, cfg: Any) -> dict[str, Any]:
    """LeRobot's config fields for the same network as robolearn's `cfg` (the parameter counts are reported)."""
    if kind == "act":
        return {"chunk_size": cfg.chunk_size, "n_action_steps": 1,
                "temporal_ensemble_coeff": cfg.temporal_ensemble_coef,
                "dim_model": cfg.dim_model, "n_heads": cfg.n_heads, "dim_feedforward": cfg.dim_feedforward,
                "n_encoder_layers": cfg.n_encoder_layers, "n_decoder_layers": cfg.n_decoder_layers,
                "n_vae_encoder_layers": cfg.n_vae_encoder_layers, "latent_dim": cfg.latent_dim,
                "use_vae": cfg.use_vae, "dropout": cfg.dropout, "kl_weight": cfg.kl_weight,
                "pretrained_backbone_weights": None}
    return {"n_obs_steps": cfg.n_obs_steps, "horizon": cfg.horizon, "n_action_steps": cfg.n_action_steps,
            "down_dims": list(cfg.down_dims), "kernel_size": cfg.kernel_size, "n_groups": cfg.n_groups,
            "diffusion_step_embed_dim": cfg.timestep_embed_dim, "num_train_timesteps": cfg.num_train_timesteps,
            "beta_schedule": cfg.beta_schedule, "prediction_type": cfg.prediction_type,
            "clip_sample": cfg.clip_sample,
            "drop_n_last_frames": cfg.horizon - cfg.n_action_steps - cfg.n_obs_steps + 1}


def _lerobot_train(a: argparse.Namespace, kind: str, cfg: Any, store: Any, dest: Path) -> dict[str, Any]:
    """LeRobot's training iteration on the same store exported to LeRobot v3.0, run in `a.lerobot_python`."""
    import json
    import subprocess

    from robolearn.data.lerobot import export_lerobot

    export_lerobot(store, dest)
    spec = {"policy": kind, "config": _lerobot_config(kind, cfg), "batch_size": a.batch_size, "steps": a.steps,
            "threads": a.threads or torch.get_num_threads(), "device": a.device}
    script = Path(__file__).with_name("lerobot_train_timing.py")
    r = subprocess.run([a.lerobot_python, str(script), str(dest), json.dumps(spec)], capture_output=True, text=True)
    if r.returncode != 0:
        tail = "\n".join(r.stderr.strip().splitlines()[-5:])
        raise ConfigError(f"--lerobot-python {a.lerobot_python}: LeRobot's {kind} training failed on {dest}:\n{tail}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def act_train(args: list[str]) -> dict[str, Any]:
    """ACT training throughput (default ACTConfig)."""
    return _train_bench("act", args)


def diffusion_train(args: list[str]) -> dict[str, Any]:
    """Diffusion Policy training throughput (default DiffusionConfig)."""
    return _train_bench("diffusion", args)


def policy_latency(args: list[str]) -> dict[str, Any]:
    """Milliseconds per predicted action chunk, batch 1, state-only default configs: ACT and diffusion samplers."""
    p = argparse.ArgumentParser(prog="robolearn bench policy-latency")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (a robot computer: 1-2)")
    p.add_argument("--runtime", nargs="+", default=["torch", "onnx"], choices=["torch", "onnx"],
                   help="torch: the policy module; onnx: the exported artifact in ONNX Runtime (CPU)")
    a = p.parse_args(args)
    if a.threads:
        torch.set_num_threads(a.threads)
    feats = {"observation.policy": (STATE_DIM,), "action": (ACTION_DIM,)}
    torch.manual_seed(0)
    variants: dict[str, tuple[Any, dict[str, Any]]] = {"act": (ACTPolicy(ACTConfig(), feats), {})}
    for name, sampler, steps in [("diffusion-ddpm100", "ddpm", 100), ("diffusion-ddim10", "ddim", 10),
                                 ("diffusion-ddim3", "ddim", 3)]:
        variants[name] = (DiffusionPolicy(DiffusionConfig(sampler=sampler, num_inference_steps=steps,
                                                          num_train_timesteps=100), feats), {})
    results: dict[str, Any] = {}
    if "onnx" in a.runtime:
        results.update(_onnx_latency(variants, a.repeats, a.threads or 1))
    if "torch" not in a.runtime:
        return {"results": results, "device": "cpu", "threads": a.threads, "batch": 1}
    for name, (policy, _) in variants.items():
        policy = policy.to(a.device).eval()
        t_obs = 1 if name == "act" else policy.cfg.n_obs_steps
        obs = {"observation.policy": torch.randn(1, STATE_DIM, device=a.device)}
        if t_obs > 1:
            obs = {k: v[:, None].expand(1, t_obs, STATE_DIM) for k, v in obs.items()}
        policy.predict_action_chunk(obs)  # warm-up
        times = []
        for _ in range(a.repeats):
            _sync(a.device)
            start = time.perf_counter()
            policy.predict_action_chunk(obs)
            _sync(a.device)
            times.append(1000 * (time.perf_counter() - start))
        params = sum(x.numel() for n, x in policy.named_parameters() if not n.startswith("ema."))
        results[name] = {"ms_per_chunk": round(float(np.median(times)), 3),
                         "ms_p90": round(float(np.quantile(times, 0.9)), 3), "runtime": "torch", "params": params}
    return {"results": results, "device": a.device, "threads": torch.get_num_threads(), "batch": 1}


def _onnx_latency(variants: dict[str, Any], repeats: int, threads: int) -> dict[str, Any]:
    """Milliseconds per chunk through `ChunkPolicyRuntime` (ONNX Runtime, CPU); one export serves all samplers."""
    from robolearn.export.chunked import ChunkPolicyRuntime, export_chunk_policy

    out: dict[str, Any] = {}
    rng = np.random.default_rng(0)
    obs = {"observation.policy": rng.normal(size=STATE_DIM).astype(np.float32)}
    from robolearn.core.types import ActionSpec, ActionTerm, ObsTerm, TaskSpec

    spec = TaskSpec("bench", {"policy": (ObsTerm("state", STATE_DIM),)},
                    ActionSpec((ActionTerm("action", ACTION_DIM, "", (1.0,) * ACTION_DIM, (0.0,) * ACTION_DIM),), 50.0))
    with tempfile.TemporaryDirectory() as tmp:
        export_chunk_policy(variants["act"][0], Path(tmp) / "act", spec)
        export_chunk_policy(variants["diffusion-ddim10"][0], Path(tmp) / "diffusion", spec)
        # the runtime's sampler is DDIM (eta 0) at any step count: the 100-step figure is DDIM-100, not DDPM
        for name, steps in [("act", None), ("diffusion-ddim100", 100), ("diffusion-ddim10", 10),
                            ("diffusion-ddim3", 3)]:
            rt = ChunkPolicyRuntime(Path(tmp) / ("act" if name == "act" else "diffusion"), threads=threads,
                                    sampler_steps=steps)
            x = obs if name == "act" else {k: np.stack([v, v]) for k, v in obs.items()}
            rt.predict_chunk(x)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                rt.predict_chunk(x)
                times.append(1000 * (time.perf_counter() - start))
            out[f"{name}-onnx"] = {"ms_per_chunk": round(float(np.median(times)), 3),
                                   "ms_p90": round(float(np.quantile(times, 0.9)), 3), "runtime": "onnxruntime",
                                   "sampler": "ddim (eta 0)" if steps else None, "steps": steps}
    return out


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
