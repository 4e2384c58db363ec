"""Robustness under fixed test conditions: survival (fall) rate and tracking error per disturbance, payload, terrain.

Push and pull conditions work on any task that implements the disturbance interface (`robolearn.core.env.Disturbable`).
Each condition runs every env for one episode from the task's random starts (the same seed for every condition, so
conditions differ only in what is tested). Kinds of condition (`SweepCfg.kinds`):

- `push`: a horizontal force of each magnitude, in a random direction per env, from `push_start_s` for
  `push_duration_s` (an impulse-like shove), zero otherwise;
- `pull`: the same force for the whole episode (a constant pull, e.g. a cable or wind);
- `payload`: an extra trunk mass of each `payloads_kg` (quadruped tasks: config `randomize.payload` fixed to it);
- `terrain`: each of `terrains` at difficulty level `terrain_level` (quadruped tasks: config `terrain`,
  `start_level`, no curriculum).

Payload and terrain conditions are config overrides in `--set` syntax (`robolearn.core.config.parse_sets`), passed
to `make_env(sets)`. Survival is 1 − the fraction of episodes that terminated (crash / fall); the tracking error is
the task's per-episode metric named by `metric` (default: the first of `TRACKING_METRICS` the task reports).
`render_disturbed_rollout` writes a video of a push with the force drawn as an arrow on the trunk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from robolearn.core.env import BatchedEnv, check_disturbable
from robolearn.core.errors import RobolearnError
from robolearn.core.types import Obs
from robolearn.envs.quadruped.terrain import check_terrain
from robolearn.eval.rollout import evaluate_policy

TRACKING_METRICS = ("tracking_error", "lin_vel_error", "pos_error_rms")
"""Per-episode metrics that measure tracking, in order of preference."""


@dataclass(kw_only=True)
class SweepCfg:
    """Which test disturbances to apply."""

    magnitudes: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    """Force magnitudes as fractions of the task's horizontal force limit (the smaller of components 0 and 1)."""
    kinds: tuple[str, ...] = ("push", "pull")
    """push: a force for `push_duration_s` from `push_start_s`; pull: a constant force for the whole episode;
    payload: extra trunk mass; terrain: terrain types at one level (the last two: quadruped tasks)."""
    payloads_kg: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0)
    """payload: extra trunk mass of each condition [kg]."""
    terrains: tuple[str, ...] = ("flat", "slope", "stairs_up", "stairs_down", "rough")
    """terrain: terrain types, one condition each."""
    terrain_level: int | None = None
    """terrain: difficulty level every env starts on (None: the task's hardest, terrain_levels − 1)."""
    push_start_s: float = 1.0
    """Time of the push after the episode start [s]."""
    push_duration_s: float = 0.2
    """Duration of the push [s]."""
    metric: str | None = None
    """Tracking metric reported (None: the first of TRACKING_METRICS the task has)."""


KINDS = ("push", "pull", "payload", "terrain")


def conditions(cfg: SweepCfg, env_cfg: Any = None, task: str = "") -> list[dict[str, Any]]:
    """The sweep's conditions in order: {"kind", "magnitude" | "payload_kg" | "terrain" + "terrain_level", "sets"}.

    `env_cfg` (the task config) is needed for payload/terrain conditions: they must exist in it.
    """
    for kind in cfg.kinds:
        if kind not in KINDS:
            raise RobolearnError(f"disturbance sweep: unknown kind '{kind}' (choose from {', '.join(KINDS)})")
    out: list[dict[str, Any]] = []
    for kind in cfg.kinds:
        if kind in ("push", "pull"):
            out += [{"kind": kind, "magnitude": float(m), "sets": ()} for m in cfg.magnitudes]
            continue
        if kind == "payload":
            if not isinstance(getattr(env_cfg, "randomize", None), dict) or not hasattr(env_cfg, "terrain"):
                raise RobolearnError(f"disturbance sweep: kind 'payload' needs a quadruped task ('{task}' has no "
                                     "trunk payload)")
            out += [{"kind": kind, "payload_kg": float(kg), "sets": (f"randomize.payload=[{kg}, {kg}]",)}
                    for kg in cfg.payloads_kg]
        else:
            if not hasattr(env_cfg, "terrain") or not hasattr(env_cfg, "start_level"):
                raise RobolearnError(f"disturbance sweep: kind 'terrain' needs a quadruped task ('{task}' has no "
                                     "terrains)")
            level = env_cfg.terrain_levels - 1 if cfg.terrain_level is None else cfg.terrain_level
            for name in cfg.terrains:
                check_terrain(name, "disturbance sweep")
                out.append({"kind": kind, "terrain": name, "terrain_level": level,
                            "sets": (f"terrain={name}", f"start_level={level}", "curriculum=false")})
    return out


def disturbance_sweep(make_env: Callable[..., BatchedEnv], policy: Callable[[Obs], Tensor],
                      cfg: SweepCfg | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """One row per condition (see `conditions`): survival, fall rate, tracking error and the episode metrics.

    `make_env()` must return a fresh env with the same seed each call (same starts for every condition);
    payload/terrain conditions call `make_env(sets)` with `--set`-style config overrides.
    """
    cfg = cfg or SweepCfg()
    probe = make_env() if any(k in ("payload", "terrain") for k in cfg.kinds) else None
    rows: list[dict[str, Any]] = []
    for cond in conditions(cfg, getattr(probe, "cfg", None), getattr(getattr(probe, "spec", None), "name", "")):
        kind = cond["kind"]
        if kind in ("push", "pull"):
            env = check_disturbable(make_env(), "disturbance sweep")
            limit = env.disturbance_limit.to(env.device)
            force = float(cond["magnitude"]) * float(limit[:2].min())
            wrench = _horizontal_wrench(env, force)
            start = round(cfg.push_start_s / env.step_dt)
            stop = start + max(1, round(cfg.push_duration_s / env.step_dt))
            step = {"t": 0}

            def disturbed(obs: Obs, env=env, wrench=wrench, kind=kind, start=start, stop=stop, step=step) -> Tensor:
                on = kind == "pull" or start <= step["t"] < stop
                env.set_disturbance(wrench if on else torch.zeros_like(wrench))
                step["t"] += 1
                return policy(obs)

            metrics = evaluate_policy(env, disturbed)
            extra = {"force_n": force,
                     "duration_s": (stop - start) * env.step_dt if kind == "push" else float("inf")}
        else:
            env = make_env(cond["sets"])
            if hasattr(env, "disturbance_dim"):  # draw what push/pull draw: the same starts as theirs
                _horizontal_wrench(env, 0.0)
            metrics = evaluate_policy(env, policy)
            extra = {"force_n": 0.0, "duration_s": 0.0}
        assert isinstance(metrics, dict)
        name = cfg.metric or next((m for m in TRACKING_METRICS if m in metrics), None)
        if name is None or name not in metrics:
            raise RobolearnError(f"disturbance sweep: task '{env.spec.name}' reports no tracking metric "
                                 f"{cfg.metric or TRACKING_METRICS}; it has {sorted(metrics)}")
        survival = 1.0 - metrics.get("terminated", float("nan"))
        rows.append({
            **{k: v for k, v in cond.items() if k != "sets"}, "magnitude": float(cond.get("magnitude", 0.0)),
            "condition": describe(cond, extra["duration_s"]), "set": list(cond["sets"]), **extra,
            "survival": survival, "fall_rate": 1.0 - survival, "episodes": int(metrics["episodes"]),
            "tracking_metric": name, "tracking_error": metrics[name],
            **{f"episode/{k}": v for k, v in metrics.items()},
        })  # fmt: skip
    return rows


def _horizontal_wrench(env: Any, force: float) -> Tensor:
    """(N, disturbance_dim) wrenches: `force` [N] horizontally in a random direction per env (env's generator)."""
    angle = 2 * torch.pi * torch.rand(env.num_envs, generator=env.rng, device=env.device)
    wrench = torch.zeros(env.num_envs, env.disturbance_dim, device=env.device)
    wrench[:, 0], wrench[:, 1] = force * torch.cos(angle), force * torch.sin(angle)
    return wrench


def describe(cond: dict[str, Any], duration_s: float = 0.0) -> str:
    """A condition in words: "push 0.20 s", "constant pull", "payload +2.0 kg", "terrain rough, level 4"."""
    kind = cond["kind"]
    if kind == "push":
        return f"push {duration_s:.2f} s"
    if kind == "pull":
        return "constant pull"
    if kind == "payload":
        return f"payload {cond['payload_kg']:+.1f} kg"
    return f"terrain {cond['terrain']}, level {cond['terrain_level']}"


CSV_COLUMNS = ("policy", "kind", "condition", "force_n", "payload_kg", "terrain", "terrain_level", "episodes",
               "survival", "fall_rate", "tracking_metric", "tracking_error")


def write_csv(tables: dict[str, list[dict]], out: Path) -> Path:
    """The table as CSV, one row per (policy, condition), columns `CSV_COLUMNS` (empty where not applicable)."""
    import csv

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for label, rows in tables.items():
            for r in rows:
                w.writerow([label if c == "policy" else r.get(c, "") for c in CSV_COLUMNS])
    return out


def format_table(tables: dict[str, list[dict]]) -> str:
    """A Markdown table: one row per (policy, kind, magnitude)."""
    lines = ["| policy | condition | force [N] | survival | fall rate | tracking error |",
             "|---|---|---:|---:|---:|---:|"]
    for label, rows in tables.items():
        for r in rows:
            force = f"{r['force_n']:.3f}" if r["kind"] in ("push", "pull") else "–"
            lines.append(f"| {label} | {r['condition']} | {force} | {r['survival']:.3f} | {r['fall_rate']:.3f} | "
                         f"{r['tracking_error']:.4f} ({r['tracking_metric']}) |")
    return "\n".join(lines)


def plot_robustness(tables: dict[str, list[dict]], out: Path, title: str = "") -> Path:
    """Survival and tracking error per condition: a panel pair per kind (x: force, payload, terrain), a line each."""
    from robolearn.eval.plots import _new_figure, _save

    present = {r["kind"] for rows in tables.values() for r in rows}
    kinds = [k for k in KINDS if k in present]
    if not kinds:
        raise RobolearnError("robustness plot: no rows to plot")
    fig = _new_figure(4.2 * len(kinds), 5.6 + (0.3 if title else 0.0))
    axes = fig.subplots(2, len(kinds), squeeze=False)
    for col, kind in enumerate(kinds):
        sample = next(r for rows in tables.values() for r in rows if r["kind"] == kind)
        names: list[str] = []
        for label, rows in tables.items():
            sel = [r for r in rows if r["kind"] == kind]
            if kind == "terrain":
                names = [r["terrain"] for r in sel]
                x = list(range(len(sel)))
            else:
                x = [r["payload_kg"] if kind == "payload" else r["force_n"] for r in sel]
            axes[0, col].plot(x, [r["survival"] for r in sel], marker="o", ms=3, label=label)
            axes[1, col].plot(x, [r["tracking_error"] for r in sel], marker="o", ms=3, label=label)
        what = {"push": f"push {sample['duration_s']:.2f} s", "pull": "constant pull", "payload": "payload",
                "terrain": f"terrain, level {sample.get('terrain_level', '')}"}[kind]
        axes[0, col].set_title(f"{what}: survival", fontsize=10)
        axes[1, col].set_title(f"{what}: {sample['tracking_metric']}", fontsize=10)
        axes[0, col].set_ylim(-0.02, 1.02)
        for ax in axes[:, col]:
            if kind == "terrain":
                ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
            else:
                ax.set_xlabel("extra trunk mass [kg]" if kind == "payload" else "force [N]")
            ax.grid(True, alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=12, fontweight="bold")
    return _save(fig, out)


def render_disturbed_rollout(make_env: Callable[..., BatchedEnv], policy: Callable[[Obs], Tensor], cfg: SweepCfg,
                             out: Path, magnitude: float, *, views: int = 3, size: tuple[int, int] = (240, 320),
                             fps: float = 25.0, after_s: float = 1.0, arrow_m_per_n: float = 0.01) -> Path:
    """MP4 of `views` envs side by side, pushed as the sweep's push condition of `magnitude` does.

    The video runs until `after_s` after the push; the force is drawn as a red arrow pointing at the trunk
    (`arrow_m_per_n` metres per newton); a view whose episode ends (a fall) freezes on its last frame. Needs a
    MuJoCo task with a trunk body (quadruped tasks), on either backend (`robolearn.envs.viz`).
    """
    from robolearn.envs.viz import EpisodeRenderer
    from robolearn.eval.video import write_frames_video

    env = check_disturbable(make_env(), "disturbance video")
    if not hasattr(env, "trunk") or not hasattr(env, "base_pos"):
        raise RobolearnError(f"disturbance video: task '{env.spec.name}' has no trunk body to follow "
                             "(quadruped tasks only)")
    ids = list(range(min(views, env.num_envs)))
    renderer = EpisodeRenderer(env, size, track_body=env.trunk, distance=2.2, azimuth=120.0, elevation=-18.0)
    force = float(magnitude) * float(env.disturbance_limit[:2].min())
    wrench = _horizontal_wrench(env, force)
    start = round(cfg.push_start_s / env.step_dt)
    stop = start + max(1, round(cfg.push_duration_s / env.step_dt))
    total = stop + round(after_s / env.step_dt)
    every = max(1, round(1.0 / (fps * env.step_dt)))
    fell = torch.zeros(len(ids), dtype=torch.bool)
    held: dict[int, tuple[np.ndarray, float]] = {}  # view -> (frame, time) of an episode that ended: shown frozen
    frames, labels = [], []
    clock = {"t": 0}

    def draw(views: list[int]) -> np.ndarray:
        pos = env.base_pos[views].detach().cpu()
        f = env.disturbance[views, :3].detach().cpu()
        return renderer.render(views, torch.stack((pos - arrow_m_per_n * f, pos), 1)).numpy()

    def hold(done_ids: Tensor) -> None:  # before the auto-reset: keep the last frame of the episode
        ended = [i for i in done_ids.tolist() if i < len(ids) and i not in held]
        for i, img in zip(ended, draw(ended) if ended else [], strict=True):
            held[i] = (img, (clock["t"] + 1) * env.step_dt)

    obs = env.reset()
    env.episode_end_hook = hold
    with torch.no_grad():
        for t in range(total + 1):
            clock["t"] = t
            if t % every == 0 or t == total:
                img = draw(ids)
                for k, (frame, _) in held.items():
                    img[k] = frame
                pushing = bool(env.disturbance[ids, :3].norm(dim=-1).gt(0).any())
                labels.append([f"env {k}  t {held[k][1] if k in held else t * env.step_dt:4.2f} s"
                               + (("  fell" if bool(fell[k]) else "  episode ended") if k in held else
                                  f"  push {force:.0f} N" if pushing else "") for k in range(len(ids))])
                frames.append(img)
            if t == total:
                break
            on = start <= t < stop
            env.set_disturbance(wrench if on else torch.zeros_like(wrench))
            res = env.step(policy(obs))
            fell |= res.terminated[ids].cpu()
            obs = res.obs
    env.episode_end_hook = None
    return write_frames_video(np.stack(frames, 0), out, fps=1.0 / (every * env.step_dt), labels=labels)
