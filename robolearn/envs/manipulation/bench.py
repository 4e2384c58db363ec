"""Manipulation benchmarks: `manip-step` (env steps/s vs raw MuJoCo), `render` (camera frames/s), `expert-success`."""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from robolearn.envs import registry

_THREADS_HELP = (
    "torch intra-op threads (default 1: the task's per-step tensors are tiny, and on a 2-core machine a second torch "
    "thread competes with MuJoCo's thread pool; 2 threads measured ~3x slower)"
)


class _TorchThreads:
    """Set torch's intra-op threads for a benchmark and restore them afterwards (machine() reports the cores)."""

    def __init__(self, n: int) -> None:
        self.n, self.saved = n, torch.get_num_threads()

    def __enter__(self) -> None:
        torch.set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.saved)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def manip_step(args: list[str]) -> dict:
    """Policy-rate env steps/s of a manipulation task, observations, rewards and resets included.

    On the CPU backend also raw MuJoCo stepping of the same model and batch size (`mujoco.batch`, physics only).
    """
    ap = argparse.ArgumentParser(prog="robolearn bench manip-step", description=manip_step.__doc__)
    ap.add_argument("--task", default="arm-lift")
    ap.add_argument("--backend", default="mujoco_cpu", choices=["mujoco_cpu", "mjwarp"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--num-envs", type=int, default=None, help="default 256 (mujoco_cpu), 4096 (mjwarp on cuda)")
    ap.add_argument("--steps", type=int, default=None, help="timed policy steps (default 50; 200 on cuda)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--torch-threads", type=int, default=1, help=_THREADS_HELP)
    opt = ap.parse_args(args)
    with _TorchThreads(opt.torch_threads):
        return _manip_step(opt)


def _manip_step(opt: argparse.Namespace) -> dict:
    cuda = opt.device.startswith("cuda")
    n = opt.num_envs or (4096 if cuda else 256)
    steps = opt.steps or (200 if cuda else 50)
    cfg = dataclasses.replace(registry.cfg_class(opt.task)(), num_envs=n, backend=opt.backend, device=opt.device)
    t0 = time.perf_counter()
    env = registry.make(opt.task, cfg, seed=opt.seed)
    env.reset()
    g = torch.Generator(device=env.device).manual_seed(opt.seed)
    actions = [torch.rand(n, env.spec.action.dim, generator=g, device=env.device) * 2 - 1 for _ in range(8)]
    for i in range(opt.warmup):
        env.step(actions[i % 8])
    _sync(env.device)
    setup_s = time.perf_counter() - t0
    start = time.perf_counter()
    for i in range(steps):
        env.step(actions[i % 8])
    _sync(env.device)
    elapsed = time.perf_counter() - start
    out = {
        "task": opt.task, "backend": opt.backend, "device": str(env.device), "num_envs": n, "steps": steps,
        "decimation": cfg.decimation, "steps_per_s": n * steps / elapsed,
        "physics_steps_per_s": n * steps * cfg.decimation / elapsed, "setup_s": round(setup_s, 2),
        "torch_threads": opt.torch_threads,
    }
    if opt.backend == "mujoco_cpu":
        raw = _raw_mujoco(env, steps, cfg.decimation)
        out["raw_steps_per_s"] = raw
        out["fraction_of_raw"] = out["steps_per_s"] / raw
    return out


def _raw_mujoco(env, steps: int, decimation: int) -> float:
    """Policy-rate steps/s of bare `mujoco.batch` stepping (same model, batch size, substeps; no forward pass)."""
    from mujoco.batch import Batch

    n = env.num_envs
    batch = Batch(env.model, n)
    batch.state[:] = env.sim.get_state().numpy()
    ctrl = batch.bind("ctrl")
    target = env.sim.ctrl.double().numpy()
    batch.step(nstep=decimation)
    start = time.perf_counter()
    for _ in range(steps):
        ctrl[:] = target
        batch.step(nstep=decimation)
    return n * steps / (time.perf_counter() - start)


def render(args: list[str]) -> dict:
    """Camera frames/s (RGB) of the arm-lift wrist camera on the CPU backend at 84×84 and 224×224."""
    ap = argparse.ArgumentParser(prog="robolearn bench render", description=render.__doc__)
    ap.add_argument("--num-envs", type=int, default=16)
    ap.add_argument("--frames", type=int, default=400, help="frames per size (rounded to whole batches)")
    ap.add_argument("--camera", default="wrist", choices=["wrist", "front"])
    ap.add_argument("--sizes", type=int, nargs="+", default=[84, 224])
    opt = ap.parse_args(args)
    from robolearn.sim.mujoco_cpu import BatchRenderer

    env = registry.make("arm-lift", num_envs=opt.num_envs, seed=0)
    env.reset()
    by_size: dict[str, float] = {}
    for size in opt.sizes:
        env.model.vis.global_.offwidth = max(env.model.vis.global_.offwidth, size)
        env.model.vis.global_.offheight = max(env.model.vis.global_.offheight, size)
        renderer = BatchRenderer(env.sim, size, size, "render")
        renderer.render(opt.camera)  # warm up (GL context, textures)
        rounds = max(1, opt.frames // opt.num_envs)
        start = time.perf_counter()
        for _ in range(rounds):
            rgb, _ = renderer.render(opt.camera)
        elapsed = time.perf_counter() - start
        assert rgb.float().std() > 0
        by_size[f"{size}x{size}"] = rounds * opt.num_envs / elapsed
    first = f"{opt.sizes[0]}x{opt.sizes[0]}"
    return {"backend": "mujoco_cpu", "camera": opt.camera, "num_envs": opt.num_envs, "frames_per_s": by_size[first],
            "frames_per_s_by_size": by_size}


def expert_success(args: list[str]) -> dict:
    """Success rate of each task's scripted expert over N episodes (one per env, random starts and parameters)."""
    ap = argparse.ArgumentParser(prog="robolearn bench expert-success", description=expert_success.__doc__)
    ap.add_argument("--tasks", nargs="+", default=["arm-reach", "arm-lift"])
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--torch-threads", type=int, default=1, help=_THREADS_HELP)
    opt = ap.parse_args(args)
    from robolearn.eval.rollout import evaluate_policy

    with _TorchThreads(opt.torch_threads):
        return _expert_success(opt, evaluate_policy)


def _expert_success(opt: argparse.Namespace, evaluate_policy) -> dict:

    rates: dict[str, float] = {}
    failures: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for task in opt.tasks:
        env = registry.make(task, num_envs=opt.episodes, seed=opt.seed)
        start = time.perf_counter()
        metrics = evaluate_policy(env, env.expert_action)
        seconds[task] = round(time.perf_counter() - start, 1)
        rates[task] = metrics["success"]
        failures[task] = metrics.get("failure", float("nan"))
    return {"tasks": rates, "success_rate": min(rates.values()), "failure_rate": failures, "episodes": opt.episodes,
            "seed": opt.seed, "eval_s": seconds}
