"""`robolearn bench c-policy`: speed of the generated C policy on the host, and its error against torch."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robolearn.export.c_codegen import build_c_harness, generate_c, run_c_harness
from robolearn.networks.mlp import MLPPolicy

# Learning-to-Fly actor: position error 3 + rotation matrix 9 + linear velocity 3 + angular velocity 3
# + action history 32 x 4 motors = 146 inputs, two hidden layers of 64, 4 motor commands
L2F_OBS_DIM = 3 + 9 + 3 + 3 + 32 * 4
L2F_ACTION_DIM = 4


def c_policy(args: list[str]) -> dict[str, Any]:
    """Generate C for the Learning-to-Fly actor, compile it with `cc -O2`, time N dependent steps, check vs torch."""
    p = argparse.ArgumentParser(prog="robolearn bench c-policy", description=c_policy.__doc__)
    p.add_argument("--steps", type=int, default=200_000, help="timed policy evaluations")
    p.add_argument("--repeats", type=int, default=3, help="timing runs; the fastest is reported")
    p.add_argument("--hidden", type=int, nargs="+", default=[64, 64], help="hidden layer widths")
    p.add_argument("--activation", default="tanh", help="hidden activation")
    p.add_argument("--cc", default=os.environ.get("CC", "cc"), help="C compiler")
    p.add_argument("--cflags", default="-O2", help="compiler flags")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(args)

    torch.manual_seed(a.seed)
    policy = MLPPolicy(L2F_OBS_DIM, L2F_ACTION_DIM, a.hidden, a.activation, "tanh").eval()
    with torch.no_grad():  # non-trivial normalizer statistics, so the folded normalization is exercised
        policy.normalizer.mean.normal_()
        policy.normalizer.var.uniform_(0.05, 4.0)
    rng = np.random.default_rng(a.seed)
    obs = rng.standard_normal((256, L2F_OBS_DIM)) * rng.choice([0.5, 3.0, 100.0], (256, L2F_OBS_DIM))
    obs = obs.astype(np.float32)  # includes values far outside the normalizer clip
    with torch.no_grad():
        want = policy(torch.from_numpy(obs)).numpy()

    with tempfile.TemporaryDirectory(prefix="robolearn-c-bench-") as tmp:
        c_dir = Path(tmp) / "c"
        generate_c(policy, c_dir)
        flags = shlex.split(a.cflags)
        exe = build_c_harness(c_dir, Path(tmp) / "build", cc=a.cc, flags=flags)
        err = float(np.abs(run_c_harness(exe, obs) - want).max())
        compiler = subprocess.run([str(exe), "info"], capture_output=True, text=True, timeout=30).stdout.strip()
        ns = []
        for _ in range(a.repeats):
            out = subprocess.run([str(exe), "time", str(a.steps)], capture_output=True, text=True, timeout=600)
            ns.append(float(out.stdout.split()[0]))
    return {
        "us_per_step": round(min(ns) / 1e3, 3),
        "us_per_step_runs": [round(x / 1e3, 3) for x in ns],
        "obs_dim": L2F_OBS_DIM,
        "hidden": a.hidden,
        "action_dim": L2F_ACTION_DIM,
        "activation": a.activation,
        "steps": a.steps,
        "compiler": compiler,
        "cflags": a.cflags,
        "max_abs_err_vs_torch": err,
    }
