"""`robolearn bench quadrotor-sim`: env-steps per second of the batched quadrotor RK4 step."""

from __future__ import annotations

import argparse
import time

import torch

from robolearn.sim.quadrotor import STATE_DIM, QuadrotorSim, load_crazyflie21


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_steps(sim: QuadrotorSim, cmd: torch.Tensor, steps: int) -> tuple[float, float]:
    """Wall and process-CPU seconds for `steps` steps (after the caller's warm-up)."""
    _sync(sim.device)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        sim.step(cmd)
    _sync(sim.device)
    return time.perf_counter() - start, time.process_time() - cpu


def _make(num_envs: int, device: torch.device, dtype: torch.dtype, compile: bool, seed: int) -> tuple:
    """A sim near hover with random small attitudes/rates, and a fixed random command around hover (N, 4)."""
    p = load_crazyflie21()
    sim = QuadrotorSim(p, num_envs, device, dt=0.01, compile=compile, dtype=dtype)
    g = torch.Generator(device=device).manual_seed(seed)
    sim.state[:, 4:7] = 0.05 * torch.randn(num_envs, 3, generator=g, device=device, dtype=dtype)  # small tilt
    sim.state[:, 3] = 1.0
    sim.state[:, 10:13] = 0.5 * torch.randn(num_envs, 3, generator=g, device=device, dtype=dtype)
    # the policy's output: a row-major (N, 4) tensor, as an actor network produces it
    cmd = p.hover_rpm * (1.0 + 0.05 * torch.randn(num_envs, 4, generator=g, device=device, dtype=dtype))
    return sim, cmd


def quadrotor_sim(args: list[str]) -> dict:
    """Time `QuadrotorSim.step` at a large batch; returns env-steps/s (compiled and, briefly, eager)."""
    ap = argparse.ArgumentParser(prog="robolearn bench quadrotor-sim", description=__doc__)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--num-envs", type=int, default=None, help="default 1048576 on cpu, 8388608 on cuda")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 50 on cpu, 500 on cuda)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument(
        "--eager-steps",
        type=int,
        default=None,
        help="also time this many eager steps when compiling (default 2 on cpu, 20 on cuda; 0: skip)",
    )
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16", "float16"])
    ap.add_argument("--seed", type=int, default=0)
    opt = ap.parse_args(args)
    device = torch.device(opt.device)
    cuda = device.type == "cuda"
    num_envs = opt.num_envs or (8_388_608 if cuda else 1_048_576)
    steps = opt.steps or (500 if cuda else 50)
    eager_steps = opt.eager_steps if opt.eager_steps is not None else (20 if cuda else 2)
    dtype = getattr(torch, opt.dtype)

    out: dict = {"device": str(device), "num_envs": num_envs, "compiled": opt.compile, "dtype": opt.dtype}
    out["steps"] = steps
    sim, cmd = _make(num_envs, device, dtype, opt.compile, opt.seed)
    t0 = time.perf_counter()
    for _ in range(opt.warmup):
        sim.step(cmd)
    _sync(device)
    out["warmup_s"] = round(time.perf_counter() - t0, 2)
    elapsed, cpu = _time_steps(sim, cmd, steps)
    out["steps_per_s"] = num_envs * steps / elapsed
    out["step_ms"] = 1e3 * elapsed / steps
    if not cuda:  # all threads together; x threads ≈ steps_per_s of an otherwise idle machine
        out["steps_per_cpu_s"] = num_envs * steps / cpu
    out["finite"] = bool(torch.isfinite(sim.state).all())
    if opt.compile and eager_steps > 0:
        eager, cmd = _make(num_envs, device, dtype, False, opt.seed)
        eager.step(cmd)
        out["eager_steps_per_s"] = num_envs * eager_steps / _time_steps(eager, cmd, eager_steps)[0]
    elif not opt.compile:
        out["eager_steps_per_s"] = out["steps_per_s"]
    # bytes that must cross memory per env-step at the least: state in + out, command, wrench, 5 parameters
    itemsize = torch.empty((), dtype=dtype).element_size()
    out["min_bytes_per_env_step"] = (2 * 17 + 4 + 6 + 7) * itemsize
    out["effective_gb_per_s"] = out["steps_per_s"] * out["min_bytes_per_env_step"] / 1e9
    out["threads"] = torch.get_num_threads()
    # the machine's state while measuring (shared machines vary): a streaming a += b over a state-sized buffer
    x, y = (torch.ones(STATE_DIM * num_envs, device=device, dtype=dtype) for _ in range(2))
    x.add_(y)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(5):
        x.add_(y)
    _sync(device)
    out["stream_add_gb_per_s"] = 5 * 3 * x.numel() * itemsize / (time.perf_counter() - t0) / 1e9
    return out
