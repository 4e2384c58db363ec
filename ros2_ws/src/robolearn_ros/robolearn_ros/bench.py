"""`robolearn bench ros-loop-latency`: state published by sim_robot_node → command received, through policy_node.

Both nodes run as their console entry points over real Fast DDS on loopback (own ROS_DOMAIN_ID). The policy
node runs `trigger:=input` (one inference per state message) with an MLP policy artifact exported here (the
Learning to Fly actor size, 2×64 on the 146-dim hover observation; weights untrained — latency does not depend
on them). sim_robot_node publishes the state at `--rate` Hz and stamps it; every motor command carries the stamp
of the state it was computed from, so the delay is matched per message, not guessed from ordering.

`--policy act` runs an ACT-size chunk policy; its chunks are predicted in policy_node's background thread
(asynchronous inference, the default) or, with `--sync`, in the control step that needs them.

Reported: `p50_ms`, `p99_ms`, `max_ms` of the delay to the command's arrival in the sim node's middleware
(Fast DDS reception time), and `callback_*` to its arrival in the node's Python callback (includes waiting while
the single-threaded sim executor steps physics). `missed_deadlines`: states whose command arrived later than one
period, or never. `node_step_p50_ms`/`node_step_p99_ms`: the policy node's own share over its last 2,000 steps
(callback start → command published, from the summary it logs at shutdown); the rest is DDS and scheduling.
"""

from __future__ import annotations

import argparse
import os
import random
import re
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


def _act_artifact(out: Path, ensemble: float | None) -> Path:
    """An ACT-size chunk policy on the hover state (transformer of the ACT paper's width, chunk 100), untrained."""
    import torch

    from robolearn.envs.registry import make
    from robolearn.export.chunked import export_chunk_policy
    from robolearn.policies.act import ACTConfig, ACTPolicy

    torch.manual_seed(0)
    env = make("quadrotor-hover", num_envs=1, action_mode="rpm")
    feats = {"observation.policy": (env.spec.obs_dims["policy"],), "action": (env.spec.action.dim,)}
    cfg = ACTConfig(chunk_size=100, n_action_steps=1 if ensemble is not None else 100, dim_model=512, n_heads=8,
                    dim_feedforward=3200, n_encoder_layers=4, n_decoder_layers=1, temporal_ensemble_coef=ensemble)
    return export_chunk_policy(ACTPolicy(cfg, feats).eval(), out, env.spec)


def _describe(args: argparse.Namespace) -> str:
    if args.policy == "mlp":
        return f"MLP {args.hidden} tanh, obs 146, action 4 (onnxruntime, 1 thread)"
    mode = f"ensembling {args.ensemble:g} (a chunk every step)" if args.ensemble >= 0 else "chunks played out"
    infer = "in the control step (--sync)" if args.sync else (
        "in a background thread" + (f", prefetch {args.prefetch}" if args.prefetch >= 0 else ", prefetch 50"))
    return f"ACT d512 4+1 layers chunk 100, obs 146, action 4, {mode}, chunks predicted {infer} (onnxruntime, 1 thread)"


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
    ap.add_argument("--policy", choices=["mlp", "act"], default="mlp",
                    help="act: an ACT-size chunk policy (d 512, 4+1 layers, chunk 100, state input; use --rate 50)")
    ap.add_argument("--ensemble", type=float, default=0.01,
                    help="act: temporal-ensembling coefficient (a chunk every step); negative: play chunks out")
    ap.add_argument("--sync", action="store_true",
                    help="act: predict chunks in the control step (policy_node async_inference:=false) instead of "
                         "in its background inference thread, to compare")
    ap.add_argument("--prefetch", type=int, default=-1,
                    help="act: policy_node prefetch_steps (request the next chunk this many steps before the current "
                         "one's n_action_steps run out); -1: the node's default (half of n_action_steps)")
    ap.add_argument("--physics-rtf", type=float, default=0.1,
                    help="real-time factor of the sim's torch physics (a few ms a step at num_envs=1 on CPU); the "
                         "state is published at --rate regardless")
    ap.add_argument("--rt-priority", type=int, default=0,
                    help="run both nodes SCHED_FIFO at this priority (chrt; as a robot computer runs its control "
                         "loop); 0 = normal scheduling")
    ap.add_argument("--cpus", default="", metavar="POLICY/SIM",
                    help="pin each node (with its middleware threads) to CPUs with taskset, e.g. '0/1' or '2-3/1', "
                         "as a robot computer isolates its control loop; empty: no pinning")
    ap.add_argument("--keep", default="", help="directory to keep logs and the artifact in")
    args = ap.parse_args(argv)

    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="ros-loop-"))
    tmp.mkdir(parents=True, exist_ok=True)
    art = tmp / f"artifact-{args.policy}"
    if not art.exists():
        if args.policy == "act":
            _act_artifact(art, args.ensemble if args.ensemble >= 0 else None)
        else:
            _artifact(art, tuple(args.hidden))
    cfg = tmp / "topic_map.yaml"  # the shipped config/crazyflie_rpm.yaml, written here so any install layout works
    cfg.write_text("adapter: crazyflie\ninputs:\n  state: {topic: /cf1/odom, type: nav_msgs/msg/Odometry}\n"
                   "outputs:\n  motors: {topic: /cf1/cmd_motors, type: sensor_msgs/msg/JointState}\n")
    env = {**os.environ, "ROS_DOMAIN_ID": str(random.randint(1, 100)), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    bin_dir = Path(sys.executable).parent
    total = args.cycles + args.warmup
    log = tmp / "latency.npz"
    log.unlink(missing_ok=True)
    rt = ["chrt", "-f", str(args.rt_priority)] if args.rt_priority else []
    pin = {"policy": [], "sim": []}
    if args.cpus:
        if args.cpus.count("/") != 1:
            raise SystemExit(f"--cpus {args.cpus!r}: give POLICY/SIM CPU lists, e.g. 0/1")
        pin = {k: ["taskset", "-c", c] for k, c in zip(("policy", "sim"), args.cpus.split("/"), strict=True)}
    pol = subprocess.Popen(
        [*pin["policy"], *rt, str(bin_dir / "robolearn-policy-node"), "--ros-args", "-p", f"artifact:={art}",
         "-p", f"topic_map:={cfg}",
         "-p", "trigger:=input", "-p", f"rate_hz:={args.rate}", "-p", "watchdog_periods:=25",
         "-p", f"async_inference:={not args.sync}", "-p", f"prefetch_steps:={args.prefetch}"],
        env=env, stdout=open(tmp / "policy_node.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    time.sleep(1.0)
    sim = subprocess.Popen(
        [*pin["sim"], *rt, str(bin_dir / "robolearn-sim-robot-node"), "--ros-args",
         "-p", f"publish_rate_hz:={args.rate}",
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
    # the policy node's own share: callback start → command published, from its shutdown summary
    node = re.search(r"step time over the last (\d+) steps: p50 ([\d.]+) ms, p99 ([\d.]+) ms",
                     (tmp / "policy_node.log").read_text(errors="replace"))
    node_step = {} if node is None else {"node_step_p50_ms": float(node[2]), "node_step_p99_ms": float(node[3]),
                                         "node_steps": int(node[1])}
    return {
        **_stats(mw), "missed_deadlines": measured - on_time, "cycles": measured, "rate_hz": args.rate,
        "commands_received": int(len(mw)), **_stats(cb, "callback_"), **node_step,
        "policy": _describe(args), **({"async_inference": not args.sync} if args.policy == "act" else {}),
        "physics_rtf": args.physics_rtf, "rt_priority": args.rt_priority, "cpus": args.cpus or "any",
        "wall_rate_hz": round(int(d["published"]) / max(float(d["duration_s"]), 1e-9), 1),
        "sim_overruns": int(d["overruns"]), "logs": str(tmp),
    }


def _act_size_model() -> Any:
    """An ACT-size network (random weights): what the ACT inference path costs, not a trained policy.

    ResNet-18 on one 480×640 camera, 4-layer encoder and 1-layer decoder, d_model 512, 8 heads, FFN 3200,
    chunk 100, 14-D state and action (LeRobot's ACT defaults for ALOHA; the VAE encoder is not used at inference).
    """
    import torch
    from torch import nn

    def bn_conv(cin: int, cout: int, k: int, stride: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout))

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.a, self.b = bn_conv(cin, cout, 3, stride), bn_conv(cout, cout, 3, 1)
            self.down = bn_conv(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()

        def forward(self, x: Any) -> Any:
            return torch.relu(self.b(torch.relu(self.a(x))) + self.down(x))

    class ACTSize(nn.Module):
        def __init__(self, d: int = 512, chunk: int = 100, dim: int = 14) -> None:
            super().__init__()
            layers, cin = [bn_conv(3, 64, 7, 2), nn.ReLU(), nn.MaxPool2d(3, 2, 1)], 64
            for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
                layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
                cin = cout
            self.backbone = nn.Sequential(*layers, nn.Conv2d(512, d, 1))
            self.state = nn.Linear(dim, d)
            self.latent = nn.Parameter(torch.zeros(1, 1, d))
            self.pos = nn.Parameter(torch.zeros(1, 2 + 15 * 20, d))  # latent, state, 15×20 image features
            self.queries = nn.Parameter(torch.zeros(1, chunk, d))
            self.enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(d, 8, 3200, 0.0, batch_first=True), 4)
            self.dec = nn.TransformerDecoder(nn.TransformerDecoderLayer(d, 8, 3200, 0.0, batch_first=True), 1)
            self.head = nn.Linear(d, dim)

        def forward(self, image: Any, state: Any) -> Any:
            b = image.shape[0]
            f = self.backbone(image).flatten(2).transpose(1, 2)  # (B, 300, d)
            tokens = torch.cat([self.latent.expand(b, -1, -1), self.state(state).unsqueeze(1), f], 1) + self.pos
            return self.head(self.dec(self.queries.expand(b, -1, -1), self.enc(tokens)))  # (B, chunk, A)

    return ACTSize().eval()


def act_size_inference(argv: list[str]) -> dict[str, Any]:
    """ONNX Runtime latency of an ACT-size network (one 480×640 camera → 100-step chunk), exported by torch.onnx.

    Not through ROS: the artifact schema (v1) and the runtime hold MLP policies only. It says whether an ACT
    policy can run per step at 50 Hz on this CPU, or needs chunked execution with asynchronous inference.
    """
    import torch

    ap = argparse.ArgumentParser(prog="robolearn bench act-size-inference", description=act_size_inference.__doc__)
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args(argv)
    import onnxruntime as ort

    torch.manual_seed(0)
    m = _act_size_model()
    img, st = torch.rand(1, 3, 480, 640), torch.rand(1, 14)
    path = Path(tempfile.mkdtemp(prefix="act-size-")) / "act_size.onnx"
    torch.onnx.export(m, (img, st), str(path), input_names=["image", "state"], output_names=["actions"],
                      dynamo=False, opset_version=17)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = args.threads, 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {"image": img.numpy(), "state": st.numpy()}
    with torch.no_grad():
        err = float(np.abs(sess.run(None, feed)[0] - m(img, st).numpy()).max())
    lat = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        sess.run(None, feed)
        lat.append(time.perf_counter() - t0)
    return {**_stats(np.asarray(lat)), "runs": args.runs, "threads": args.threads, "max_abs_err_vs_torch": err,
            "params_m": round(sum(p.numel() for p in m.parameters()) / 1e6, 2),
            "network": "ResNet-18 (1 camera 480x640) + transformer d512, 8 heads, FFN 3200, 4 enc / 1 dec layers, "
                       "chunk 100, 14-D action (LeRobot ACT defaults; no VAE encoder at inference)"}
