"""policy_node, sim_robot_node and recorder_node over real DDS (loopback), started as console entry points."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from ros_harness import BIN, CONFIG, spin_until

from robolearn.core.types import ActionSpec, ActionTerm, ObsTerm, TaskSpec
from robolearn.export import export_policy
from robolearn.networks.mlp import MLPPolicy

rclpy = pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.qos import QoSDurabilityPolicy, QoSProfile  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

RPM_TO_RAD_S = 2 * math.pi / 60
LATCHED = QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)


def odom(z: float = 1.0, nan: bool = False) -> Odometry:
    m = Odometry()
    m.header.frame_id, m.child_frame_id = "world", "cf1"
    m.pose.pose.position.z = z
    m.pose.pose.orientation.w = float("nan") if nan else 1.0
    return m


class Probe:
    """The test's view of one policy node: its commands, state and diagnostics."""

    def __init__(self, node: object, cmd_topic: str = "/cf1/cmd_motors") -> None:
        self.node = node
        self.cmds: list[np.ndarray] = []
        self.states: list[str] = []
        self.diag: dict[str, str] = {}
        self.subs = [
            node.create_subscription(JointState, cmd_topic, lambda m: self.cmds.append(np.array(m.velocity)), 50),
            node.create_subscription(String, "/policy_node/state", lambda m: self.states.append(m.data), LATCHED),
            node.create_subscription(DiagnosticArray, "/diagnostics", self._diag, 50),
        ]
        self.pub = node.create_publisher(Odometry, "/cf1/odom", 10)

    def _diag(self, m: DiagnosticArray) -> None:
        for s in m.status:
            if s.name.startswith("policy_node"):
                self.diag = {kv.key: kv.value for kv in s.values}

    def state(self) -> str:
        return self.states[-1] if self.states else ""

    def publish_for(self, seconds: float, rate: float, **kw: object) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            m = odom(**kw)
            m.header.stamp = self.node.get_clock().now().to_msg()
            self.pub.publish(m)
            rclpy.spin_once(self.node, timeout_sec=1.0 / rate)

    def publish_until(self, cond, timeout: float, rate: float = 20.0) -> bool:
        """Keep the robot's odometry flowing until `cond()` holds (bounded wait, not a timing assertion)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.publish_for(0.1, rate)
            if cond():
                return True
        return bool(cond())

    def call(self, name: str) -> str:
        cli = self.node.create_client(Trigger, f"/policy_node/{name}")
        assert cli.wait_for_service(timeout_sec=20.0), f"service {name} never appeared"
        fut = cli.call_async(Trigger.Request())
        rclpy.spin_until_future_complete(self.node, fut, timeout_sec=10.0)
        self.node.destroy_client(cli)
        return fut.result().message

    def close(self) -> None:
        for s in self.subs:
            self.node.destroy_subscription(s)
        self.node.destroy_publisher(self.pub)


# ------------------------------------------------------------------------------------------------------ full loop
@pytest.mark.parametrize("mode", ["rpm", "ctbr"])
def test_sim_robot_and_policy_node_hold_the_hover_goal(launch, test_node, hover_artifacts, mode):
    """sim_robot_node (quadrotor-hover) ↔ policy_node (trained hover MLP) over DDS keeps the drone at the goal.

    rpm: motor speeds on `motors`; ctbr: crazyswarm2's `cmd_vel_legacy` (rate mode, PWM thrust). The torch
    simulator runs at half real time so a loaded 2-core machine keeps up; the policy follows the state messages
    (trigger:=input), so control stays in lockstep with simulated time.
    """
    launch("robolearn-sim-robot-node", task="quadrotor-hover", action_mode=mode, real_time_factor=0.5,
           init_scale=0.1, seed=3)
    pol = launch("robolearn-policy-node", artifact=hover_artifacts(mode), topic_map=CONFIG / f"crazyflie_{mode}.yaml",
                 trigger="input", rate_hz=50.0, watchdog_periods=10)
    pos: list[tuple[float, float, float]] = []

    def on_state(m: Odometry) -> None:
        p = (m.pose.pose.position.x, m.pose.pose.position.y, m.pose.pose.position.z)
        if not pos or p != pos[-1]:  # one entry per physics step (a late sim publishes a state twice)
            pos.append(p)

    sub = test_node.create_subscription(Odometry, "/cf1/odom", on_state, 50)
    try:
        assert spin_until(test_node, lambda: len(pos) >= 400, timeout=90.0), pol.output()  # 4 s of sim time
    finally:
        test_node.destroy_subscription(sub)
    err = np.linalg.norm(np.asarray(pos) - np.array([0.0, 0.0, 1.0]), axis=1)
    # from up to 9° tilt and 0.1 m/s the cloned (soft) PD expert swings out ~0.16 m in-process too
    assert err.max() < 0.25, f"drone left the goal: max error {err.max():.3f} m"
    assert err[-50:].max() < 0.05, f"not holding the goal: error {err[-50:].max():.3f} m over the last 0.5 s"


# ------------------------------------------------------------------------------------------ watchdog, NaN, e-stop
@pytest.fixture
def hover_node(launch, test_node, hover_artifact):
    """policy_node at 20 Hz (timer) with a 2-period watchdog, driven by odometry the test publishes."""
    proc = launch("robolearn-policy-node", artifact=hover_artifact, topic_map=CONFIG / "crazyflie_rpm.yaml",
                  rate_hz=20.0, watchdog_periods=2, diagnostics_rate_hz=20.0)
    probe = Probe(test_node)
    assert probe.publish_until(lambda: probe.state() == "active" and probe.cmds, 30.0), proc.output()
    yield probe, proc
    probe.close()


def test_watchdog_fires_within_two_periods_and_recovers(hover_node, test_node, hover_artifact):
    probe, proc = hover_node
    probe.publish_for(1.0, 20.0)
    assert probe.state() == "active"
    n = len(probe.cmds)
    # input stops: the watchdog (a 2-period timer restarted by every message) trips into the safe action
    assert spin_until(test_node, lambda: probe.state().startswith("fault"), 5.0), proc.output()
    assert "input 'state' (/cf1/odom): no message for 2 control periods" in probe.state()
    assert spin_until(test_node, lambda: "watchdog_trip_periods" in probe.diag, 5.0)
    trip = float(probe.diag["watchdog_trip_periods"])
    assert {"infer_p50_ms", "infer_p99_ms", "infer_max_ms", "step_p99_ms", "deadline_misses"} <= set(probe.diag)
    # the watchdog timer is due exactly 2 periods after the last message; what is measured adds the executor's
    # wake-up delay, so the bound leaves a period and a half for a loaded test machine
    assert 2.0 <= trip < 3.5, f"tripped {trip} periods after the last message"  # node-clock periods
    assert spin_until(test_node, lambda: len(probe.cmds) > n + 3, 5.0)
    manifest = json.loads((hover_artifact / "manifest.json").read_text())
    hover_rpm = manifest["action"]["terms"][0]["offset"][0]
    assert np.allclose(probe.cmds[-1] / RPM_TO_RAD_S, hover_rpm, rtol=1e-6)  # hover first (then land)
    # input resumes: back to the policy
    assert probe.publish_until(lambda: probe.state() == "active", 5.0), probe.states[-5:]


def test_nan_input_gives_the_safe_action_naming_the_term(hover_node, test_node):
    probe, proc = hover_node
    probe.publish_for(0.3, 20.0, nan=True)
    assert spin_until(test_node, lambda: "rotation_matrix" in probe.state(), 5.0), probe.states[-5:]
    assert probe.state().startswith("fault: invalid input")
    assert int(probe.diag.get("invalid_inputs", "1")) >= 1
    assert probe.publish_until(lambda: probe.state() == "active", 5.0), probe.states[-5:]


def test_estop_latches_until_cleared(hover_node, test_node):
    probe, proc = hover_node
    assert probe.call("estop") == "e-stop latched"
    probe.publish_for(1.0, 20.0)  # healthy input does not release it
    assert probe.state().startswith("estop")
    assert probe.call("activate").startswith("e-stop is latched")
    assert probe.state().startswith("estop")
    assert probe.call("clear_estop").startswith("e-stop cleared")
    assert spin_until(test_node, lambda: probe.state() == "inactive", 5.0)
    probe.call("activate")
    assert probe.publish_until(lambda: probe.state() == "active", 5.0), probe.states[-5:]


# ----------------------------------------------------------------------------------------------------------- limits
def _quad_spec(low: float = -1.0, high: float = 1.0, extra_terms: tuple[ObsTerm, ...] = ()) -> TaskSpec:
    terms = (ObsTerm("pos_error", 3, "m"), ObsTerm("rotation_matrix", 9), ObsTerm("lin_vel", 3, "m/s"),
             ObsTerm("ang_vel", 3, "rad/s"), *extra_terms)
    act = ActionSpec((ActionTerm("motor_rpm", 4, "rpm", (7227.0,) * 4, (14475.0,) * 4),), rate_hz=20.0, mode="rpm",
                     low=low, high=high)
    return TaskSpec("quadrotor-hover", {"policy": terms}, act, robot="crazyflie-2.1")


def _saturated_artifact(path: Path, spec: TaskSpec) -> Path:
    d = sum(t.dim for t in spec.obs_terms["policy"])
    policy = MLPPolicy(d, 4, hidden=(8,), output="tanh")
    with torch.no_grad():
        policy.mlp.linears[-1].bias.fill_(5.0)  # tanh(5) ≈ 1: always asks for (almost) full throttle
    return export_policy(policy, spec, path, source={"kind": "test"}, targets=())  # weights only: backend torch


def test_commands_never_leave_the_manifest_limits(launch, test_node, tmp_path):
    art = _saturated_artifact(tmp_path / "narrow", _quad_spec(low=-0.2, high=0.2))
    proc = launch("robolearn-policy-node", artifact=art, topic_map=CONFIG / "crazyflie_rpm.yaml", rate_hz=20.0,
                  action_high=0.1, backend="torch")
    probe = Probe(test_node)
    try:
        assert probe.publish_until(lambda: len(probe.cmds) >= 5, 30.0), proc.output()
        probe.publish_for(0.5, 20.0)
    finally:
        probe.close()
    rpm = np.asarray(probe.cmds) / RPM_TO_RAD_S
    assert rpm.max() <= 14475.0 + 7227.0 * 0.1 + 1e-6  # the node's action_high tightens the manifest's 0.2
    assert np.isclose(rpm[-1], 14475.0 + 722.7).all()  # saturated policy → clamped exactly at the limit


# ------------------------------------------------------------------------------------------- chunk policies
def _act_artifact(path: Path, spec: TaskSpec, images: bool = False) -> Path:
    """An (untrained) ACT exported for `spec`: chunks of 5 actions, 5 executed per prediction."""
    from robolearn.export.chunked import export_chunk_policy
    from robolearn.policies.act import ACTConfig, ACTPolicy

    torch.manual_seed(0)
    d = sum(t.dim for t in spec.obs_terms["policy"])
    feats = {"observation.policy": (d,), "action": (spec.action.dim,)}
    if images:
        feats["observation.images.cam"] = (16, 16, 3)
    cfg = ACTConfig(chunk_size=5, n_action_steps=5, dim_model=16, n_heads=2, dim_feedforward=32, n_encoder_layers=1,
                    n_decoder_layers=1, n_vae_encoder_layers=1, latent_dim=4, backbone_width=4)
    return export_chunk_policy(ACTPolicy(cfg, feats).eval(), path, spec)


def test_policy_node_runs_an_act_artifact(launch, test_node, tmp_path):
    """An ACT artifact (schema 2, ONNX) drives the Crazyflie adapter: commands stream, inside the limits."""
    spec = _quad_spec(low=-0.3, high=0.3)
    proc = launch("robolearn-policy-node", artifact=_act_artifact(tmp_path / "act", spec),
                  topic_map=CONFIG / "crazyflie_rpm.yaml", rate_hz=20.0, diagnostics_rate_hz=20.0)
    probe = Probe(test_node)
    try:
        assert probe.publish_until(lambda: len(probe.cmds) >= 12 and "infer_calls" in probe.diag, 30.0), \
            proc.output()
    finally:
        probe.close()
    rpm = np.asarray(probe.cmds) / RPM_TO_RAD_S
    assert np.isfinite(rpm).all() and (np.abs(rpm - 14475.0) <= 7227.0 * 0.3 + 1e-6).all()
    assert probe.state() == "active" and int(probe.diag["infer_calls"]) >= 1 and probe.diag["invalid_inputs"] == "0"


@pytest.fixture(scope="module")
def slow_act_artifact(tmp_path_factory) -> Path:
    """ACT chunks of 20, 10 executed per prediction: at 20 Hz a chunk is due every 0.5 s."""
    from robolearn.export.chunked import export_chunk_policy
    from robolearn.policies.act import ACTConfig, ACTPolicy

    torch.manual_seed(0)
    spec = _quad_spec(low=-0.3, high=0.3)
    feats = {"observation.policy": (18,), "action": (4,)}
    cfg = ACTConfig(chunk_size=20, n_action_steps=10, temporal_ensemble_coef=None, dim_model=16, n_heads=2,
                    dim_feedforward=32, n_encoder_layers=1, n_decoder_layers=1, n_vae_encoder_layers=1, latent_dim=4)
    return export_chunk_policy(ACTPolicy(cfg, feats).eval(), tmp_path_factory.mktemp("slow") / "act", spec)


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_slow_chunk_inference_runs_in_the_background(ros_env, test_node, tmp_path, slow_act_artifact, mode):
    """Chunks that take 0.4 s (8 control periods): async, no control step waits on one; sync, the step that infers
    takes the whole 0.4 s. Measured by the node itself (step_max_ms) against the injected delay."""
    from ros_harness import Proc

    delay = 0.4
    args = [sys.executable, str(Path(__file__).parent / "slow_chunk_policy_node.py"), "--ros-args",
            "-p", f"artifact:={slow_act_artifact}", "-p", f"topic_map:={CONFIG / 'crazyflie_rpm.yaml'}",
            "-p", "rate_hz:=20.0", "-p", "diagnostics_rate_hz:=20.0", "-p", f"async_inference:={mode == 'async'}",
            "-p", "prefetch_steps:=10", "-p", "watchdog_periods:=20"]
    proc = Proc(args, {**ros_env, "SLOW_CHUNK_S": str(delay)}, tmp_path / "policy_node.log")
    probe = Probe(test_node)
    try:
        # 45 commands: four chunks of 10 played, three of them computed with the delay while the loop ran
        assert probe.publish_until(lambda: len(probe.cmds) >= 45 and "step_max_ms" in probe.diag, 60.0), \
            proc.output()
    finally:
        probe.close()
        proc.stop()
    d = probe.diag
    assert probe.state() == "active" and d["invalid_inputs"] == "0", probe.states[-3:]
    rpm = np.asarray(probe.cmds) / RPM_TO_RAD_S
    assert np.isfinite(rpm).all() and (np.abs(rpm - 14475.0) <= 7227.0 * 0.3 + 1e-6).all()
    if mode == "async":
        assert d["infer_async"] == "1" and d["infer_prefetch_steps"] == "10", d
        assert float(d["infer_chunk_max_ms"]) >= delay * 1e3  # the chunks really were slow ...
        assert float(d["step_max_ms"]) < delay * 1e3, d  # ... and no control step waited for one
        assert {"infer_late_chunks", "infer_late_steps", "infer_starved_steps"} <= set(d)
    else:
        assert "infer_async" not in d
        assert float(d["step_max_ms"]) >= delay * 1e3, d  # the control step that infers blocks the loop


def test_act_artifact_with_cameras_refuses_to_start(ros_env, tmp_path):
    art = _act_artifact(tmp_path / "cam", _quad_spec(), images=True)
    r = _run_policy_node(ros_env, art, CONFIG / "crazyflie_rpm.yaml")
    assert r.returncode != 0 and "reads camera images (observation.images.cam)" in r.stderr, r.stderr[-2000:]


# ------------------------------------------------------------------------------------------ refuses to start
def _run_policy_node(ros_env, artifact: Path, topic_map: Path, backend: str = "onnx") -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "robolearn-policy-node"), "--ros-args", "-p", f"artifact:={artifact}",
                           "-p", f"topic_map:={topic_map}", "-p", f"backend:={backend}"], env=ros_env,
                          capture_output=True, text=True, timeout=60)


def test_malformed_manifest_refuses_to_start_naming_the_key(ros_env, hover_artifact, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(hover_artifact, bad)
    m = json.loads((bad / "manifest.json").read_text())
    m["control_rate_hz"] = "fast"
    (bad / "manifest.json").write_text(json.dumps(m))
    r = _run_policy_node(ros_env, bad, CONFIG / "crazyflie_rpm.yaml")
    assert r.returncode == 2
    assert "control_rate_hz" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_artifact_with_a_term_the_robot_lacks_refuses_to_start(ros_env, tmp_path):
    spec = _quad_spec(extra_terms=(ObsTerm("lidar_scan", 16, "m"),))
    art = _saturated_artifact(tmp_path / "lidar", spec)
    r = _run_policy_node(ros_env, art, CONFIG / "crazyflie_rpm.yaml", backend="torch")
    assert r.returncode == 2 and "'lidar_scan'" in r.stderr, r.stderr


def test_unknown_message_type_in_topic_map_refuses_to_start(ros_env, hover_artifact, tmp_path):
    tm = tmp_path / "map.yaml"
    tm.write_text((CONFIG / "crazyflie_rpm.yaml").read_text().replace("nav_msgs/msg/Odometry", "nav_msgs/msg/Odometri"))
    r = _run_policy_node(ros_env, hover_artifact, tm)
    assert r.returncode == 2 and "nav_msgs/msg/Odometri" in r.stderr and "inputs.state.type" in r.stderr, r.stderr


# --------------------------------------------------------------------------------------------------------- recorder
def test_recorder_writes_a_valid_dataset(launch, test_node, tmp_path):
    cfg = tmp_path / "rec.yaml"
    cfg.write_text("fps: 20\nfeatures:\n  state: {topic: /cf1/odom, type: nav_msgs/msg/Odometry}\n"
                   "  action: {topic: /cf1/cmd_motors, type: sensor_msgs/msg/JointState, field: velocity, dim: 4}\n")
    ds = tmp_path / "demos.zarr"
    rec = launch("robolearn-recorder-node", dataset=ds, config=cfg, robot="crazyflie-2.1")
    pub_state = test_node.create_publisher(Odometry, "/cf1/odom", 10)
    pub_cmd = test_node.create_publisher(JointState, "/cf1/cmd_motors", 10)

    def call(name: str) -> tuple[bool, str]:
        cli = test_node.create_client(Trigger, f"/recorder_node/{name}")
        assert cli.wait_for_service(timeout_sec=30.0), rec.output()
        fut = cli.call_async(Trigger.Request())
        rclpy.spin_until_future_complete(test_node, fut, timeout_sec=10.0)
        test_node.destroy_client(cli)
        return fut.result().success, fut.result().message

    def stream(seconds: float) -> None:
        end = time.monotonic() + seconds
        k = 0
        while time.monotonic() < end:
            pub_state.publish(odom(z=1.0 + 0.001 * k))
            pub_cmd.publish(JointState(velocity=[1500.0 + k] * 4))
            k += 1
            rclpy.spin_once(test_node, timeout_sec=0.02)

    try:
        for keep in (True, False, True):  # save, discard, save
            assert call("start")[0]
            stream(0.6)
            ok, msg = call("stop" if keep else "discard")
            assert ok, msg
    finally:
        test_node.destroy_publisher(pub_state)
        test_node.destroy_publisher(pub_cmd)
    assert rec.stop() == 0, rec.output()
    r = subprocess.run([str(BIN / "robolearn"), "dataset", "validate", str(ds)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    from robolearn.data.store import EpisodeStore

    store = EpisodeStore(ds)
    assert store.num_episodes == 2
    ep = store.read_episode(1)
    assert ep["state"].shape[1] == 13 and ep["action"].shape[1] == 4
    assert np.all(ep["state"][:, 2] >= 1.0) and np.all(ep["action"] >= 1500.0)
    assert store.provenance(0)["source"] == "ros"


@pytest.mark.skipif(sys.platform != "linux", reason="loopback DDS tests run on Linux")
def test_entry_points_exist():
    for exe in ("robolearn-policy-node", "robolearn-sim-robot-node", "robolearn-recorder-node"):
        assert (BIN / exe).exists()
