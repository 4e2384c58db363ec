"""`robolearn export RUN_DIR`: write the policy artifact (weights + manifest + ONNX, optionally C).

Imitation runs (`robolearn train act|diffusion --task T`) export to the same artifact (schema 2, `network.kind`
act/diffusion): ACT as one ONNX graph, Diffusion Policy as observation encoder + denoiser ONNX graphs with a
fixed-step DDIM sampler in the runtime (`--sampler-steps N`, default the policy's inference steps); the policy runtime,
`robolearn eval ARTIFACT` and the ROS 2 policy node run either. See robolearn/export/chunked.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from robolearn.core.config import to_dict


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the `export` command."""
    p = sub.add_parser("export", help="export a trained policy as an artifact", description=__doc__)
    p.add_argument("run_dir", help="run directory written by `robolearn train`")
    p.add_argument("--out", help="artifact directory (default: RUN_DIR/artifact)")
    p.add_argument("--target", nargs="+", default=["onnx", "c"], choices=["onnx", "c"],
                   help="what to generate besides weights + manifest (default: onnx c)")
    p.add_argument("--checkpoint", help="checkpoint file (default: the latest)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing artifact directory")
    p.add_argument("--sampler-steps", type=int, help="diffusion policies: DDIM steps of the exported sampler")


def run_imitation(args: argparse.Namespace, ckpt: Path, meta: dict) -> int:
    """Export an ACT / Diffusion Policy checkpoint as a (schema 2) policy artifact for its task."""
    import dataclasses

    from robolearn.core.errors import RobolearnError
    from robolearn.export.chunked import export_chunk_policy
    from robolearn.learners.imitation import load_policy_checkpoint, make_eval_env, run_cfg_from_meta

    policy, meta = load_policy_checkpoint(ckpt)
    cfg = run_cfg_from_meta(meta, str(ckpt))
    if cfg.task is None:
        raise RobolearnError(f"{args.run_dir}: trained without --task; an artifact needs the task whose observation "
                             "and action terms the robot provides (train with --task T)")
    out = Path(args.out) if args.out else Path(args.run_dir) / "artifact"
    if out.exists() and any(out.iterdir()) and not (out / "manifest.json").exists():
        raise RobolearnError(f"{out}: not an artifact directory; refusing to replace it")
    # the task's spec with the run's --set overrides (cameras, action mode)
    spec = make_eval_env(dataclasses.replace(cfg, device="cpu"), num_envs=1, seed=0).spec
    source = {"run": str(Path(args.run_dir).resolve()), "checkpoint": ckpt.name, "kind": meta["kind"],
              "dataset": meta.get("dataset"), "imitation_config": to_dict(cfg)}
    path = export_chunk_policy(policy, out, spec, num_inference_steps=args.sampler_steps, source=source,
                               overwrite=args.overwrite)
    return _report(path)


def run(args: argparse.Namespace) -> int:
    """Load the run's actor and write the artifact."""
    import dataclasses

    from robolearn.envs import registry
    from robolearn.export import export_policy
    from robolearn.learners.imitation import find_imitation_checkpoint
    from robolearn.learners.runner import load_policy

    found = find_imitation_checkpoint(Path(args.run_dir), args.checkpoint)
    if found is not None:
        return run_imitation(args, *found)
    cfg, policy, ckpt = load_policy(args.run_dir, args.checkpoint)
    env = registry.make(cfg.task, dataclasses.replace(cfg.env, num_envs=1))
    out = Path(args.out) if args.out else Path(args.run_dir) / "artifact"
    path = export_policy(
        policy, env.spec, out, targets=tuple(args.target), overwrite=args.overwrite,
        source={"run": str(Path(args.run_dir).resolve()), "checkpoint": ckpt.name, "config": to_dict(cfg)},
    )
    return _report(path)


def _report(path: Path) -> int:
    """Print the artifact's files."""
    print(f"artifact: {path}")
    for f in sorted(path.rglob("*")):
        if f.is_file():
            print(f"  {f.relative_to(path)}  ({f.stat().st_size:,} bytes)")
    return 0
