"""Adapters, topic maps, the policy node's state machine and the runtime's action queue, without DDS."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from robolearn.core.types import ActionSpec, ActionTerm, ObsTerm, TaskSpec
from robolearn.export import ActionQueue, InvalidInputError, PolicyRuntime, export_policy
from robolearn.networks.mlp import MLPPolicy

pytest.importorskip("rclpy")
from geometry_msgs.msg import Twist  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from robolearn_ros.adapters import ArmAdapter, CrazyflieAdapter, LeggedAdapter  # noqa: E402
from robolearn_ros.messages import ConfigError, quat_to_rotmat  # noqa: E402
from robolearn_ros.policy_node import ACTIVE, ESTOP, FAULT, INACTIVE, LANDING, STOPPING, Core  # noqa: E402
from robolearn_ros.topic_map import load_topic_map  # noqa: E402
from sensor_msgs.msg import Imu, JointState  # noqa: E402

CONFIG = Path(__file__).resolve().parents[2] / "ros2_ws" / "src" / "robolearn_ros" / "config"
JOINTS = [f"j{i}" for i in range(3)]


def _manifest(obs: list[tuple[str, int, str]], act: list[tuple[str, int, list[float], list[float]]],
              low: float = -1.0, high: float = 1.0) -> dict:
    o, terms = 0, []
    for name, dim, source in obs:
        terms.append({"name": name, "dim": dim, "offset": o, "unit": "", "source": source})
        o += dim
    return {"observation": {"dim": o, "terms": terms}, "robot": "test",
            "action": {"dim": sum(a[1] for a in act), "low": low, "high": high,
                       "terms": [{"name": n, "dim": d, "scale": s, "offset": f, "unit": ""} for n, d, s, f in act]}}


def test_crazyflie_observation_frames():
    m = _manifest([("pos_error", 3, "sensor"), ("rotation_matrix", 9, "sensor"), ("lin_vel", 3, "sensor"),
                   ("ang_vel", 3, "sensor"), ("action_history", 8, "last_action")],
                  [("motor_rpm", 4, [7000.0] * 4, [14000.0] * 4)])
    ad = CrazyflieAdapter(m, {"goal": [1.0, 0.0, 1.0]}, {"motors"})
    msg = Odometry()
    msg.pose.pose.position.x, msg.pose.pose.position.z = 0.5, 1.2
    s = math.sqrt(0.5)
    msg.pose.pose.orientation.z, msg.pose.pose.orientation.w = s, s  # yaw +90°
    msg.twist.twist.linear.x = 1.0  # body x = world y
    msg.twist.twist.angular.z = 0.3
    ad.record(np.array([0.1, 0.2, 0.3, 0.4]))
    obs = ad.observation({"state": msg})
    np.testing.assert_allclose(obs[0:3], [-0.5, 0.0, 0.2], atol=1e-12)
    np.testing.assert_allclose(obs[3:12].reshape(3, 3), [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)
    np.testing.assert_allclose(obs[12:15], [0.0, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(obs[15:18], [0, 0, 0.3])
    np.testing.assert_allclose(obs[18:], [0.1, 0.2, 0.3, 0.4, 0, 0, 0, 0])  # newest first


def test_crazyflie_takeoff_ramps_the_goal():
    m = _manifest([("pos_error", 3, "sensor")], [("motor_rpm", 4, [7000.0] * 4, [14000.0] * 4)])
    ad = CrazyflieAdapter(m, {"goal": [0.0, 0.0, 1.0], "takeoff_s": 2.0}, {"motors"})
    msg = Odometry()
    msg.pose.pose.orientation.w = 1.0  # on the ground at the origin
    ad.takeoff({"state": msg}, now=10.0)
    for now, err_z in ((10.0, 0.0), (11.0, -0.5), (12.0, -1.0), (20.0, -1.0)):
        ad.now = now
        assert ad.observation({"state": msg})[2] == pytest.approx(err_z)


def test_crazyflie_error_integral_is_the_simulators():
    """A policy trained with `pos_error_integral: true` sees on the robot the integral it saw in simulation: the
    adapter integrates the state estimate's error over node time and clamps it with the training run's limit."""
    from robolearn.envs import registry

    env = registry.make("quadrotor-hover", num_envs=1, seed=3, obs_noise={}, pos_error_integral=True,
                        pos_error_integral_limit=0.03)
    spec = env.spec
    m = _manifest([(t.name, t.dim, t.source) for t in spec.obs_terms["policy"]],
                  [(t.name, t.dim, list(t.scale), list(t.offset)) for t in spec.action.terms])
    m["source"] = {"config": {"env": {"pos_error_integral_limit": 0.03}}}  # what `robolearn export` writes
    ad = CrazyflieAdapter(m, {"goal": [0.0, 0.0, 0.0]}, {"motors"})
    assert ad.integral_limit == 0.03
    names = [t["name"] for t in m["observation"]["terms"]]
    k = m["observation"]["terms"][names.index("pos_error_integral")]["offset"]
    obs, clamped = env.reset(), False
    for i in range(150):
        s = env.sim
        msg = Odometry()
        p, q = s.pos[0].double().numpy(), s.quat[0].double().numpy()  # q: w, x, y, z
        msg.pose.pose.position.x, msg.pose.pose.position.y, msg.pose.pose.position.z = p
        o = msg.pose.pose.orientation
        o.w, o.x, o.y, o.z = q
        rot = quat_to_rotmat(q[1], q[2], q[3], q[0])
        v = rot.T @ s.lin_vel[0].double().numpy()  # Odometry's twist is in the body frame
        msg.twist.twist.linear.x, msg.twist.twist.linear.y, msg.twist.twist.linear.z = v
        ad.now = 100.0 + i * env.step_dt
        mine = ad.observation({"state": msg})[k:k + 3]
        np.testing.assert_allclose(mine, obs["policy"][0, k:k + 3].double().numpy(), atol=1e-5, err_msg=f"step {i}")
        clamped |= bool(np.abs(mine).max() == 0.03)
        obs = env.step(env.expert_action(obs)).obs
    assert clamped  # the run started 0.2 m off: the 0.03 m·s limit was reached
    ad.now += 5.0  # a 5 s gap in the state estimate adds at most 0.1 s of error
    before = ad.integral.copy()
    after = ad.observation({"state": msg})[k:k + 3]
    assert np.abs(after - before).max() <= 0.1 * np.abs(ad.terms({"state": msg})["pos_error"]).max() + 1e-12
    ad.reset_history()  # after a fault or on activation: from 0 again
    assert not ad.observation({"state": msg})[k:k + 3].any()
    with pytest.raises(ConfigError, match="pos_error_integral_limit"):
        CrazyflieAdapter(m, {"pos_error_integral_limit": -1}, {"motors"})


def test_crazyflie_ctbr_goes_out_as_cmd_vel_legacy_and_safe_sequence_lands():
    m = _manifest([("pos_error", 3, "sensor")], [("collective_thrust", 1, [0.265], [0.265]),
                                                 ("body_rates", 3, [6.0] * 3, [0.0] * 3)])
    with pytest.raises(ConfigError, match="'cmd_vel_legacy'"):
        CrazyflieAdapter(m, {}, {"motors"})
    ad = CrazyflieAdapter(m, {"hover_s": 1.0, "land_s": 2.0}, {"cmd_vel_legacy"})
    out = ad.commands(np.array([0.265, 1.0, 0.0, -0.5]), None)["cmd_vel_legacy"]
    assert isinstance(out, Twist)
    assert out.linear.x == pytest.approx(math.degrees(1.0)) and out.angular.z == pytest.approx(math.degrees(-0.5))
    assert out.linear.z == pytest.approx(0.265 / 0.595 * 65535)
    last = np.array([0.3, 0, 0, 0])
    assert ad.safe(0.5, {}, False, last).phase == "hover"
    assert ad.safe(0.5, {}, False, last).physical[0] == pytest.approx(0.265)
    assert ad.safe(1.5, {}, False, last).phase == "land"
    end = ad.safe(3.5, {}, False, last)
    assert end.done and end.physical[0] == pytest.approx(0.0)  # lowest thrust the manifest allows
    assert ad.safe(0.0, {}, False, None).phase == "idle"  # never commanded: never spin up


def test_arm_adapter_holds_measured_position():
    m = _manifest([("joint_pos", 3, "sensor"), ("joint_vel", 3, "sensor")],
                  [("joint_pos_target", 3, [1.0] * 3, [0.0] * 3)])
    ad = ArmAdapter(m, {"joints": JOINTS}, {"forward_command", "trajectory"})
    js = JointState(name=["j2", "j0", "j1"], position=[0.3, 0.1, 0.2], velocity=[3.0, 1.0, 2.0])
    np.testing.assert_allclose(ad.observation({"joint_states": js}), [0.1, 0.2, 0.3, 1.0, 2.0, 3.0])
    safe = ad.safe(0.0, {"joint_states": js}, True, None)
    np.testing.assert_allclose(safe.physical, [0.1, 0.2, 0.3])
    cmds = ad.commands(safe.physical, None)
    assert list(cmds["forward_command"].data) == pytest.approx([0.1, 0.2, 0.3])
    assert list(cmds["trajectory"].joint_names) == JOINTS
    with pytest.raises(ConfigError, match="'ee_pose'"):
        ArmAdapter(_manifest([("ee_pose", 7, "sensor")], [("joint_pos_target", 3, [1.0] * 3, [0.0] * 3)]),
                   {"joints": JOINTS}, {"forward_command"})


def test_legged_adapter_gravity_and_damping():
    m = _manifest([("base_ang_vel", 3, "sensor"), ("projected_gravity", 3, "sensor"), ("joint_pos_rel", 3, "sensor"),
                   ("joint_vel", 3, "sensor"), ("velocity_command", 3, "sensor"), ("last_action", 3, "last_action")],
                  [("joint_pos_target", 3, [0.5] * 3, [0.1, 0.2, 0.3])])
    ad = LeggedAdapter(m, {"joints": JOINTS, "default_joint_pos": [0.1, 0.2, 0.3], "kp": 30.0, "kd": 1.0},
                       {"joint_command"})
    imu = Imu()
    imu.orientation.x, imu.orientation.w = math.sin(math.pi / 4), math.cos(math.pi / 4)  # roll +90°
    js = JointState(name=JOINTS, position=[0.1, 0.2, 0.4], velocity=[0.0, 0.0, 1.0])
    obs = ad.observation({"joint_states": js, "imu": imu, "cmd_vel": None})
    np.testing.assert_allclose(obs[3:6], [0.0, -1.0, 0.0], atol=1e-12)  # gravity along body -y after +90° roll
    np.testing.assert_allclose(obs[6:9], [0.0, 0.0, 0.1], atol=1e-12)
    safe = ad.safe(0.0, {}, True, None)
    msg = ad.commands(safe.physical, None, safe)["joint_command"]
    q, kp, kd = np.reshape(msg.data, (3, 3))
    np.testing.assert_allclose(q, [0.1, 0.2, 0.4])
    assert (kp == 0).all() and (kd == 1.0).all()
    assert [d.label for d in msg.layout.dim] == ["field", "joint"]


def test_topic_map_errors_name_the_key(tmp_path):
    assert load_topic_map(CONFIG / "crazyflie_rpm.yaml").adapter is CrazyflieAdapter
    for cfg in ("arm.yaml", "legged.yaml", "crazyflie_ctbr.yaml"):
        load_topic_map(CONFIG / cfg)
    bad = tmp_path / "m.yaml"
    bad.write_text("adapter: crazyflie\ninputs:\n  odom: {topic: /x, type: nav_msgs/msg/Odometry}\n")
    with pytest.raises(ConfigError, match="inputs.odom: unknown slot"):
        load_topic_map(bad)
    bad.write_text("adapter: crazyflie\ninputs:\n  state: {topic: /x, type: sensor_msgs/msg/Imu}\n")
    with pytest.raises(ConfigError, match="'sensor_msgs/msg/Imu' is not accepted for slot 'state'"):
        load_topic_map(bad)
    bad.write_text("adapter: rover\n")
    with pytest.raises(ConfigError, match="key 'adapter'"):
        load_topic_map(bad)


@pytest.fixture(scope="module")
def saturated(tmp_path_factory) -> PolicyRuntime:
    terms = (ObsTerm("pos_error", 3, "m"), ObsTerm("rotation_matrix", 9), ObsTerm("lin_vel", 3, "m/s"),
             ObsTerm("ang_vel", 3, "rad/s"))
    spec = TaskSpec("quadrotor-hover", {"policy": terms}, ActionSpec(
        (ActionTerm("motor_rpm", 4, "rpm", (7227.0,) * 4, (14475.0,) * 4),), rate_hz=100.0, low=-0.5, high=0.5))
    policy = MLPPolicy(18, 4, hidden=(8,))
    with torch.no_grad():
        policy.mlp.linears[-1].bias.copy_(torch.tensor([5.0, -5.0, 5.0, 0.0]))
    art = export_policy(policy, spec, tmp_path_factory.mktemp("sat") / "a", source={}, targets=())
    return PolicyRuntime.load(art, backend="torch")


def test_core_clamps_and_state_machine(saturated):
    core = Core(saturated, load_topic_map(CONFIG / "crazyflie_rpm.yaml"), rate_hz=100.0, watchdog_periods=2,
                action_low=None, action_high=0.25, clock_jump_s=0.25)
    assert core.tick(0.0, 0.0, compute=True) is None  # inactive: publishes nothing
    core.activate(0.0)
    assert core.tick(0.01, 0.01, compute=True) is None and core.state == FAULT  # never heard the robot: silent
    msg = Odometry()
    msg.pose.pose.orientation.w = 1.0
    msg.pose.pose.position.z = 1.0  # flying (a fault on the ground ends in motors off at once)
    core.on_message("state", msg, 0.02)
    cmd, safe = core.tick(0.02, 0.02, compute=True)
    assert core.state == ACTIVE and safe is None
    np.testing.assert_allclose(cmd[:3], [14475 + 0.25 * 7227, 14475 - 0.5 * 7227, 14475 + 0.25 * 7227], rtol=1e-9)
    core.on_watchdog("state", 0.05)
    assert core.state == FAULT and "no message for 2 control periods" in core.fault
    core.on_message("state", msg, 0.06)
    core.tick(0.06, 0.06, compute=True)
    assert core.state == ACTIVE
    core.tick(0.57, 0.07, compute=True)  # ROS time jumped 0.5 s ahead of the monotonic clock
    assert core.state == FAULT and core.fault.startswith("clock jumped")
    core.estop(0.6)
    core.on_message("state", msg, 0.61)
    cmd, safe = core.tick(0.61, 0.11, compute=True)
    assert core.state == ESTOP and safe is not None
    assert (cmd >= core.phys_lo).all() and (cmd <= core.phys_hi).all()
    core.clear_estop(0.7)
    assert core.state == INACTIVE


def test_core_takeoff_land_and_motors_off(saturated):
    """takeoff ramps the goal up; land flies it down with the policy, then motors off and inactive; the e-stop
    and the end of the watchdog's safe landing switch the motors off too."""
    tmap = load_topic_map(CONFIG / "crazyflie_rpm.yaml")
    core = Core(saturated, tmap, rate_hz=100.0, watchdog_periods=2, action_low=None, action_high=None,
                clock_jump_s=0.25)
    msg = Odometry()
    msg.pose.pose.orientation.w = 1.0  # on the ground
    assert core.takeoff(0.0).startswith("no state estimate")
    core.on_message("state", msg, 0.0)
    assert core.takeoff(0.0) == "taking off" and core.state == ACTIVE
    core.adapter.now = 1.0  # half way through the 2 s ramp to the goal (0, 0, 1)
    assert core.adapter.observation({"state": msg})[2] == pytest.approx(-0.5)
    msg.pose.pose.position.z = 1.0
    core.on_message("state", msg, 3.0)
    core.tick(3.0, 3.0, compute=True)
    assert core.land(3.0) == "landing" and core.state == LANDING
    core.adapter.now = 4.0  # 1 s into the descent at land_speed 0.3 m/s
    assert core.adapter.observation({"state": msg})[2] == pytest.approx(0.3)
    cmd, safe = core.tick(4.0, 4.0, compute=True)
    assert safe is None and core.state == LANDING  # the policy still flies
    msg.pose.pose.position.z = 0.02  # touched down
    core.on_message("state", msg, 7.0)
    cmd, safe = core.tick(7.0, 7.0, compute=True)
    assert safe.motors_off and core.state == INACTIVE and core.counts["motors_off"] == 1
    (out,) = core.adapter.commands(cmd, None, safe).values()
    assert list(out.velocity) == [0.0] * 4  # the explicit motors-off message
    assert core.tick(7.01, 7.01, compute=True) is None  # inactive: nothing more
    # the landing that never touches down: after land_s + land_timeout_s the open-loop descent takes over
    msg.pose.pose.position.z = 1.0
    core.on_message("state", msg, 8.0)
    core.takeoff(8.0)
    core.land(8.0)
    core.on_message("state", msg, 16.0)
    cmd, safe = core.tick(16.0, 16.0, compute=True)
    assert core.state == STOPPING and safe.phase == "land" and "landing timed out" in core.fault
    # e-stop: motors off at once, latched
    core.activate(20.0)
    core.on_message("state", msg, 20.0)
    core.estop(20.0)
    cmd, safe = core.tick(20.0, 20.0, compute=True)
    assert core.state == ESTOP and safe.motors_off
    # watchdog fault: hover, descend, then motors off and the node inactive (no take-off by itself)
    core.clear_estop(21.0)
    core.activate(21.0)
    core.tick(21.0, 21.0, compute=True)
    core.on_watchdog("state", 21.05)
    phases = [core.tick(t, t, compute=True)[1].phase for t in (21.1, 22.5, 25.1)]
    assert phases == ["hover", "land", "landed"] and core.state == INACTIVE


def test_action_queue_plain_and_temporal_ensembling():
    q = ActionQueue(action_dim=1, chunk=3)
    assert q.needs_chunk
    q.push(np.array([[1.0], [2.0], [3.0]]))
    assert [q.pop()[0] for _ in range(3)] == [1.0, 2.0, 3.0] and q.needs_chunk
    e = ActionQueue(action_dim=1, chunk=3, ensemble_coef=0.5)
    e.push(np.array([[0.0], [10.0], [20.0]]))
    assert e.pop()[0] == 0.0
    e.push(np.array([[12.0], [22.0], [32.0]]))
    w = np.exp(-0.5 * np.arange(2))
    assert e.pop()[0] == pytest.approx((w[0] * 10.0 + w[1] * 12.0) / w.sum())  # oldest prediction weighs most
    e.push(np.array([[24.0], [34.0], [44.0]]))
    w = np.exp(-0.5 * np.arange(3))
    assert e.pop()[0] == pytest.approx((w @ [20.0, 22.0, 24.0]) / w.sum())
    e.push(np.array([[36.0], [46.0], [56.0]]))
    w = np.exp(-0.5 * np.arange(3))
    assert e.pop()[0] == pytest.approx((w @ [32.0, 34.0, 36.0]) / w.sum())  # the first chunk has expired
    with pytest.raises(InvalidInputError, match="NaN"):
        e.push(np.array([[np.nan], [0.0], [0.0]]))


@pytest.mark.parametrize("mode", ["rpm", "ctbr"])
def test_commands_round_trip_through_the_simulated_robot(mode):
    """What the Crazyflie adapter publishes is the action the simulated drone applies (both action modes)."""
    from robolearn_ros.sim_robot_node import QuadrotorSimRobot

    params = {"init_scale": 0.0, "action_mode": mode, "randomize": False, "sim_dt": 0.0, "seed": 0,
              "max_thrust_n": 0.595, "origin": [0.0, 0.0, 1.0], "frame_id": "cf1"}
    robot = QuadrotorSimRobot(None, "quadrotor-hover", params)
    act = robot.env.spec.action.to_dict()
    terms = [{**t, "scale": list(t["scale"]), "offset": list(t["offset"])} for t in act["terms"]]
    m = {"observation": {"dim": 3, "terms": [{"name": "pos_error", "dim": 3, "offset": 0, "unit": "m"}]},
         "action": {**act, "terms": terms}}
    ad = CrazyflieAdapter(m, {}, {"motors" if mode == "rpm" else "cmd_vel_legacy"})
    a = np.array([0.3, -0.2, 0.1, -0.4])
    (msg,) = ad.commands(ad.offset + ad.scale * a, None).values()
    robot.on_command(msg)
    np.testing.assert_allclose(robot.action, a, atol=1e-4)  # PWM thrust: 16-bit resolution
    robot.step()
    odom = robot.state_msg(Odometry())
    assert odom.pose.pose.position.z == pytest.approx(1.0, abs=0.01) and odom.child_frame_id == "cf1"
