"""`robolearn bench quadruped-step`: policy-rate env steps/s of the quadruped tasks, and raw MuJoCo for reference."""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from robolearn.envs import registry
from robolearn.envs.manipulation.bench import _THREADS_HELP, _RawMujoco, _sync, _TorchThreads


def quadruped_step(args: list[str]) -> dict:
    """Policy-rate env steps/s (observations, rewards, randomization, terrain, resets and the disturbance included).

    Random actions (robots fall and reset, as early in training) and a random wrench set through
    `set_disturbance` every step, as the H∞ disturber does. On the CPU backend also raw MuJoCo stepping of the
    same model (terrain included) and batch size (`mujoco.batch`, physics only). The GPU path (mjwarp on cuda,
    one CUDA-graph launch per policy step) is meant for 4k-32k worlds: `--backend mjwarp --device cuda
    --num-envs 32768`.
    """
    ap = argparse.ArgumentParser(prog="robolearn bench quadruped-step", description=quadruped_step.__doc__)
    ap.add_argument("--task", default="quadruped-walk", choices=["quadruped-walk", "quadruped-hind-legs"])
    ap.add_argument("--terrain", default="flat", help="flat | mixed | slope | stairs_up | stairs_down | rough")
    ap.add_argument("--backend", default="mujoco_cpu", choices=["mujoco_cpu", "mjwarp"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--num-envs", type=int, default=None, help="default 256 (mujoco_cpu), 4096 (mjwarp on cuda)")
    ap.add_argument("--steps", type=int, default=None, help="timed policy steps (default 60; 200 on cuda)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=6, help="alternating env/raw timing blocks (best block counts)")
    ap.add_argument("--no-disturbance", action="store_true", help="do not set a wrench every step")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--torch-threads", type=int, default=1, help=_THREADS_HELP)
    opt = ap.parse_args(args)
    with _TorchThreads(opt.torch_threads):
        return _quadruped_step(opt)


def _quadruped_step(opt: argparse.Namespace) -> dict:
    cuda = opt.device.startswith("cuda")
    n = opt.num_envs or (4096 if cuda else 256)
    steps = opt.steps or (200 if cuda else 60)
    cfg = dataclasses.replace(registry.cfg_class(opt.task)(), num_envs=n, backend=opt.backend, device=opt.device,
                              terrain=opt.terrain)
    t0 = time.perf_counter()
    env = registry.make(opt.task, cfg, seed=opt.seed)
    env.reset()
    g = torch.Generator(device=env.device).manual_seed(opt.seed)
    actions = [torch.rand(n, env.spec.action.dim, generator=g, device=env.device) * 2 - 1 for _ in range(8)]
    wrenches = [(torch.rand(n, 6, generator=g, device=env.device) * 2 - 1) * env.disturbance_limit
                for _ in range(8)]

    def step(i: int) -> None:
        if not opt.no_disturbance:
            env.set_disturbance(wrenches[i % 8])
        env.step(actions[i % 8])

    for i in range(opt.warmup):
        step(i)
    _sync(env.device)
    setup_s = time.perf_counter() - t0
    raw = _RawMujoco(env, cfg.decimation) if opt.backend == "mujoco_cpu" else None
    # alternate env and raw blocks and keep each one's best: on a shared machine the load changes between blocks
    blocks = max(1, min(opt.rounds, steps))
    per_block = max(1, steps // blocks)
    env_rate, raw_rate = 0.0, 0.0
    for _ in range(blocks):
        start = time.perf_counter()
        for i in range(per_block):
            step(i)
        _sync(env.device)
        env_rate = max(env_rate, n * per_block / (time.perf_counter() - start))
        if raw is not None:
            raw_rate = max(raw_rate, raw.rate(per_block))
    out = {
        "task": opt.task, "terrain": opt.terrain, "backend": opt.backend, "device": str(env.device),
        "num_envs": n, "steps": blocks * per_block, "decimation": cfg.decimation, "steps_per_s": env_rate,
        "physics_steps_per_s": env_rate * cfg.decimation, "disturbance": not opt.no_disturbance,
        "setup_s": round(setup_s, 2), "torch_threads": opt.torch_threads,
    }
    if raw is not None:
        out["raw_mujoco_steps_per_s"] = raw_rate
        out["raw_mujoco_physics_steps_per_s"] = raw_rate * cfg.decimation
        out["fraction_of_raw"] = env_rate / raw_rate
    return out
