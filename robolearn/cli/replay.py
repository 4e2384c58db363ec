"""`robolearn replay DATASET [--task T] [--episodes ...]`: replay recorded actions and report divergence.

Recorded actions are re-executed in the simulator from each episode's recorded initial state; the report is the
per-episode divergence of the state trajectory.

--video writes recorded (left) and re-simulated (right) views side by side to MP4; --plot the recorded and
re-simulated positions; --policy evaluates a policy (`expert`, an artifact or a run directory) on the dataset's
episodes: open-loop action error and closed-loop success from the recorded initial states.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from robolearn.core.errors import RobolearnError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the `replay` command."""
    p = sub.add_parser("replay", help="replay a dataset in the simulator; evaluate a policy on it",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset")
    p.add_argument("--task", help="task to replay in (default: the one the dataset's provenance names)")
    p.add_argument("--episodes", nargs="+", help="episode indices or ranges (3 5-9); default: all")
    p.add_argument("--video", help="MP4 path: recorded vs. re-simulated views side by side")
    p.add_argument("--plot", help="PNG path: recorded vs. re-simulated positions (tasks with positions)")
    p.add_argument("--policy", help="expert, an artifact directory or a run directory to evaluate on the episodes")
    p.add_argument("--tolerance", type=float, default=1e-6,
                   help="state divergence above this is reported as diverged (exit status 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def parse_episodes(items: list[str] | None, n: int, dataset: str) -> list[int]:
    """'3', '5-9' -> indices, each checked against the dataset's episode count."""
    if not items:
        return list(range(n))
    out: list[int] = []
    for it in items:
        lo, _, hi = it.partition("-")
        try:
            a, b = int(lo), int(hi) if hi else int(lo)
        except ValueError:
            raise RobolearnError(f"--episodes: '{it}' is not an index or a range like 5-9") from None
        if not 0 <= a <= b < n:
            raise RobolearnError(f"dataset '{dataset}': episodes {it} out of range (it has {n} episodes)")
        out += list(range(a, b + 1))
    return out


def run(args: argparse.Namespace) -> int:
    """Replay, print the table, write the optional outputs."""
    from robolearn.data.store import EpisodeStore
    from robolearn.eval import replay as rp

    store = EpisodeStore(args.dataset)
    episodes = parse_episodes(args.episodes, store.num_episodes, store.name)
    env, task = rp.make_env(store, args.task)
    shadow, _ = rp.make_env(store, task)
    frames: list | None = [] if args.video else None
    results = [rp.replay_episode(store, e, env, shadow, frames) for e in episodes]
    report: dict = {"dataset": store.name, "task": task, "episodes": [
        {"episode": r.episode, "steps": r.steps, "max_state_error": r.max_state_error,
         "max_pos_error_m": r.max_pos_error_m, "final_pos_error_m": r.final_pos_error_m} for r in results]}
    diverged = [r.episode for r in results if not r.max_state_error <= args.tolerance]
    report["diverged"] = diverged
    if args.policy:
        policy, label = rp.load_policy_fn(args.policy, env)
        rows = rp.evaluate_on_dataset(store, episodes, env, policy)
        report["policy"] = {"source": label, "episodes": rows,
                            "action_rmse": float(np.mean([r["action_rmse"] for r in rows])),
                            "success": float(np.mean([r.get("success", np.nan) for r in rows]))}
    if args.video and frames:
        report["video"] = str(rp.write_side_by_side(frames, Path(args.video), store.fps))
    if args.plot:
        report["plot"] = str(_plot(results, Path(args.plot), f"{task}: {store.name}"))
    if args.json:
        print(json.dumps(report))
    else:
        print(f"replay {store.name} in {task}: {len(results)} episodes")
        print(f"{'episode':>7}  {'steps':>5}  {'max |Δstate|':>12}  {'max Δpos [m]':>12}  {'final Δpos [m]':>14}")
        for r in results:
            fmt = (lambda v: "-" if v is None else f"{v:.3g}")  # noqa: E731
            print(f"{r.episode:>7}  {r.steps:>5}  {r.max_state_error:>12.3g}  {fmt(r.max_pos_error_m):>12}  "
                  f"{fmt(r.final_pos_error_m):>14}")
        print(f"diverged (> {args.tolerance:g}): {diverged or 'none'}")
        if "policy" in report:
            p = report["policy"]
            print(f"policy {p['source']}: open-loop action RMSE {p['action_rmse']:.4f}, "
                  f"closed-loop success {p['success']:.2f} over {len(p['episodes'])} episodes")
        for k in ("video", "plot"):
            if k in report:
                print(f"{k:6s} {report[k]}")
    return 1 if diverged else 0


def _plot(results: list, out: Path, title: str) -> Path:
    from robolearn.core.errors import require

    require("matplotlib", "viz")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(8, 6), sharex=True)
    for r in results:
        if r.rec_pos is None:
            continue
        for i, ax in enumerate(axes):
            line, = ax.plot(r.rec_pos[:, i], lw=1.5, label=f"ep {r.episode} recorded")
            ax.plot(r.resim_pos[:, i], "--", lw=1, color=line.get_color(), label=f"ep {r.episode} replayed")
            ax.set_ylabel("xyz"[i] + " [m]")
    axes[0].set_title(title)
    axes[-1].set_xlabel("step")
    if len(results) <= 4:
        axes[0].legend(fontsize=7)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
