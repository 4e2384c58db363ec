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
    ap.add_argument("--rounds", type=int, default=6, help="alternating env/raw timing blocks (best block counts)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--torch-threads", type=int, default=1, help=_THREADS_HELP)
    opt = ap.parse_args(args)
    with _TorchThreads(opt.torch_threads):
        return _manip_step(opt)


def _manip_step(opt: argparse.Namespace) -> dict:
    cuda = opt.device.startswith("cuda")
    n = opt.num_envs or (4096 if cuda else 256)
    steps = opt.steps or (200 if cuda else 60)
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
    raw = _RawMujoco(env, cfg.decimation) if opt.backend == "mujoco_cpu" else None
    # alternate env and raw blocks and keep each one's best block: on a shared machine the load changes
    # between blocks, and the best block is the one least disturbed by other jobs
    blocks = max(1, min(opt.rounds, steps))
    per_block = max(1, steps // blocks)
    env_rate, raw_rate = 0.0, 0.0
    for _ in range(blocks):
        start = time.perf_counter()
        for i in range(per_block):
            env.step(actions[i % 8])
        _sync(env.device)
        env_rate = max(env_rate, n * per_block / (time.perf_counter() - start))
        if raw is not None:
            raw_rate = max(raw_rate, raw.rate(per_block))
    out = {
        "task": opt.task, "backend": opt.backend, "device": str(env.device), "num_envs": n,
        "steps": blocks * per_block, "decimation": cfg.decimation, "steps_per_s": env_rate,
        "physics_steps_per_s": env_rate * cfg.decimation, "setup_s": round(setup_s, 2),
        "torch_threads": opt.torch_threads,
    }
    if raw is not None:
        out["raw_steps_per_s"] = raw_rate
        out["fraction_of_raw"] = env_rate / raw_rate
    return out


class _RawMujoco:
    """Bare `mujoco.batch` stepping of the env's model: same batch size, substeps and thread pool.

    No forward pass and no torch; from the env's current state with its last controls held.
    """

    def __init__(self, env, decimation: int) -> None:
        from mujoco.batch import Batch

        self.n, self.decimation = env.num_envs, decimation
        self.batch = Batch(env.model, self.n)
        self.batch.state[:] = env.sim.get_state().numpy()
        self.ctrl = self.batch.bind("ctrl")
        self.target = env.sim.ctrl.double().numpy()
        self.batch.step(nstep=decimation)

    def rate(self, steps: int) -> float:
        """Policy-rate steps/s over `steps` policy steps."""
        start = time.perf_counter()
        for _ in range(steps):
            self.ctrl[:] = self.target
            self.batch.step(nstep=self.decimation)
        return self.n * steps / (time.perf_counter() - start)


def render(args: list[str]) -> dict:
    """Camera frames/s (RGB) of the arm-lift wrist camera at 84×84 and 224×224, on either backend's renderer.

    mujoco_cpu: MuJoCo's offscreen OpenGL, env by env; mjwarp: MuJoCo Warp's ray tracer, all envs in one launch (on
    CUDA, or on warp's CPU device with `--device cpu`). A frame is one env's image; timed after one warm-up render.
    """
    ap = argparse.ArgumentParser(prog="robolearn bench render", description=render.__doc__)
    ap.add_argument("--backend", default="mujoco_cpu", choices=["mujoco_cpu", "mjwarp"])
    ap.add_argument("--device", default="cpu", help="torch/warp device of the mjwarp backend (cpu or cuda)")
    ap.add_argument("--num-envs", type=int, default=16)
    ap.add_argument("--frames", type=int, default=400, help="frames per size (rounded to whole batches)")
    ap.add_argument("--camera", default="wrist", choices=["wrist", "front"])
    ap.add_argument("--sizes", type=int, nargs="+", default=[84, 224])
    opt = ap.parse_args(args)
    from robolearn.sim.backend import make_renderer

    env = registry.make("arm-lift", num_envs=opt.num_envs, seed=0, backend=opt.backend, device=opt.device)
    env.reset()
    by_size: dict[str, float] = {}
    for size in opt.sizes:
        renderer = make_renderer(env.sim, size, size, "render")
        renderer.render(opt.camera)  # warm up (GL context and textures; warp: kernel compile or load, BVH build)
        rounds = max(1, opt.frames // opt.num_envs)
        _sync(env.device)
        start = time.perf_counter()
        for _ in range(rounds):
            rgb, _ = renderer.render(opt.camera)
        _sync(env.device)
        elapsed = time.perf_counter() - start
        assert rgb.float().std() > 0
        by_size[f"{size}x{size}"] = rounds * opt.num_envs / elapsed
    first = f"{opt.sizes[0]}x{opt.sizes[0]}"
    return {"backend": opt.backend, "device": str(env.device), "camera": opt.camera, "num_envs": opt.num_envs,
            "frames_per_s": by_size[first], "frames_per_s_by_size": by_size}


def expert_success(args: list[str]) -> dict:
    """Success rate of each task's scripted expert over N episodes (one per env, random starts and parameters)."""
    ap = argparse.ArgumentParser(prog="robolearn bench expert-success", description=expert_success.__doc__)
    ap.add_argument("--tasks", nargs="+", default=["arm-reach", "arm-lift", "arm-pick-place", "arm-peg-insert",
                                                    "bimanual-transfer-cube", "bimanual-insertion", "push-t"])
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
