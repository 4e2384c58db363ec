"""`robolearn bench NAME [--json]`: speed and memory figures; one JSON object per run with --json.

Each benchmark is a function `(args: list[str]) -> dict` named here by module path, imported only
when it runs, so listing benchmarks needs no optional dependency.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import platform
import sys
import time

import torch

BENCHMARKS: dict[str, str] = {
    "quadrotor-sim": "robolearn.sim.bench:quadrotor_sim",
    "quadrotor-hover-time": "robolearn.learners.bench:quadrotor_hover_time",
    "c-policy": "robolearn.export.bench:c_policy",
    "dataset-write": "robolearn.data.bench:dataset_write",
    "dataset-windows": "robolearn.data.bench:dataset_windows",
    "lerobot-export": "robolearn.data.bench:lerobot_export",
    "ros-loop-latency": "robolearn_ros.bench:ros_loop_latency",  # needs the `ros` extra (ROS 2 wheels)
    "act-size-inference": "robolearn_ros.bench:act_size_inference",
    "manip-step": "robolearn.envs.manipulation.bench:manip_step",
    "render": "robolearn.envs.manipulation.bench:render",
    "expert-success": "robolearn.envs.manipulation.bench:expert_success",
    "act-train": "robolearn.policies.bench:act_train",
    "diffusion-train": "robolearn.policies.bench:diffusion_train",
    "policy-latency": "robolearn.policies.bench:policy_latency",
    "quadruped-step": "robolearn.envs.quadruped.bench:quadruped_step",
    "quadruped-train-time": "robolearn.learners.bench:quadruped_train_time",
}


def machine() -> dict[str, str | int]:
    """Where a figure was measured."""
    info: dict[str, str | int] = {
        "cpu": platform.processor() or platform.machine(),
        "cores": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the `bench` command."""
    p = sub.add_parser("bench", help="run a benchmark", description=__doc__)
    p.add_argument("name", nargs="?", choices=sorted(BENCHMARKS), help="benchmark to run (omit to list)")
    p.add_argument("--json", action="store_true", help="print one JSON object and nothing else on stdout")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="options passed to the benchmark (see NAME --help)")


def run(args: argparse.Namespace) -> int:
    """Run one benchmark and print its figures."""
    if args.name is None:
        for name, target in BENCHMARKS.items():
            print(f"{name:24s} {target}")
        return 0
    rest = list(args.rest)
    if "--json" in rest:  # `bench NAME --json`: argparse's REMAINDER swallowed the flag
        rest.remove("--json")
        args.json = True
    module, fn = BENCHMARKS[args.name].split(":")
    start = time.time()
    result = getattr(importlib.import_module(module), fn)(rest)
    result = {"benchmark": args.name, **result, "machine": machine(), "date": time.strftime("%Y-%m-%d"),
              "wall_s": round(time.time() - start, 2)}
    result = _finite_or_null(result)
    if args.json:
        json.dump(result, sys.stdout, allow_nan=False)
        sys.stdout.write("\n")
    else:
        for k, v in result.items():
            print(f"{k:20s} {v}")
    return 0


def _finite_or_null(value):
    """NaN/inf are not JSON: report them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_null(v) for v in value]
    return value
