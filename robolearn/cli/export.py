"""`robolearn export RUN_DIR`: write the policy artifact (weights + manifest + ONNX, optionally C)."""

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


def run(args: argparse.Namespace) -> int:
    """Load the run's actor and write the artifact."""
    import dataclasses

    from robolearn.envs import registry
    from robolearn.export import export_policy
    from robolearn.learners.runner import load_policy

    cfg, policy, ckpt = load_policy(args.run_dir, args.checkpoint)
    env = registry.make(cfg.task, dataclasses.replace(cfg.env, num_envs=1))
    out = Path(args.out) if args.out else Path(args.run_dir) / "artifact"
    path = export_policy(
        policy, env.spec, out, targets=tuple(args.target), overwrite=args.overwrite,
        source={"run": str(Path(args.run_dir).resolve()), "checkpoint": ckpt.name, "config": to_dict(cfg)},
    )
    print(f"artifact: {path}")
    for f in sorted(path.rglob("*")):
        if f.is_file():
            print(f"  {f.relative_to(path)}  ({f.stat().st_size:,} bytes)")
    return 0
