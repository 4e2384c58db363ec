"""`robolearn eval RUN_OR_ARTIFACT`: success rate, errors and crashes over N random episodes, plus a plot and video.

A run directory evaluates the latest checkpoint's actor in torch; an artifact directory (with manifest.json)
evaluates the exported policy through the deployment runtime (ONNX Runtime), exactly as a robot runs it — an MLP,
or an ACT / Diffusion Policy with its action queue per env copy.
An imitation run (`robolearn train act|diffusion`) is evaluated on its task with the run's `--set` overrides,
through the policy's action queue (temporal ensembling / receding horizon).

Plots and videos follow the task: quadrotor flights (flight.png, flight.mp4), Push-T coverage (coverage.png,
episodes.mp4), manipulation tasks (arm-*, bimanual-*) the curves the task declares (`viz_curves()`: object height,
distances, finger force, gripper opening, task stage; success marked) in episodes.png and their camera in
episodes.mp4, quadrupeds three episodes side by side from a camera following the trunk (episodes.mp4, up to 10 s;
a fall is marked and frozen). `--set FIELD=VALUE` overrides the task config (after the run's own `eval_set`),
`--iteration N` picks a run's checkpoint. MuJoCo tasks'
videos are drawn by MuJoCo's OpenGL on either backend (on `mjwarp` from a host copy of each shown env,
`robolearn.envs.viz`).

`--disturbance-sweep` measures robustness instead (tasks with the disturbance interface): survival / fall rate and
tracking error per condition (`robolearn.eval.robustness`): pushes and constant pulls of increasing force and, on
quadrupeds, trunk payloads and terrains (`--kinds`), for the run and any `--compare` runs on the same starts; writes
robustness.json, .md, .csv, .png and, for legged robots, robustness.mp4 (the push drawn as an arrow).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from robolearn.core.errors import RobolearnError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the `eval` command."""
    p = sub.add_parser("eval", help="evaluate a run or an exported artifact", description=__doc__)
    p.add_argument("path", help="run directory, artifact directory, or expert:TASK (the task's scripted expert)")
    p.add_argument("--episodes", type=int, default=None,
                   help="random-start episodes (run in parallel; default 1000, with --external 50)")
    p.add_argument("--seed", type=int, default=12345, help="seed of the evaluation episodes")
    p.add_argument("--out", help="where to write eval.json, flight.png, flight.mp4 (default: next to the input)")
    p.add_argument("--no-video", action="store_true", help="skip the MP4")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.add_argument("--backend", default="onnx", choices=["onnx", "torch"], help="artifact runtime backend")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="env_set",
                   help="override a task config field for the evaluation, e.g. --set episode_length_s=5 (YAML value; "
                        "dotted keys set one entry of a dict field: --set randomize.payload=[2,2])")
    p.add_argument("--iteration", type=int, metavar="N",
                   help="evaluate the run's checkpoint of iteration (RL) / step (imitation) N instead of the latest")
    p.add_argument("--disturbance-sweep", action="store_true",
                   help="robustness table and plot under pushes and pulls of increasing force (RL runs, expert:TASK)")
    p.add_argument("--compare", nargs="*", default=[], metavar="RUN",
                   help="--disturbance-sweep: more runs (or expert:TASK) evaluated on the same starts")
    p.add_argument("--kinds", nargs="+", default=None, metavar="KIND",
                   help="--disturbance-sweep: condition axes, of push, pull, payload, terrain (default: push pull; "
                        "payload and terrain are quadruped conditions)")
    p.add_argument("--magnitudes", nargs="+", type=float, default=[0.0, 0.25, 0.5, 0.75, 1.0],
                   help="--disturbance-sweep: forces as fractions of the task's horizontal force limit")
    p.add_argument("--payloads", nargs="+", type=float, default=[0.0, 1.0, 2.0, 3.0], metavar="KG",
                   help="--disturbance-sweep, kind payload: extra trunk mass [kg] of each condition")
    p.add_argument("--terrains", nargs="+", default=["flat", "slope", "stairs_up", "stairs_down", "rough"],
                   metavar="TERRAIN", help="--disturbance-sweep, kind terrain: terrain types, one condition each")
    p.add_argument("--terrain-level", type=int, default=None, metavar="L",
                   help="--disturbance-sweep, kind terrain: difficulty level (row) every env starts on "
                        "(default: the hardest, terrain_levels − 1)")
    p.add_argument("--push-start", type=float, default=1.0, help="--disturbance-sweep: push time [s]")
    p.add_argument("--push-duration", type=float, default=0.2, help="--disturbance-sweep: push duration [s]")
    p.add_argument("--external", metavar="BENCHMARK",
                   help="evaluate an artifact on an external benchmark in its own venv (gym-pusht, gym-aloha; "
                        "`make ext-envs`)")
    p.add_argument("--max-steps", type=int, help="--external: cut episodes short of the benchmark's limit")
    p.add_argument("--trajectories", metavar="NPZ",
                   help="--external: write every step's benchmark state and sent action to this .npz")


def run(args: argparse.Namespace) -> int:
    """Evaluate and write the report."""
    from robolearn.envs import registry
    from robolearn.eval.rollout import evaluate_policy
    from robolearn.learners.imitation import find_imitation_checkpoint
    from robolearn.learners.runner import eval_env_cfg, load_policy, load_run_cfg

    if args.external:
        return run_external(args)
    if args.trajectories:
        raise RobolearnError("--trajectories is for --external")
    args.episodes = 1000 if args.episodes is None else args.episodes
    if args.disturbance_sweep:
        return run_sweep(args)
    if args.compare:
        raise RobolearnError("--compare is for --disturbance-sweep")
    path = Path(args.path)
    expert_task = args.path.split(":", 1)[1] if args.path.startswith("expert:") else None
    ckpt_path = _checkpoint_arg(args, path)
    imitation = (find_imitation_checkpoint(path, ckpt_path) if path.is_dir() and expert_task is None
                 and not (path / "manifest.json").exists() else None)
    if imitation is not None:
        from robolearn.learners.imitation import load_policy_checkpoint, make_eval_env, run_cfg_from_meta

        ckpt, meta = imitation
        il_cfg = run_cfg_from_meta(meta, str(ckpt))
        il_cfg = dataclasses.replace(il_cfg, env_set=(*il_cfg.env_set, *args.env_set))
        if il_cfg.task is None:
            raise RobolearnError(f"{path}: the run was trained without --task; nothing to evaluate on")
        il_policy, _ = load_policy_checkpoint(ckpt, device=il_cfg.device)
        task = expert_task = il_cfg.task  # the env is built here, not from an RL config below
        env = make_eval_env(il_cfg, args.episodes, args.seed)
        low, high = env.spec.action.low, env.spec.action.high
        il_policy.reset()

        def policy(obs: dict) -> torch.Tensor:
            return il_policy.select_action(obs).clamp(low, high)

        label, out = f"{path.name} ({ckpt.name}, {meta['kind']})", Path(args.out or path / "eval")
    elif expert_task is not None:
        task, env_cfg = expert_task, _env_cfg(registry.cfg_class(expert_task)(), args, expert_task)
        env = registry.make(task, dataclasses.replace(env_cfg, num_envs=args.episodes), seed=args.seed)
        if not hasattr(env, "expert_action"):
            raise RobolearnError(f"task '{task}' has no scripted expert")

        def policy(obs: dict) -> torch.Tensor:
            return env.expert_action(obs)

        label, out = "scripted expert", Path(args.out or f"runs/expert-{task}-eval")
    elif (path / "manifest.json").exists():
        from robolearn.export.runtime import PolicyRuntime

        runtime = PolicyRuntime.load(path, backend=args.backend)
        source, where = runtime.manifest["source"], f"{path}/manifest.json: source"
        kind = runtime.manifest["network"]["kind"]
        if kind == "mlp":
            if "config" not in source:
                raise RobolearnError(f"{where}: no 'config' (the training run's settings); cannot rebuild the task "
                                     "the artifact was trained on")
            cfg = load_run_cfg(source["config"], f"{where}.config")
        else:  # an imitation policy: its task with the run's --set overrides
            from robolearn.learners.imitation import make_eval_env, run_cfg_from_meta

            if "imitation_config" not in source:
                raise RobolearnError(f"{where}: no 'imitation_config'; cannot rebuild the task it was trained on")
            il_cfg = run_cfg_from_meta({"kind": kind, "config": source["imitation_config"]},
                                       f"{where}.imitation_config")
            il_cfg = dataclasses.replace(il_cfg, env_set=(*il_cfg.env_set, *args.env_set))
            task = expert_task = il_cfg.task
            env = make_eval_env(dataclasses.replace(il_cfg, device="cpu"), args.episodes, args.seed)
            if runtime.obs_dim != env.spec.obs_dims.get("policy"):
                raise RobolearnError(f"{path}: observation dim {runtime.obs_dim} does not match task '{task}'")

        def policy(obs: dict) -> torch.Tensor:
            x = obs["policy"]
            if isinstance(x, dict):
                raise RobolearnError(f"{path}: task observations hold camera images; evaluate the run directory "
                                     "(torch) instead of the artifact")
            return torch.from_numpy(runtime.act(x.cpu().numpy())).to(x.device)

        label, out = f"artifact {path.name} ({kind}, {args.backend})", Path(args.out or f"{path}-eval")
    else:
        cfg, actor, ckpt = load_policy(path, ckpt_path)
        policy = _actor_policy(actor)

        label, out = f"{path.name} ({ckpt.name})", Path(args.out or path / "eval")
    if expert_task is None:
        task = cfg.task
        env_cfg = _env_cfg(eval_env_cfg(cfg), args, task)
        env = registry.make(task, dataclasses.replace(env_cfg, num_envs=args.episodes), seed=args.seed)
    if hasattr(env, "viz_curves"):  # manipulation: the task's curves and camera frames
        traj = None
        metrics, files = _evaluate_manipulation(env, policy, out, f"{task} — {label}", plot=not args.no_plot,
                                                video=not args.no_video, episodes=min(4, args.episodes))
    else:
        record = min(4, args.episodes) if hasattr(env, "viz_state") else 0
        result = evaluate_policy(env, policy, record=record, record_fn=getattr(env, "viz_state", None))
        metrics, traj = result if record else (result, None)
        files = {}
    out.mkdir(parents=True, exist_ok=True)
    report = {"task": task, "source": str(path), "episodes": args.episodes, "seed": args.seed,
              **({"env_set": list(args.env_set)} if args.env_set else {}), **metrics}
    files = {"report": out / "eval.json", **files}
    if traj is not None and "coverage" in traj:  # push-t: coverage over time and the top camera
        files.update(_visualize_coverage(traj, out, f"{task} — {label}", plot=not args.no_plot,
                                         video=not args.no_video, threshold=getattr(env.cfg, "success_threshold", None),
                                         fps=env.spec.action.rate_hz))
    elif traj is not None:
        files.update(_visualize(traj, out, f"{task} — {label}", plot=not args.no_plot, video=not args.no_video))
    elif hasattr(env, "trunk") and hasattr(env, "set_disturbance") and not args.no_video:
        # legged tasks: three episodes side by side from a camera following the trunk (the sweep's video, no push)
        from robolearn.eval.robustness import SweepCfg, render_disturbed_rollout

        video_cfg = dataclasses.replace(env.cfg, num_envs=3)
        files["video"] = render_disturbed_rollout(
            lambda: registry.make(task, video_cfg, seed=args.seed), policy,
            SweepCfg(push_start_s=0.0, push_duration_s=0.0), out / "episodes.mp4", 0.0,
            after_s=min(env.cfg.episode_length_s, 10.0))
    (out / "eval.json").write_text(json.dumps(report, indent=2))
    for k in ("success", "pos_error_rms", "final_pos_error", "crash", "coverage", "max_coverage", "max_stage"):
        if k in metrics:
            print(f"{k:16s} {metrics[k]:.4f}")
    for name, f in files.items():
        print(f"{name:16s} {f}")
    return 0


def run_external(args: argparse.Namespace) -> int:
    """`--external BENCHMARK`: the artifact rolled out in the benchmark's own venv.

    Prints the report as one JSON object and writes it to OUT/eval-BENCHMARK.json (default OUT: ARTIFACT-eval).
    """
    from robolearn.eval.external import evaluate_external

    if args.disturbance_sweep or args.compare or args.env_set or args.iteration is not None:
        raise RobolearnError("--external does not combine with --disturbance-sweep / --compare / --set / --iteration")
    report = evaluate_external(args.path, args.external, episodes=50 if args.episodes is None else args.episodes,
                               seed=args.seed, trajectories=args.trajectories, max_steps=args.max_steps)
    out = Path(args.out or f"{Path(args.path)}-eval")
    out.mkdir(parents=True, exist_ok=True)
    (out / f"eval-{args.external}.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "per_episode"}))
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    """`--disturbance-sweep`: the robustness table of the run (and `--compare` runs): JSON, CSV, Markdown, PNG, MP4."""
    from robolearn.core.config import parse_sets
    from robolearn.envs import registry
    from robolearn.eval.robustness import (
        SweepCfg,
        disturbance_sweep,
        format_table,
        plot_robustness,
        render_disturbed_rollout,
        write_csv,
    )
    from robolearn.learners.runner import eval_env_cfg, load_policy

    sweep = SweepCfg(magnitudes=tuple(args.magnitudes), push_start_s=args.push_start,
                     push_duration_s=args.push_duration, kinds=tuple(args.kinds or SweepCfg().kinds),
                     payloads_kg=tuple(args.payloads), terrains=tuple(args.terrains), terrain_level=args.terrain_level)
    tables: dict[str, list[dict]] = {}
    makers: dict[str, tuple] = {}
    task = None
    sources = [args.path, *args.compare]
    if len(set(sources)) < len(sources):
        raise RobolearnError(f"--disturbance-sweep: a policy is named twice in {sources}")
    labels = _sweep_labels(sources)
    for source in sources:
        if source.startswith("expert:"):
            if source == args.path and args.iteration is not None:
                raise RobolearnError("--iteration is for run directories (an expert has one policy)")
            src_task, env_cfg = source.split(":", 1)[1], None
            env_cfg = registry.cfg_class(src_task)()
            label = labels[source]
            expert = True
        else:
            ckpt = _checkpoint_arg(args, Path(source)) if source == args.path else None
            cfg, actor, ckpt = load_policy(source, ckpt)
            src_task, env_cfg, label, expert = cfg.task, eval_env_cfg(cfg), labels[source], False
            if source == args.path and args.iteration is not None:
                label = f"{label} ({ckpt.stem})"
        if task is not None and src_task != task:
            raise RobolearnError(f"--compare {source}: task '{src_task}' differs from '{task}'")
        task = src_task
        env_cfg = dataclasses.replace(_env_cfg(env_cfg, args, src_task), num_envs=args.episodes)

        def make_env(sets=(), task=src_task, env_cfg=env_cfg):
            return registry.make(task, parse_sets(env_cfg, sets, source=f"sweep condition (task '{task}')"),
                                 seed=args.seed)

        if expert:
            probe = make_env()
            if not hasattr(probe, "expert_action"):
                raise RobolearnError(f"task '{src_task}' has no scripted expert")

            def policy(obs: dict, probe=probe) -> torch.Tensor:
                return probe.expert_action(obs)
        else:
            policy = _actor_policy(actor)

        tables[label] = disturbance_sweep(make_env, policy, sweep)
        makers[label] = (make_env, policy)
    out = Path(args.out or (Path(args.path) / "eval" if not args.path.startswith("expert:") else
                            f"runs/expert-{task}-eval"))
    out.mkdir(parents=True, exist_ok=True)
    report = {"task": task, "episodes": args.episodes, "seed": args.seed, "sweep": dataclasses.asdict(sweep),
              **({"env_set": list(args.env_set)} if args.env_set else {}), "tables": tables}
    (out / "robustness.json").write_text(json.dumps(report, indent=2))
    table = format_table(tables)
    (out / "robustness.md").write_text(table + "\n")
    print(table)
    files = {"report": out / "robustness.json", "table": out / "robustness.md",
             "csv": write_csv(tables, out / "robustness.csv")}
    if not args.no_plot:
        files["plot"] = plot_robustness(tables, out / "robustness.png", title=f"{task}: robustness")
    make_env, policy = next(iter(makers.values()))
    probe = make_env() if not args.no_video else None
    if probe is not None and hasattr(probe, "trunk"):  # a pushed legged robot, the push drawn as an arrow
        # the probe, still unused, is the video's env (on mjwarp a second build would cost seconds)
        files["video"] = render_disturbed_rollout(lambda: probe, policy, sweep, out / "robustness.mp4",
                                                  magnitude=max(sweep.magnitudes), views=min(3, args.episodes),
                                                  size=VIDEO_SIZE, fps=VIDEO_FPS)
    for name, f in files.items():
        print(f"{name:16s} {f}")
    return 0


def _visualize(traj: dict[str, torch.Tensor], out: Path, title: str, plot: bool, video: bool) -> dict[str, Path]:
    """Plot the first recorded episode and render the recorded ones to MP4 (quadrotor tasks)."""
    files: dict[str, Path] = {}
    t = traj["t"][:, 0].numpy()
    length = float(traj["length_s"][0]) if "length_s" in traj else float(t[-1])
    keep = t <= length + 1e-9 if length > 0 else slice(None)  # the last sample is the episode's final state
    pos, quat, ref = traj["pos"].numpy(), traj["quat"].numpy(), traj["goal"].numpy()
    if plot:
        from robolearn.core.math import euler_xyz_from_quat
        from robolearn.eval.plots import plot_flight

        euler = torch.stack(euler_xyz_from_quat(traj["quat"][:, 0]), -1).numpy()
        files["plot"] = plot_flight(t[keep], pos[keep, 0], ref[keep, 0], out / "flight.png", title=title,
                                    euler=euler[keep], actions=traj["action"][:, 0].numpy()[keep],
                                    action_names=[f"a{i}" for i in range(traj["action"].shape[-1])])
    if video:
        from robolearn.eval.video import render_flight_video

        files["video"] = render_flight_video(t, pos.transpose(1, 0, 2), quat.transpose(1, 0, 2), out / "flight.mp4",
                                             ref=ref[:, 0], title=title.split(" — ")[0])
    return files


def _visualize_coverage(traj: dict[str, torch.Tensor], out: Path, title: str, plot: bool, video: bool,
                        threshold: float | None, fps: float) -> dict[str, Path]:
    """Coverage over time of the recorded episodes (PNG) and their camera frames side by side (MP4)."""
    files: dict[str, Path] = {}
    t = traj["t"][:, 0].numpy()
    lengths = traj["length_s"].numpy()
    cov = traj["coverage"].numpy()
    if plot:
        from robolearn.eval.plots import plot_coverage

        files["plot"] = plot_coverage(t, cov, out / "coverage.png", lengths_s=lengths, threshold=threshold,
                                      title=title)
    if video and "frame" in traj:
        from robolearn.eval.video import write_frames_video

        steps = (lengths * fps).round().astype("int64")  # sample j is the state after j policy steps
        labels = [[f"t {j / fps:4.1f} s  coverage {100 * c:5.1f} %" for c in row] for j, row in enumerate(cov)]
        files["video"] = write_frames_video(traj["frame"].numpy(), out / "episodes.mp4", fps=fps, lengths=steps,
                                            labels=labels)
    return files


def _sweep_labels(sources: list[str]) -> dict[str, str]:
    """Row labels of the sweep's policies: the run directories' names.

    With as many parent directories as it takes to tell runs of the same name apart (runs/a/none vs
    runs/b/none → a/none, b/none).
    """

    def label(source: str, depth: int) -> str:
        if source.startswith("expert:"):
            return "scripted expert" if depth == 1 else source
        parts = Path(source).resolve().parts
        return "/".join(parts[-depth:])

    depth = 1
    while depth < 64:
        labels = {s: label(s, depth) for s in sources}
        if len(set(labels.values())) == len(sources):
            return labels
        depth += 1
    return {s: s for s in sources}


def _checkpoint_arg(args: argparse.Namespace, path: Path) -> Path | None:
    """The checkpoint `--iteration N` names (None: the latest)."""
    if args.iteration is None:
        return None
    from robolearn.core.checkpoint import checkpoint_at

    if args.path.startswith("expert:") or (path / "manifest.json").exists():
        raise RobolearnError("--iteration is for run directories (an artifact or expert has one policy)")
    return checkpoint_at(path / "checkpoints", args.iteration)


def _actor_policy(actor: torch.nn.Module) -> Any:
    """The policy `obs -> actor(obs["policy"])`, run on the env's device.

    The actor moves to its first batch's device (checkpoints load on the CPU; a run trained with `device: cuda`
    evaluates on CUDA unless `--set device=cpu`).
    """

    def policy(obs: dict) -> torch.Tensor:
        x = obs["policy"]
        if next(actor.parameters()).device != x.device:
            actor.to(x.device)
        return actor(x)

    return policy


def _env_cfg(cfg: Any, args: argparse.Namespace, task: str) -> Any:
    """The task config with the `--set FIELD=VALUE` overrides."""
    from robolearn.core.config import parse_sets

    return parse_sets(cfg, args.env_set, source=f"--set (task '{task}')")


VIDEO_SIZE = (240, 320)
"""Height, width of one episode's view in episodes.mp4 / robustness.mp4 [px]."""
VIDEO_FPS = 25.0
"""Frame rate the videos aim for (a whole number of policy steps per frame)."""


def _evaluate_manipulation(env: Any, policy: Any, out: Path, title: str, plot: bool, video: bool,
                           episodes: int) -> tuple[dict[str, float], dict[str, Path]]:
    """Roll out, recording the task's `viz_curves` (and camera frames) of the first episodes; PNG and MP4."""
    import numpy as np

    from robolearn.eval.rollout import evaluate_policy

    curves = env.viz_curves()
    files: dict[str, Path] = {}

    def record() -> dict[str, torch.Tensor]:
        return {c.name: c.fn(env).float() * c.scale for c in curves}

    renderer = None
    if video:  # MuJoCo's OpenGL from a host copy of each shown env, on either backend
        from robolearn.envs.viz import EpisodeRenderer

        renderer = EpisodeRenderer(env, VIDEO_SIZE, camera=env.viz_camera)
    every = max(1, round(env.spec.action.rate_hz / VIDEO_FPS))
    ids = list(range(min(episodes, env.num_envs)))
    metrics, traj = evaluate_policy(env, policy, record=len(ids), record_fn=record,
                                    frame_fn=None if renderer is None else lambda: renderer.render(ids),
                                    frame_every=every)
    t, lengths = traj["t"][:, 0].numpy(), traj["length_s"].numpy()
    flag = next((c.name for c in curves if c.kind == "success"), None)
    success = np.full(len(ids), np.nan)
    if flag is not None:
        won = traj[flag].numpy() > 0.5  # (T, K)
        for k in range(len(ids)):
            hit = np.flatnonzero(won[:, k] & (t <= lengths[k] + 1e-9))
            success[k] = t[hit[0]] if len(hit) else np.nan
    out.mkdir(parents=True, exist_ok=True)
    if plot:
        from robolearn.eval.plots import plot_episode_curves

        values = {c.name: traj[c.name].numpy() for c in curves if c.kind != "success"}
        files["plot"] = plot_episode_curves(t, list(curves), values, out / "episodes.png", lengths_s=lengths,
                                            success_s=success, title=title)
    if renderer is not None:
        from robolearn.eval.video import write_frames_video

        ft = traj["frame_t"][:, 0].numpy()
        last = np.array([np.searchsorted(ft, lengths[k] - 1e-9) for k in range(len(ids))])  # frame of the end
        labels = [[f"episode {k}  t {min(x, lengths[k]):4.1f} s" + ("  success" if success[k] <= x + 1e-9 else "")
                   for k in range(len(ids))] for x in ft]
        files["video"] = write_frames_video(traj["frame"].numpy(), out / "episodes.mp4",
                                            fps=env.spec.action.rate_hz / every, lengths=last, labels=labels)
    return metrics, files
