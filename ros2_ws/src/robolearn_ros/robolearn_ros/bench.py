"""`robolearn bench ros-loop-latency`: state published by sim_robot_node → command received, through policy_node.

Both nodes run as their console entry points over real Fast DDS on loopback (own ROS_DOMAIN_ID). The policy
node runs `trigger:=input` (one inference per state message) with an MLP policy artifact exported here (the
Learning to Fly actor size, 2×64 on the 146-dim hover observation; weights untrained — latency does not depend
on them). sim_robot_node publishes the state at `--rate` Hz and stamps it; every motor command carries the stamp
of the state it was computed from, so the delay is matched per message, not guessed from ordering.

Reported: `p50_ms`, `p99_ms`, `max_ms` of the delay to the command's arrival in the sim node's middleware
(Fast DDS reception time), and `callback_*` to its arrival in the node's Python callback (includes waiting while
the single-threaded sim executor steps physics). `missed_deadlines`: states whose command arrived later than one
period, or never.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _artifact(out: Path, hidden: tuple[int, ...]) -> Path:
    from robolearn.envs.registry import make
    from robolearn.export import export_policy
    from robolearn.networks.mlp import MLPPolicy

    env = make("quadrotor-hover", num_envs=1, action_mode="rpm")
    policy = MLPPolicy(env.spec.obs_dims["policy"], env.spec.action.dim, hidden=hidden, activation="tanh")
    return export_policy(policy, env.spec, out, source={"kind": "bench", "hidden": list(hidden)})


def _stats(x: np.ndarray, prefix: str = "") -> dict[str, float]:
    ms = x * 1e3
    return {f"{prefix}p50_ms": round(float(np.percentile(ms, 50)), 4), f"{prefix}p99_ms": round(
        float(np.percentile(ms, 99)), 4), f"{prefix}max_ms": round(float(ms.max()), 4)}


def ros_loop_latency(argv: list[str]) -> dict[str, Any]:
    """Run the loop for `--cycles` states at `--rate` Hz and report the latency distribution."""
    ap = argparse.ArgumentParser(prog="robolearn bench ros-loop-latency", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=500.0, help="state/control rate [Hz]")
    ap.add_argument("--cycles", type=int, default=10000, help="measured cycles (after --warmup)")
    ap.add_argument("--warmup", type=int, default=500, help="cycles dropped at the start (discovery, caches)")
    ap.add_argument("--hidden", type=int, nargs="+", default=[64, 64], help="MLP hidden layers")
    ap.add_argument("--physics-rtf", type=float, default=0.1,
                    help="real-time factor of the sim's torch physics (a few ms a step at num_envs=1 on CPU); the "
                         "state is published at --rate regardless")
    ap.add_argument("--rt-priority", type=int, default=0,
                    help="run both nodes SCHED_FIFO at this priority (chrt; as a robot computer runs its control "
                         "loop); 0 = normal scheduling")
    ap.add_argument("--keep", default="", help="directory to keep logs and the artifact in")
    args = ap.parse_args(argv)

    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="ros-loop-"))
    tmp.mkdir(parents=True, exist_ok=True)
    art = _artifact(tmp / "artifact", tuple(args.hidden)) if not (tmp / "artifact").exists() else tmp / "artifact"
    cfg = tmp / "topic_map.yaml"  # the shipped config/crazyflie_rpm.yaml, written here so any install layout works
    cfg.write_text("adapter: crazyflie\ninputs:\n  state: {topic: /cf1/odom, type: nav_msgs/msg/Odometry}\n"
                   "outputs:\n  motors: {topic: /cf1/cmd_motors, type: sensor_msgs/msg/JointState}\n")
    env = {**os.environ, "ROS_DOMAIN_ID": str(random.randint(1, 100)), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    bin_dir = Path(sys.executable).parent
    total = args.cycles + args.warmup
    log = tmp / "latency.npz"
    log.unlink(missing_ok=True)
    rt = ["chrt", "-f", str(args.rt_priority)] if args.rt_priority else []
    pol = subprocess.Popen(
        [*rt, str(bin_dir / "robolearn-policy-node"), "--ros-args", "-p", f"artifact:={art}", "-p", f"topic_map:={cfg}",
         "-p", "trigger:=input", "-p", f"rate_hz:={args.rate}", "-p", "watchdog_periods:=25"],
        env=env, stdout=open(tmp / "policy_node.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    time.sleep(1.0)
    sim = subprocess.Popen(
        [*rt, str(bin_dir / "robolearn-sim-robot-node"), "--ros-args", "-p", f"publish_rate_hz:={args.rate}",
         "-p", f"real_time_factor:={args.physics_rtf}", "-p", "init_scale:=0.0", "-p", f"latency_log:={log}",
         "-p", f"max_cycles:={total}"],
        env=env, stdout=open(tmp / "sim_robot_node.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    try:
        deadline = time.monotonic() + 60 + 3 * total / args.rate
        while time.monotonic() < deadline and sim.poll() is None:
            time.sleep(0.5)
            if (tmp / "sim_robot_node.log").read_text(errors="replace").count("published max_cycles"):
                break
        time.sleep(0.5)
    finally:
        for p in (sim, pol):
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in (sim, pol):
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
    if not log.exists():
        raise RuntimeError(f"sim_robot_node wrote no latency log; see {tmp}/*.log")
    d = np.load(log)
    mw, cb, seq = d["middleware_s"], d["callback_s"], d["seq"]
    keep = seq >= args.warmup
    mw, cb = mw[keep], cb[keep]
    measured = int(min(int(d["published"]), total) - args.warmup)
    period = 1.0 / args.rate
    on_time = int((mw <= period).sum())
    return {
        **_stats(mw), "missed_deadlines": measured - on_time, "cycles": measured, "rate_hz": args.rate,
        "commands_received": int(len(mw)), **_stats(cb, "callback_"),
        "policy": f"MLP {args.hidden} tanh, obs 146, action 4 (onnxruntime, 1 thread)",
        "physics_rtf": args.physics_rtf, "rt_priority": args.rt_priority,
        "wall_rate_hz": round(int(d["published"]) / max(float(d["duration_s"]), 1e-9), 1),
        "sim_overruns": int(d["overruns"]), "logs": str(tmp),
    }
