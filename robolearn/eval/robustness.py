"""Robustness under fixed test disturbances: survival rate and tracking error vs push / pull magnitude.

Works on any task that implements the disturbance interface (`robolearn.core.env.Disturbable`). Each condition runs
every env for one episode from the task's random starts (the same seed for every condition, so conditions differ
only in the disturbance), with a horizontal force of the given magnitude in a random direction per env:

- `push`: applied from `push_start_s` for `push_duration_s` (an impulse-like shove), zero otherwise;
- `pull`: applied for the whole episode (a constant pull, e.g. a cable or wind).

Survival is 1 − the fraction of episodes that terminated (crash / fall); the tracking error is the task's
per-episode metric named by `metric` (default: the first of `TRACKING_METRICS` the task reports).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from robolearn.core.env import BatchedEnv, check_disturbable
from robolearn.core.errors import RobolearnError
from robolearn.core.types import Obs
from robolearn.eval.rollout import evaluate_policy

TRACKING_METRICS = ("tracking_error", "lin_vel_error", "pos_error_rms")
"""Per-episode metrics that measure tracking, in order of preference."""


@dataclass(kw_only=True)
class SweepCfg:
    """Which test disturbances to apply."""

    magnitudes: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    """Force magnitudes as fractions of the task's horizontal force limit (the smaller of components 0 and 1)."""
    kinds: tuple[str, ...] = ("push", "pull")
    """push: a force for `push_duration_s` from `push_start_s`; pull: a constant force for the whole episode."""
    push_start_s: float = 1.0
    """Time of the push after the episode start [s]."""
    push_duration_s: float = 0.2
    """Duration of the push [s]."""
    metric: str | None = None
    """Tracking metric reported (None: the first of TRACKING_METRICS the task has)."""


def disturbance_sweep(make_env: Callable[[], BatchedEnv], policy: Callable[[Obs], Tensor],
                      cfg: SweepCfg | None = None) -> list[dict[str, float | str]]:  # fmt: skip
    """One row per (kind, magnitude): force [N], survival, tracking error and the task's other episode metrics.

    `make_env()` must return a fresh env with the same seed each call (same starts for every condition).
    """
    cfg = cfg or SweepCfg()
    for kind in cfg.kinds:
        if kind not in ("push", "pull"):
            raise RobolearnError(f"disturbance sweep: unknown kind '{kind}' (choose push or pull)")
    rows: list[dict[str, float | str]] = []
    for kind in cfg.kinds:
        for frac in cfg.magnitudes:
            env = check_disturbable(make_env(), "disturbance sweep")
            limit = env.disturbance_limit.to(env.device)
            force = float(frac) * float(limit[:2].min())
            angle = 2 * torch.pi * torch.rand(env.num_envs, generator=env.rng, device=env.device)
            wrench = torch.zeros(env.num_envs, env.disturbance_dim, device=env.device)
            wrench[:, 0], wrench[:, 1] = force * torch.cos(angle), force * torch.sin(angle)
            start = round(cfg.push_start_s / env.step_dt)
            stop = start + max(1, round(cfg.push_duration_s / env.step_dt))
            step = {"t": 0}

            def disturbed(obs: Obs, env=env, wrench=wrench, kind=kind, start=start, stop=stop, step=step) -> Tensor:
                on = kind == "pull" or start <= step["t"] < stop
                env.set_disturbance(wrench if on else torch.zeros_like(wrench))
                step["t"] += 1
                return policy(obs)

            metrics = evaluate_policy(env, disturbed)
            assert isinstance(metrics, dict)
            name = cfg.metric or next((m for m in TRACKING_METRICS if m in metrics), None)
            if name is None or name not in metrics:
                raise RobolearnError(f"disturbance sweep: task '{env.spec.name}' reports no tracking metric "
                                     f"{cfg.metric or TRACKING_METRICS}; it has {sorted(metrics)}")
            rows.append({
                "kind": kind, "magnitude": float(frac), "force_n": force,
                "duration_s": (stop - start) * env.step_dt if kind == "push" else float("inf"),
                "survival": 1.0 - metrics.get("terminated", float("nan")),
                "tracking_metric": name, "tracking_error": metrics[name],
                **{f"episode/{k}": v for k, v in metrics.items()},
            })  # fmt: skip
    return rows


def format_table(tables: dict[str, list[dict]]) -> str:
    """A Markdown table: one row per (policy, kind, magnitude)."""
    lines = ["| policy | disturbance | force [N] | survival | tracking error |", "|---|---|---:|---:|---:|"]
    for label, rows in tables.items():
        for r in rows:
            what = (f"push {r['duration_s']:.2f} s" if r["kind"] == "push" else "constant pull")
            lines.append(f"| {label} | {what} | {r['force_n']:.3f} | {r['survival']:.3f} | "
                         f"{r['tracking_error']:.4f} ({r['tracking_metric']}) |")
    return "\n".join(lines)


def plot_robustness(tables: dict[str, list[dict]], out: Path, title: str = "") -> Path:
    """Survival and tracking error vs force, one panel pair per disturbance kind, one line per policy."""
    from robolearn.eval.plots import _new_figure, _save

    kinds = sorted({r["kind"] for rows in tables.values() for r in rows}, reverse=True)
    if not kinds:
        raise RobolearnError("robustness plot: no rows to plot")
    fig = _new_figure(4.2 * len(kinds), 5.6 + (0.3 if title else 0.0))
    axes = fig.subplots(2, len(kinds), squeeze=False)
    for col, kind in enumerate(kinds):
        for label, rows in tables.items():
            sel = [r for r in rows if r["kind"] == kind]
            x = [r["force_n"] for r in sel]
            axes[0, col].plot(x, [r["survival"] for r in sel], marker="o", ms=3, label=label)
            axes[1, col].plot(x, [r["tracking_error"] for r in sel], marker="o", ms=3, label=label)
        sample = next(r for rows in tables.values() for r in rows if r["kind"] == kind)
        what = f"push {sample['duration_s']:.2f} s" if kind == "push" else "constant pull"
        axes[0, col].set_title(f"{what}: survival", fontsize=10)
        axes[1, col].set_title(f"{what}: {sample['tracking_metric']}", fontsize=10)
        axes[0, col].set_ylim(-0.02, 1.02)
        for ax in axes[:, col]:
            ax.set_xlabel("force [N]")
            ax.grid(True, alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=12, fontweight="bold")
    return _save(fig, out)
