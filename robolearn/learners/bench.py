"""`robolearn bench quadrotor-hover-time`: wall seconds from process start until a hover policy meets the criterion.

Criterion: at least 95% of 1,000 random-start evaluation episodes end within 5 cm of the goal without a crash
(the deterministic policy, a separate evaluation env and seed). Evaluations run every `eval_every` iterations
of the preset and their time counts.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


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


def quadrotor_hover_time(args: list[str]) -> dict:
    """Train the hover preset until the criterion is met; report the wall time since process start."""
    p = argparse.ArgumentParser(prog="robolearn bench quadrotor-hover-time")
    p.add_argument("--config", default=str(Path(__file__).resolve().parents[2] / "configs" / "quadrotor-hover.yaml"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget-s", type=float, default=600.0, help="give up after this many seconds of training")
    opts = p.parse_args(args)

    import dataclasses

    from robolearn.learners.runner import Trainer, load_run_cfg_file

    cfg = load_run_cfg_file(opts.config)
    cfg = dataclasses.replace(
        cfg,
        seed=opts.seed,
        env=dataclasses.replace(cfg.env, device=opts.device),
        stop_success=0.95,
        eval_episodes=1000,
        eval_every=cfg.eval_every or 10,
        time_budget_s=opts.budget_s,
        iterations=10**9,
        checkpoint_every=10**9,
        tensorboard=False,
    )
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, run_dir=Path(tmp) / "run", quiet=True)
        summary = trainer.train()
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
