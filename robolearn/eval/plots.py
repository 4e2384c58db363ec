"""Static PNG plots of flights and training runs, drawn with matplotlib's Agg canvas (no display, no pyplot state)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from robolearn.core.errors import require

_DPI = 150
_AXES = ("x", "y", "z")
_AXIS_COLORS = ("tab:red", "tab:green", "tab:blue")
_TOL_M = 0.05  # the "within 5 cm" line


def _new_figure(width_in: float, height_in: float) -> Any:
    """A matplotlib Figure bound to an Agg canvas; fails with the viz-extra message without matplotlib."""
    require("matplotlib", "viz")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, out: Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=_DPI, facecolor="white")
    return out


def _settling_time(t: np.ndarray, err: np.ndarray, tol: float) -> float | None:
    """First time after which the error stays below `tol`, or None if it never settles."""
    above = np.flatnonzero(err >= tol)
    if len(above) == 0:
        return float(t[0])
    return None if above[-1] + 1 >= len(t) else float(t[above[-1] + 1])


def _stats_text(t: np.ndarray, pos: np.ndarray, ref: np.ndarray | None) -> str:
    """A few summary numbers of the flight, one per line."""
    if ref is None:
        speed = np.linalg.norm(np.diff(pos, axis=0), axis=1) / np.diff(t)
        path_len = float(np.linalg.norm(np.diff(pos, axis=0), axis=1).sum())
        return "\n".join([
            f"duration        {t[-1] - t[0]:.2f} s",
            f"path length     {path_len:.2f} m",
            f"max speed       {speed.max():.2f} m/s",
            f"final position  ({pos[-1, 0]:.2f}, {pos[-1, 1]:.2f}, {pos[-1, 2]:.2f}) m",
        ])  # fmt: skip
    err = np.linalg.norm(pos - ref, axis=1)
    last = t >= t[-1] - 1.0
    settle = _settling_time(t, err, _TOL_M)
    return "\n".join([
        f"duration           {t[-1] - t[0]:.2f} s",
        f"RMS error          {100 * math.sqrt(float(np.mean(err**2))):.1f} cm",
        f"max error          {100 * err.max():.1f} cm",
        f"mean err, last 1 s {100 * err[last].mean():.1f} cm",
        f"time within 5 cm   {100 * np.mean(err < _TOL_M):.0f} %",
        f"settled (<5 cm) at {'never' if settle is None else f'{settle - t[0]:.2f} s'}",
    ])  # fmt: skip


def plot_flight(
    t: np.ndarray,
    pos: np.ndarray,
    ref: np.ndarray | None,
    out: Path,
    *,
    title: str = "",
    euler: np.ndarray | None = None,
    actions: np.ndarray | None = None,
    action_names: list[str] | None = None,
) -> Path:
    """One PNG of a flight: x/y/z and error vs time, a top-down path, optional attitude (rad) and motor commands."""
    require("matplotlib", "viz")
    t, pos = np.asarray(t, dtype=np.float64), np.asarray(pos, dtype=np.float64)
    n = len(t)
    if t.ndim != 1 or pos.shape != (n, 3):
        raise ValueError(f"t must be (T,) and pos (T, 3); got {t.shape} and {pos.shape}")
    ref = None if ref is None else np.asarray(ref, dtype=np.float64)
    if ref is not None and ref.shape != (n, 3):
        raise ValueError(f"ref must be (T, 3) = ({n}, 3), got {ref.shape}")
    if euler is not None and np.shape(euler) != (n, 3):
        raise ValueError(f"euler must be (T, 3) = ({n}, 3), got {np.shape(euler)}")
    if actions is not None and (np.ndim(actions) != 2 or len(actions) != n):
        raise ValueError(f"actions must be (T, A) with T={n}, got {np.shape(actions)}")
    from matplotlib.collections import LineCollection
    from matplotlib.ticker import FuncFormatter

    rows = 4 + (euler is not None) + (actions is not None)
    fig_w, fig_h = 14.0, 1.85 * rows + 0.7
    # top-down box aspect follows the path (clamped), and its row is sized so the panel has no blank band
    span = np.ptp(pos[:, :2] if ref is None else np.concatenate([pos[:, :2], ref[:, :2]]), axis=0)
    box_aspect = float(np.clip(span[1] / max(span[0], 1e-9), 0.6, 1.0))
    top_h = min(box_aspect * 0.36 * fig_w / 1.35 + 1.0, 0.75 * fig_h)
    fig = _new_figure(fig_w, fig_h)
    outer = fig.add_gridspec(1, 2, width_ratios=[1.7, 1.0])
    left, right = outer[0].subgridspec(rows, 1), outer[1].subgridspec(2, 1, height_ratios=[top_h, fig_h - top_h])
    series_axes = [fig.add_subplot(left[0])]
    series_axes += [fig.add_subplot(left[r], sharex=series_axes[0]) for r in range(1, rows)]
    if title:
        fig.suptitle(title, fontsize=13, fontweight="bold")

    # x, y, z vs time, reference dashed
    for a, ax in enumerate(series_axes[:3]):
        ax.plot(t, pos[:, a], color=_AXIS_COLORS[a], lw=1.6, label="flown")
        if ref is not None:
            ax.plot(t, ref[:, a], color="black", lw=1.2, ls="--", label="reference")
        ax.set_ylabel(f"{_AXES[a]} [m]")
    series_axes[0].legend(loc="upper right", fontsize=8, ncols=2, framealpha=0.85)

    # position error (log scale: convergence from a far start and cm-level tracking both stay visible)
    ax = series_axes[3]
    if ref is not None:
        err_cm = 100 * np.linalg.norm(pos - ref, axis=1)
        ax.plot(t, err_cm, color="tab:purple", lw=1.6, label="‖p − p_ref‖")
        ax.axhline(100 * _TOL_M, color="tab:red", lw=1.0, ls=":", label="5 cm")
        ax.set_yscale("log")
        ax.set_ylim(max(0.05, 0.7 * float(err_cm.min())), max(1.6 * float(err_cm.max()), 10.0))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_ylabel("position error [cm]")
        ax.legend(loc="upper right", fontsize=8, ncols=2, framealpha=0.85)
    else:
        speed = np.linalg.norm(np.gradient(pos, t, axis=0), axis=1)
        ax.plot(t, speed, color="tab:purple", lw=1.6)
        ax.set_ylabel("speed [m/s]")

    row = 4
    if euler is not None:
        ax = series_axes[row]
        deg = np.degrees(np.asarray(euler, dtype=np.float64))
        deg[:, 2] = np.degrees(np.unwrap(np.asarray(euler, dtype=np.float64)[:, 2]))
        for a, name in enumerate(("roll", "pitch", "yaw")):
            ax.plot(t, deg[:, a], color=_AXIS_COLORS[a], lw=1.3, label=name)
        ax.set_ylabel("attitude [deg]")
        ax.legend(loc="upper right", fontsize=8, ncols=3, framealpha=0.85)
        row += 1
    if actions is not None:
        ax = series_axes[row]
        act = np.asarray(actions, dtype=np.float64)
        names = action_names or [f"a{i}" for i in range(act.shape[1])]
        if len(names) != act.shape[1]:
            raise ValueError(f"{len(names)} action names for {act.shape[1]} actions")
        for i, name in enumerate(names):
            ax.plot(t, act[:, i], lw=1.0, label=name)
        ax.set_ylabel("motor command")
        ax.legend(loc="upper right", fontsize=8, ncols=min(len(names), 4), framealpha=0.85)
    for ax in series_axes:
        ax.grid(True, alpha=0.3)
        ax.margins(x=0)
        if ax is not series_axes[-1]:
            ax.tick_params(labelbottom=False)
    series_axes[-1].set_xlabel("time [s]")

    # top-down path colored by time, reference dashed
    ax = fig.add_subplot(right[0])
    segs = np.stack([pos[:-1, :2], pos[1:, :2]], axis=1)
    lc = LineCollection(segs, cmap="viridis", linewidths=2.0)
    lc.set_array(t[:-1])
    ax.add_collection(lc)
    if ref is not None:
        ax.plot(ref[:, 0], ref[:, 1], color="black", lw=1.2, ls="--", label="reference")
    ax.plot(*pos[0, :2], "o", color="black", mfc="white", ms=7, label="start")
    ax.plot(*pos[-1, :2], "s", color="black", ms=6, label="end")
    ax.set_box_aspect(box_aspect)
    ax.set_aspect("equal", adjustable="datalim")
    ax.autoscale_view()
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.set_title("top-down view", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8, framealpha=0.85)
    fig.colorbar(lc, cax=ax.inset_axes((1.03, 0.0, 0.035, 1.0)), label="time [s]")

    # summary numbers
    ax = fig.add_subplot(right[1])
    ax.axis("off")
    ax.text(0.02, 0.95, _stats_text(t, pos, ref), transform=ax.transAxes, va="top", ha="left",
            family="monospace", fontsize=9.5, bbox={"boxstyle": "round", "fc": "#f4f6f9", "ec": "#c8ced6"})  # fmt: skip
    return _save(fig, out)


def _ema(y: np.ndarray, span: float) -> np.ndarray:
    """Exponential moving average that skips NaNs and starts unbiased."""
    alpha = 2.0 / (span + 1.0)
    out = np.empty_like(y)
    acc, norm = 0.0, 0.0
    for i, v in enumerate(y):
        if np.isfinite(v):
            acc, norm = (1 - alpha) * acc + alpha * v, (1 - alpha) * norm + alpha
        out[i] = acc / norm if norm > 0 else np.nan
    return out


def plot_training_curves(steps: np.ndarray, series: dict[str, np.ndarray], out: Path, title: str = "") -> Path:
    """A grid of small panels, one training metric each vs env steps (raw faint, smoothed bold)."""
    require("matplotlib", "viz")
    steps = np.asarray(steps, dtype=np.float64)
    if not series:
        raise ValueError("series is empty: nothing to plot")
    for name, y in series.items():
        if np.shape(y) != steps.shape:
            raise ValueError(f"series '{name}' has shape {np.shape(y)}, steps has {steps.shape}")
    from matplotlib.ticker import EngFormatter

    ncols = min(3, len(series))
    nrows = math.ceil(len(series) / ncols)
    fig = _new_figure(4.3 * ncols, 2.9 * nrows + (0.4 if title else 0.0))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (name, y) in zip(axes, series.items(), strict=False):
        y = np.asarray(y, dtype=np.float64)
        ok = np.isfinite(y)
        if len(y) >= 20:
            ax.plot(steps[ok], y[ok], color="tab:blue", lw=0.8, alpha=0.35)
            span = max(len(y) / 25, 2.0)
            smooth = _ema(_ema(y, span)[::-1], span)[::-1]  # forward-backward: no lag behind the raw curve
            ax.plot(steps[ok], smooth[ok], color="tab:blue", lw=1.8)
        else:
            ax.plot(steps[ok], y[ok], color="tab:blue", lw=1.6, marker="o", ms=3)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("env steps")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.grid(True, alpha=0.3)
    for ax in axes[len(series) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=12, fontweight="bold")
    return _save(fig, out)


def plot_coverage(
    t: np.ndarray,
    coverage: np.ndarray,
    out: Path,
    *,
    lengths_s: np.ndarray | None = None,
    threshold: float | None = None,
    title: str = "",
) -> Path:
    """Coverage over time (Push-T): one line per recorded episode (T, K), each cut at its length.

    The dashed line is the success threshold; the legend says when each episode first crossed it.
    """
    require("matplotlib", "viz")
    t, cov = np.asarray(t, dtype=np.float64), np.asarray(coverage, dtype=np.float64)
    if cov.ndim == 1:
        cov = cov[:, None]
    if t.ndim != 1 or cov.shape[0] != len(t):
        raise ValueError(f"t must be (T,) and coverage (T, K) with the same T; got {t.shape} and {cov.shape}")
    k = cov.shape[1]
    lengths = np.full(k, np.inf) if lengths_s is None else np.asarray(lengths_s, dtype=np.float64)
    fig = _new_figure(9.0, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    for i in range(k):
        # sample j is the state after j policy steps; an episode of length L has samples 0 … L/dt
        keep = t <= lengths[i] + 1e-9 if np.isfinite(lengths[i]) and lengths[i] > 0 else slice(None)
        ti, ci = t[keep], cov[keep, i]
        crossed = np.flatnonzero(ci > threshold) if threshold is not None else np.array([], dtype=int)
        when = f"success at {ti[crossed[0]]:.1f} s" if len(crossed) else f"max {100 * ci.max():.1f} %"
        ax.plot(ti, 100 * ci, lw=1.6, color=f"C{i}", label=f"episode {i}: {when}")
    if threshold is not None:
        ax.axhline(100 * threshold, color="black", ls="--", lw=1.0, label=f"success ({100 * threshold:.0f} %)")
    ax.set_xlabel("time [s]")
    ax.set_ylabel("coverage of the goal [%]")
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8, framealpha=0.85)
    if title:
        ax.set_title(title, fontsize=12, fontweight="bold")
    return _save(fig, out)


_LINESTYLES = ("-", "--", ":", "-.")


def plot_episode_curves(
    t: np.ndarray,
    curves: list[Any],
    values: dict[str, np.ndarray],
    out: Path,
    *,
    lengths_s: np.ndarray | None = None,
    success_s: np.ndarray | None = None,
    title: str = "",
) -> Path:
    """One panel per task curve (`VizCurve`s: name, unit, labels, kind, threshold) of K recorded episodes.

    `values[name]` is (T, K) or (T, K, C) in plotted units, sampled at `t` (T,); episode k is drawn up to
    `lengths_s[k]` in colour Ck. `success_s[k]` (NaN: none) marks when episode k succeeded, in every panel.
    """
    require("matplotlib", "viz")
    from matplotlib.lines import Line2D

    t = np.asarray(t, dtype=np.float64)
    panels = [c for c in curves if c.kind != "success"]
    if not panels:
        raise ValueError("no curves to plot")
    arrays = {}
    for c in panels:
        if c.name not in values:
            raise ValueError(f"no values for curve '{c.name}'")
        v = np.asarray(values[c.name], dtype=np.float64)
        v = v[..., None] if v.ndim == 2 else v
        if v.ndim != 3 or v.shape[0] != len(t):
            raise ValueError(f"curve '{c.name}' must be (T, K) or (T, K, C) with T={len(t)}, got {v.shape}")
        arrays[c.name] = v
    k = next(iter(arrays.values())).shape[1]
    lengths = np.full(k, np.inf) if lengths_s is None else np.asarray(lengths_s, dtype=np.float64)
    success = np.full(k, np.nan) if success_s is None else np.asarray(success_s, dtype=np.float64)
    fig = _new_figure(11.0, 2.1 * len(panels) + 0.9)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, c in zip(axes, panels, strict=True):
        v = arrays[c.name]
        for i in range(k):
            keep = t <= lengths[i] + 1e-9 if np.isfinite(lengths[i]) and lengths[i] > 0 else slice(None)
            for j in range(v.shape[2]):
                draw = ax.step if c.kind == "step" else ax.plot
                kw = {"where": "post"} if c.kind == "step" else {}
                draw(t[keep], v[keep, i, j], color=f"C{i}", lw=1.5, ls=_LINESTYLES[j % 4], **kw)
            if np.isfinite(success[i]):
                ax.axvline(success[i], color=f"C{i}", lw=1.0, ls=":", alpha=0.9)
        if c.threshold is not None:
            ax.axhline(c.threshold, color="black", lw=1.0, ls="--", alpha=0.7)
        if c.labels:  # which line style is which column
            ax.legend(handles=[Line2D([], [], color="0.3", ls=_LINESTYLES[j % 4], label=lab)
                               for j, lab in enumerate(c.labels)], loc="upper right", fontsize=7, framealpha=0.85)
        ax.set_ylabel(f"{c.name}" + (f" [{c.unit}]" if c.unit else ""), fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.margins(x=0)
    for i in range(k):  # success markers on the top panel
        if np.isfinite(success[i]):
            axes[0].plot([success[i]], [1.0], marker="*", ms=11, color=f"C{i}", transform=axes[0].get_xaxis_transform(),
                         clip_on=False)
    episodes = [Line2D([], [], color=f"C{i}", lw=1.5,
                       label=f"episode {i}: success at {success[i]:.2f} s" if np.isfinite(success[i])
                       else f"episode {i}: no success ({lengths[i]:.2f} s)") for i in range(k)]
    fig.legend(handles=episodes, loc="outside lower center", ncols=min(k, 4), fontsize=8, frameon=False)
    axes[-1].set_xlabel("time [s]")
    if title:
        fig.suptitle(title, fontsize=12, fontweight="bold")
    return _save(fig, out)
