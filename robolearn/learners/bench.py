"""`robolearn bench quadrotor-hover-time | quadruped-train-time`: wall seconds until a preset meets its criterion.

Each counts from process start until the policy trained from a preset meets the task's criterion.

Hover criterion: at least 95% of 1,000 random-start evaluation episodes end within 5 cm of the goal without a crash
(the deterministic policy, a separate evaluation env and seed). Evaluations run every `eval_every` iterations
of the preset and their time counts.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def process_age_s() -> float:
    """Seconds since this process started (Linux /proc; elsewhere since robolearn was imported)."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        start = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - start
    except (OSError, ValueError, IndexError):
        import robolearn

        return time.time() - getattr(robolearn, "_import_time", time.time())


def train_until(cfg, device: str, seed: int, budget_s: float, **stop) -> tuple[dict, object]:  # noqa: ANN001
    """Train `cfg` (a RunCfg) in a throwaway run directory until its criterion or `budget_s` of training.

    `stop` sets the RunCfg stop fields (stop_success, stop_below). Returns the summary and the resolved config.
    """
    from robolearn.learners.runner import Trainer

    cfg = dataclasses.replace(
        cfg,
        seed=seed,
        env=dataclasses.replace(cfg.env, device=device),
        eval_every=cfg.eval_every or 10,
        time_budget_s=budget_s,
        iterations=10**9,
        checkpoint_every=10**9,
        tensorboard=False,
        **stop,
    )
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, run_dir=Path(tmp) / "run", quiet=True)
        return trainer.train(), cfg


def quadrotor_hover_time(args: list[str]) -> dict:
    """Train the hover preset until the criterion is met; report the wall time since process start."""
    p = argparse.ArgumentParser(prog="robolearn bench quadrotor-hover-time")
    p.add_argument("--config", default=str(CONFIGS / "quadrotor-hover.yaml"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget-s", type=float, default=600.0, help="give up after this many seconds of training")
    opts = p.parse_args(args)

    from robolearn.learners.runner import load_run_cfg_file

    cfg = dataclasses.replace(load_run_cfg_file(opts.config), eval_episodes=1000)
    summary, cfg = train_until(cfg, opts.device, opts.seed, opts.budget_s, stop_success=0.95)
    return {
        "seconds": round(process_age_s(), 2),
        "success_rate": summary.get("eval/success", 0.0),
        "met": summary["stop_reason"] == "success",
        "device": opts.device,
        "train_seconds": summary["elapsed_s"],
        "env_steps": summary["env_steps"],
        "iterations": summary["iterations"],
        "final_pos_error_m": summary.get("eval/final_pos_error"),
        "learner": cfg.learner,
        "config": opts.config,
        "seed": opts.seed,
    }


def quadruped_train_time(args: list[str]) -> dict:
    """Train the flat-ground walking preset until it tracks its commands; report the wall time since process start.

    Criterion (evaluated every `eval_every` iterations of the preset on `--eval-episodes` fresh episodes with the
    deterministic policy): mean velocity tracking error ≤ `--max-tracking-error` m/s (standing still scores about
    0.45 on the preset's 0–1 m/s forward commands) and at most `--max-falls` of the episodes end in a fall.
    """
    p = argparse.ArgumentParser(prog="robolearn bench quadruped-train-time")
    p.add_argument("--config", default=str(CONFIGS / "quadruped-walk.yaml"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--backend", default=None, help="mujoco_cpu | mjwarp (default: the preset's)")
    p.add_argument("--num-envs", type=int, default=None, help="parallel envs (default: the preset's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-tracking-error", type=float, default=0.20, help="m/s")
    p.add_argument("--max-falls", type=float, default=0.05, help="fraction of evaluation episodes")
    p.add_argument("--eval-episodes", type=int, default=64)
    p.add_argument("--eval-every", type=int, default=None, help="iterations between evaluations (default: preset's)")
    p.add_argument("--budget-s", type=float, default=1800.0, help="give up after this many seconds of training")
    opts = p.parse_args(args)

    from robolearn.learners.runner import load_run_cfg_file

    cfg = load_run_cfg_file(opts.config)
    env = cfg.env
    if opts.backend is not None:
        env = dataclasses.replace(env, backend=opts.backend)
    if opts.num_envs is not None:
        env = dataclasses.replace(env, num_envs=opts.num_envs)
    every = opts.eval_every or cfg.eval_every
    cfg = dataclasses.replace(cfg, env=env, eval_episodes=opts.eval_episodes, eval_every=every)
    bounds = {"tracking_error": opts.max_tracking_error, "terminated": opts.max_falls}
    summary, cfg = train_until(cfg, opts.device, opts.seed, opts.budget_s, stop_below=bounds)
    return {
        "seconds": round(process_age_s(), 2),
        "met": summary["stop_reason"] == "success",
        "tracking_error": summary.get("eval/tracking_error"),
        "fall_rate": summary.get("eval/terminated"),
        "criterion": bounds,
        "device": opts.device,
        "backend": cfg.env.backend,
        "num_envs": cfg.env.num_envs,
        "train_seconds": summary["elapsed_s"],
        "env_steps": summary["env_steps"],
        "iterations": summary["iterations"],
        "config": opts.config,
        "seed": opts.seed,
    }
