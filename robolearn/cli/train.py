"""`robolearn train`: train an RL policy on a task, or an imitation policy (act, diffusion) on a dataset.

robolearn train --config configs/quadrotor-hover-ppo.yaml --seed 1 --algo.lr 3e-4
robolearn train --task quadrotor-hover --learner td3 --env.num-envs 256
robolearn train --resume runs/quadrotor-hover-ppo-20261123-120000      # continue a killed run
robolearn train --config configs/quadruped-walk-hinf.yaml --init-from runs/quadruped-walk-ppo-...  # warm start
torchrun --nproc-per-node 2 -m robolearn.cli.main train --config configs/quadrotor-hover-hinf.yaml   # DDP

robolearn train act --dataset demos.zarr --task quadrotor-hover --steps 3000 --policy.chunk-size 10
robolearn train diffusion --dataset demos.zarr --task quadrotor-hover --set init_max_angle_deg=10 \
    --policy.num-inference-steps 3 --eval-every 1000 --lr-schedule cosine --warmup-steps 500
robolearn train diffusion --resume runs/demos-diffusion-20261207-060000   # continue a killed run, bit-exact on CPU
  imitation options: --dataset D.zarr (required), --task T (evaluation rollouts + shape checks), --set FIELD=VALUE
  (task config for evaluation), --config PRESET.yaml, --run-dir, and any run/policy field as a flag (--steps,
  --batch-size, --eval-episodes, --device, --init CKPT, --policy.<field>; `robolearn train act --help` lists them)
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
    p.add_argument("--learner", help="learner name: ppo, td3 (if not in the preset); imitation: `train act|diffusion`")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its latest checkpoint")
    p.add_argument("--run-dir", help="write the run here (must not exist yet; default: runs/<task>-<learner>-<time>)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(accepts_overrides=True)


IMITATION = ("act", "diffusion")


def run_imitation(kind: str, args: argparse.Namespace, rest: list[str]) -> int:
    """`robolearn train act|diffusion ...`: build the run config (preset, flags), train, print the summary."""
    from robolearn.core.config import from_dict
    from robolearn.learners.imitation import RUN_CFGS, ImitationTrainer

    if args.learner:
        raise ConfigError(f"train {kind}: --learner is for RL runs")
    if args.resume and args.run_dir:
        raise ConfigError(f"train {kind}: --resume continues RUN_DIR in place; give no --run-dir")
    if args.resume and not (args.config or args.task or rest):
        return _print(ImitationTrainer.resume(args.resume, kind=kind, quiet=args.quiet).train())
    p = argparse.ArgumentParser(prog=f"robolearn train {kind}", add_help=False)
    p.add_argument("--dataset")
    p.add_argument("--set", action="append", default=[], dest="env_set")
    known, overrides = p.parse_known_args(rest)
    cls = RUN_CFGS[kind]
    data = load_yaml(args.config) if args.config else {}
    if known.dataset:
        data["dataset"] = known.dataset
    if args.task:
        data["task"] = args.task
    if known.env_set:
        data["env_set"] = [*data.get("env_set", []), *known.env_set]
    if "dataset" not in data and not args.resume and not any(o in ("-h", "--help") for o in overrides):
        raise ConfigError(f"train {kind}: no dataset given (use --dataset D.zarr)")
    data.setdefault("dataset", "")
    cfg = from_dict(cls, data, source=args.config or "command line")
    cfg = parse_overrides(cls, cfg, overrides, prog=f"robolearn train {kind}")
    if args.resume:  # the same command again with --resume: its config must be the run's
        return _print(ImitationTrainer.resume(args.resume, kind=kind, quiet=args.quiet, expect=cfg).train())
    run_dir = None
    if args.run_dir:
        run_dir = Path(args.run_dir)
        if run_dir.exists() and any(run_dir.iterdir()):
            raise ConfigError(f"{run_dir}: run directory exists and is not empty")
    return _print(ImitationTrainer(cfg, run_dir=run_dir, quiet=args.quiet).train())


def _print(summary: dict) -> int:
    """Print a run summary (under torchrun only rank 0 has one); exit code 0."""
    if summary:
        print(json.dumps(summary, indent=2))
    return 0


def run(args: argparse.Namespace) -> int:
    """Build the config, train, print the summary."""
    from robolearn.learners.runner import Trainer, load_run_cfg

    if args.overrides and args.overrides[0] in IMITATION:
        return run_imitation(args.overrides[0], args, args.overrides[1:])
    if args.resume:
        from robolearn.learners.imitation import ImitationTrainer, is_imitation_run

        if is_imitation_run(args.resume):  # `train --resume RUN_DIR` finds the policy kind in the checkpoint
            if args.config or args.task or args.learner or args.run_dir or args.overrides:
                raise ConfigError("--resume continues a run with its saved config; give no other options")
            return _print(ImitationTrainer.resume(args.resume, quiet=args.quiet).train())

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
    if summary:  # under torchrun only rank 0 reports
        print(json.dumps(summary, indent=2))
    return 0
