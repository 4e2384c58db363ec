"""`robolearn train`: train an RL policy on a task from a YAML preset, with command-line overrides.

robolearn train --config configs/quadrotor-hover-ppo.yaml --seed 1 --algo.lr 3e-4
robolearn train --task quadrotor-hover --learner td3 --env.num-envs 256
robolearn train --resume runs/quadrotor-hover-ppo-20261123-120000      # continue a killed run
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from robolearn.core.config import load_yaml, parse_overrides
from robolearn.core.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the `train` command (unrecognized flags are config overrides)."""
    p = sub.add_parser("train", help="train a policy", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML preset (configs/*.yaml)")
    p.add_argument("--task", help="task name (if not in the preset)")
    p.add_argument("--learner", help="learner name: ppo, td3 (if not in the preset)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its latest checkpoint")
    p.add_argument("--run-dir", help="write the run here (must not exist yet; default: runs/<task>-<learner>-<time>)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(accepts_overrides=True)


def run(args: argparse.Namespace) -> int:
    """Build the config, train, print the summary."""
    from robolearn.learners.runner import Trainer, load_run_cfg

    if args.resume:
        if args.config or args.task or args.learner or args.overrides:
            raise ConfigError("--resume continues a run with its saved config; give no other options")
        trainer = Trainer.resume(args.resume, quiet=args.quiet)
    else:
        data = load_yaml(args.config) if args.config else {}
        source = args.config or "command line"
        for key in ("task", "learner"):
            value = getattr(args, key)
            if value is not None:
                data[key] = value
            elif key not in data:
                raise ConfigError(f"{source}: no {key} given (use --{key} or a --config preset that names it)")
        cfg = load_run_cfg(data, source)
        cfg = parse_overrides(type(cfg), cfg, args.overrides, prog="robolearn train")
        run_dir = None
        if args.run_dir:
            run_dir = Path(args.run_dir)
            if run_dir.exists() and any(run_dir.iterdir()):
                raise ConfigError(f"{run_dir}: run directory exists and is not empty (use --resume to continue it)")
        trainer = Trainer(cfg, run_dir=run_dir, quiet=args.quiet)
    summary = trainer.train()
    print(json.dumps(summary, indent=2))
    return 0
