"""sim_robot_node for the arm and the quadruped: the full loop with policy_node over real DDS, and the robots'
command handling in-process (real MuJoCo, no DDS)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from ros_harness import CONFIG, spin_until

from robolearn.envs import registry
from robolearn.export import export_policy
from robolearn.networks.mlp import MLPPolicy

rclpy = pytest.importorskip("rclpy")
from geometry_msgs.msg import PoseStamped  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.qos import QoSDurabilityPolicy, QoSProfile  # noqa: E402
from robolearn_ros.sim_robot_node import SIM_ROBOTS, ArmSimRobot, LeggedSimRobot  # noqa: E402
from std_msgs.msg import Float64MultiArray, String  # noqa: E402
from std_srvs.srv import SetBool  # noqa: E402

LATCHED = QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
GOAL = (0.5, 0.15, 0.3)


@pytest.fixture(scope="module")
def arm_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A behaviour-cloned arm-reach policy (joint position steps; ~10-15 s to train)."""
    from arm_artifact import make_arm_artifact

    return make_arm_artifact(tmp_path_factory.mktemp("arm") / "artifact")


def standing_artifact(path: Path) -> Path:
    """A quadruped-walk artifact whose MLP outputs a = 0: the default pose under the task's PD gains."""
    cfg = registry.cfg_class("quadruped-walk")()
    spec = registry.env_class("quadruped-walk").make_spec(cfg)
    d = sum(t.dim for t in spec.obs_terms["policy"])
    policy = MLPPolicy(d, spec.action.dim, hidden=(32, 32), output="tanh")
    with torch.no_grad():
        policy.mlp.linears[-1].weight.zero_()
        policy.mlp.linears[-1].bias.zero_()
    return export_policy(policy, spec, path, source={"kind": "test-zero-action"})


class Samples:
    """Distinct messages on one topic (a sim running late republishes a state; one entry per physics step)."""

    def __init__(self, node: object, cls: type, topic: str, value) -> None:
        self.values: list[tuple[float, ...]] = []
        self.value = value
        self.sub = node.create_subscription(cls, topic, self._on, 50)
        self.node = node

    def _on(self, m: object) -> None:
        v = self.value(m)
        if not self.values or v != self.values[-1]:
            self.values.append(v)

    def close(self) -> None:
        self.node.destroy_subscription(self.sub)


# ------------------------------------------------------------------------------------------------------ full loop
def test_sim_arm_and_policy_node_reach_the_goal(launch, test_node, arm_artifact):
    """sim_robot_node (arm-reach) ↔ policy_node (BC arm policy) over DDS brings the TCP to the goal and holds it.

    The sim publishes joint states and the goal; policy_node (arm adapter, forward position controller) publishes
    joint targets; the TCP pose the sim publishes (forward kinematics) is the measure.
    """
    sim = launch("robolearn-sim-robot-node", task="arm-reach", real_time_factor=0.5, goal=list(GOAL))
    tcp = Samples(test_node, PoseStamped, "/tcp_pose", lambda m: (m.pose.position.x, m.pose.position.y,
                                                                   m.pose.position.z))
    try:
        # the sim holds its initial state until the first command: see it before the policy starts
        assert spin_until(test_node, lambda: len(tcp.values) >= 1, timeout=30.0), sim.output()
        pol = launch("robolearn-policy-node", artifact=arm_artifact, topic_map=CONFIG / "arm.yaml",
                     trigger="input", rate_hz=50.0, watchdog_periods=10)
        assert spin_until(test_node, lambda: len(tcp.values) >= 150, timeout=60.0), pol.output()  # 3 s of sim
    finally:
        tcp.close()
    err = np.linalg.norm(np.asarray(tcp.values) - np.asarray(GOAL), axis=1)
    assert err[0] > 0.2, f"started {err[0]:.3f} m from the goal: nothing to reach"
    assert err[-25:].max() < 0.03, (f"TCP not at the goal: {err[-25:].max():.3f} m over the last 0.5 s; error "
                                    f"every 0.5 s: {np.round(err[::25], 3)}")


def test_sim_quadruped_stands_and_the_watchdog_damps_it(launch, test_node, tmp_path):
    """sim_robot_node (quadruped-walk) ↔ policy_node (zero-action MLP) keeps the trunk up; when the joint states
    stop, the watchdog's damping (kp = 0) reaches the sim as the gains it applies: the robot sinks."""
    launch("robolearn-sim-robot-node", task="quadruped-walk", real_time_factor=0.5)
    pol = launch("robolearn-policy-node", artifact=standing_artifact(tmp_path / "stand"),
                 topic_map=CONFIG / "legged.yaml", trigger="input", rate_hz=50.0, watchdog_periods=10)
    height = Samples(test_node, Odometry, "/odom", lambda m: (m.pose.pose.position.z,))
    cmds = Samples(test_node, Float64MultiArray, "/joint_command", lambda m: tuple(m.data))
    states: list[str] = []
    state_sub = test_node.create_subscription(String, "/policy_node/state", lambda m: states.append(m.data), LATCHED)
    try:
        assert spin_until(test_node, lambda: len(height.values) >= 150, timeout=60.0), pol.output()  # 3 s of sim
        h = np.asarray(height.values)[:, 0]
        assert 0.2 < h.min() and h.max() < 0.4, f"trunk height left the band: {h.min():.3f}..{h.max():.3f} m"
        assert abs(h[-25:].mean() - 0.255) < 0.03, f"not standing at the default pose: {h[-25:].mean():.3f} m"
        cmd = np.asarray(cmds.values[-1]).reshape(3, 12)
        assert np.allclose(cmd[1], 40.0) and np.allclose(cmd[2], 1.0)  # the topic map's (the task's) gains
        # joint states stop (an encoder-bus dropout): the watchdog trips into damping, the sim applies kp = 0
        cli = test_node.create_client(SetBool, "/sim_robot_node/mute_joint_states")
        assert cli.wait_for_service(timeout_sec=20.0)
        fut = cli.call_async(SetBool.Request(data=True))
        rclpy.spin_until_future_complete(test_node, fut, timeout_sec=10.0)
        assert spin_until(test_node, lambda: states and "input 'joint_states'" in states[-1], 10.0), states[-3:]
        n = len(height.values)
        assert spin_until(test_node, lambda: len(height.values) >= n + 50, timeout=30.0)  # 1 s of sim
        cmd = np.asarray(cmds.values[-1]).reshape(3, 12)
        assert np.allclose(cmd[1], 0.0) and np.allclose(cmd[2], 1.0), cmd  # damping: kp 0, kd damping_kd
        assert height.values[-1][0] < 0.15, f"damped robot did not sink: {height.values[-1][0]:.3f} m"
    finally:
        height.close()
        cmds.close()
        test_node.destroy_subscription(state_sub)


# --------------------------------------------------------------------------------------- the robots, in-process
def _params(cls: type, **kw: object) -> dict[str, object]:
    return {**cls.PARAMS, "seed": 0, **kw}


def test_arm_adapter_reads_the_goal_from_its_input_or_option():
    from geometry_msgs.msg import PointStamped
    from robolearn_ros.adapters import ArmAdapter
    from robolearn_ros.messages import ConfigError
    from sensor_msgs.msg import JointState

    def manifest(obs: list[tuple[str, int]]) -> dict:
        terms, o = [], 0
        for name, dim in obs:
            terms.append({"name": name, "dim": dim, "offset": o, "unit": ""})
            o += dim
        return {"observation": {"dim": o, "terms": terms}, "robot": "test",
                "action": {"dim": 2, "low": -1.0, "high": 1.0, "terms": [
                    {"name": "joint_pos_delta", "dim": 2, "scale": [0.1, 0.1], "offset": [0.0, 0.0], "unit": ""}]}}

    m = manifest([("joint_pos", 2), ("goal_pos", 3)])
    js = JointState(name=["a", "b"], position=[0.1, 0.2], velocity=[0.0, 0.0])
    ad = ArmAdapter(m, {"joints": ["a", "b"]}, {"forward_command"})
    with pytest.raises(ValueError, match="no goal yet"):  # policy_node: invalid input → safe action, no command
        ad.observation({"joint_states": js, "goal": None})
    point = PointStamped()
    point.point.x, point.point.y, point.point.z = 0.5, 0.1, 0.3
    np.testing.assert_allclose(ad.observation({"joint_states": js, "goal": point}), [0.1, 0.2, 0.5, 0.1, 0.3])
    pose = PoseStamped()
    pose.pose.position.x = 0.4
    np.testing.assert_allclose(ad.observation({"joint_states": js, "goal": pose})[2:], [0.4, 0.0, 0.0])
    ad = ArmAdapter(m, {"joints": ["a", "b"], "goal": [0.6, 0.0, 0.2]}, {"forward_command"})
    np.testing.assert_allclose(ad.observation({"joint_states": js})[2:], [0.6, 0.0, 0.2])
    with pytest.raises(ConfigError, match="option 'goal'"):
        ArmAdapter(m, {"joints": ["a", "b"], "goal": [0.6]}, {"forward_command"})
    # a policy without goal_pos does not need one
    plain = ArmAdapter(manifest([("joint_pos", 2)]), {"joints": ["a", "b"]}, {"forward_command"})
    np.testing.assert_allclose(plain.observation({"joint_states": js}), [0.1, 0.2])


def test_sim_robots_are_registered_by_task():
    assert SIM_ROBOTS["arm-reach"] is ArmSimRobot and SIM_ROBOTS["quadruped-walk"] is LeggedSimRobot


def test_arm_sim_robot_maps_forward_and_trajectory_commands_to_joint_targets():
    robot = ArmSimRobot(None, "arm-reach", _params(ArmSimRobot))
    target = np.asarray(robot.home) + np.array([0.3, -0.2, 0.1, 0.2, 0.0, -0.1, 0.2])
    robot.on_command(SimpleNamespace(data=target.tolist()))
    for _ in range(100):
        robot.step()
    q = robot.env.sim.qpos[0, :7].double().numpy()
    assert np.abs(q - target).max() < 0.02, q - target
    # a trajectory with the joints in another order: matched by name, final point
    names = robot.names[:7][::-1]
    point = SimpleNamespace(positions=list(np.asarray(robot.home)[::-1]))
    robot.on_command(SimpleNamespace(joint_names=names, points=[SimpleNamespace(positions=[0.0] * 7), point]))
    for _ in range(100):
        robot.step()
    assert np.abs(robot.env.sim.qpos[0, :7].double().numpy() - robot.home).max() < 0.02
    before = robot.action.copy()
    robot.on_command(SimpleNamespace(data=[float("nan")] * 7))  # non-finite or wrong size: dropped
    robot.on_command(SimpleNamespace(data=[0.0] * 6))
    assert np.array_equal(robot.action, before)


def test_arm_task_artifact_sees_through_the_adapter_what_it_saw_in_training(tmp_path):
    """An artifact of the arm-reach task itself (joint_pos + gripper actions; FK, gripper and goal terms): the
    arm adapter builds from the sim robot's messages the observation the task computes, and its commands drive
    the sim robot's joints and gripper."""
    from robolearn_ros.topic_map import load_topic_map

    from robolearn.export.artifact import read_manifest

    env = registry.make("arm-reach", num_envs=1, action_mode="joint_pos", backend="mujoco_cpu")
    d = sum(t.dim for t in env.spec.obs_terms["policy"])
    art = export_policy(MLPPolicy(d, env.spec.action.dim, hidden=(16,)), env.spec, tmp_path / "a",
                        source={"kind": "test"})
    tmap = load_topic_map(CONFIG / "arm.yaml")
    ad = tmap.adapter(read_manifest(art), tmap.options, set(tmap.outputs))
    robot = ArmSimRobot(None, "arm-reach", _params(ArmSimRobot, goal=list(GOAL)))
    physical = ad.offset + ad.scale * np.array([0.3, -0.2, 0.1, 0.2, 0.0, -0.1, 0.2, -0.5])
    cmds = ad.commands(physical, None)
    robot.on_command(cmds["forward_command"])
    robot.on_gripper(cmds["gripper_command"])
    np.testing.assert_allclose(robot.action, [0.3, -0.2, 0.1, 0.2, 0.0, -0.1, 0.2, -0.5], atol=1e-6)
    for _ in range(30):
        robot.step()
    obs = ad.observation(robot.messages(0.0))
    with torch.no_grad():
        want = robot.env._observe()["policy"][0].double().numpy()
    n = d - env.spec.action.dim  # all but last_action (the adapter's own history)
    np.testing.assert_allclose(obs[:n], want[:n], atol=1e-5)
    assert np.abs(obs[:7] - env.home.numpy()).max() > 0.1  # the arm moved: not the trivial home pose


def test_legged_sim_robot_applies_the_gains_it_is_sent_within_limits():
    robot = LeggedSimRobot(None, "quadruped-walk", _params(LeggedSimRobot, max_kp=60.0))
    pose = robot.env.default_pose.numpy()
    robot.on_command(SimpleNamespace(data=np.concatenate([pose, np.full(12, 500.0), np.full(12, 2.0)]).tolist()))
    robot.step()
    assert np.allclose(robot.gains[0], 60.0) and np.allclose(robot.gains[1], 2.0)  # kp clamped to max_kp
    for _ in range(100):
        robot.step()
    assert 0.2 < float(robot.env.base_pos[0, 2]) < 0.35 and robot.crashes == 0
    robot.on_command(SimpleNamespace(data=np.concatenate([pose, np.zeros(12), np.ones(12)]).tolist()))
    for _ in range(100):
        robot.step()
    assert float(robot.env.base_pos[0, 2]) < 0.15 and robot.crashes == 1  # kp = 0: nothing holds it up


def test_quadruped_artifact_sees_through_the_adapter_what_it_saw_in_training(tmp_path):
    """The legged adapter (config/legged.yaml) builds from the sim robot's JointState and Imu and a cmd_vel the
    observation quadruped-walk computes; its [q; kp; kd] command moves the sim's joint targets."""
    from geometry_msgs.msg import Twist
    from robolearn_ros.topic_map import load_topic_map

    from robolearn.export.artifact import read_manifest

    art = standing_artifact(tmp_path / "stand")
    tmap = load_topic_map(CONFIG / "legged.yaml")
    ad = tmap.adapter(read_manifest(art), tmap.options, set(tmap.outputs))
    robot = LeggedSimRobot(None, "quadruped-walk", _params(LeggedSimRobot))
    a = np.tile([0.2, -0.3, 0.4], 4)
    robot.on_command(ad.commands(ad.offset + ad.scale * a, None)["joint_command"])
    ad.record(a)
    twist = Twist()
    twist.linear.x, twist.linear.y, twist.angular.z = 0.5, -0.1, 0.3
    robot.on_cmd_vel(twist)
    env = robot.env
    env.action_buffer[:] = torch.as_tensor(a, dtype=torch.float32)  # the task's own last action, as applied
    env.last_actions[:] = torch.as_tensor(a, dtype=torch.float32)
    for _ in range(10):
        robot.step()
    msgs = robot.messages(0.0)
    obs = ad.observation({"joint_states": msgs["joint_states"], "imu": msgs["imu"], "cmd_vel": twist})
    with torch.no_grad():
        want = env._observe()["policy"][0].double().numpy()
    np.testing.assert_allclose(obs, want, atol=1e-5)
    np.testing.assert_allclose(robot.target[0].numpy(), ad.offset + ad.scale * a, atol=1e-6)
    robot.mute = True
    assert "joint_states" not in robot.messages(0.0)


def test_sim_robot_parameters_fail_with_one_line():
    from robolearn_ros.messages import ConfigError

    with pytest.raises(ConfigError, match="parameter 'goal'"):
        ArmSimRobot(None, "arm-reach", _params(ArmSimRobot, goal=[0.5, 0.0]))
    with pytest.raises(ConfigError, match="max_kp"):
        LeggedSimRobot(None, "quadruped-walk", _params(LeggedSimRobot, max_kp=0.0))


def test_sim_launch_files_compile():
    """The launch files need the ROS 2 launch tools to run (not installed here); at least they must parse and
    start the entry points the package installs."""
    launch_dir = CONFIG.parent / "launch"
    for name in ("sim_hover", "sim_arm", "sim_legged"):
        src = (launch_dir / f"{name}.launch.py").read_text()
        compile(src, name, "exec")
        assert 'executable="sim_robot_node"' in src and 'executable="policy_node"' in src


@pytest.mark.parametrize(("params", "says"), [
    (["task:=nope"], "simulated robots: ['arm-lift'"),
    (["task:=arm-reach", "goal:=[1, 0, 0]"], "parameter 'goal' must be a list of floats"),
    (["task:=quadruped-walk", "max_kp:=0.0"], "max_kp"),
])
def test_sim_robot_node_refuses_bad_parameters_in_one_line(ros_env, params, says):
    import subprocess

    from ros_harness import BIN

    args = [str(BIN / "robolearn-sim-robot-node"), "--ros-args"]
    for p in params:
        args += ["-p", p]
    r = subprocess.run(args, env=ros_env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


# ------------------------------------------------------------------------------------------------ ee_delta (arm)
ARM_MJCF = Path(__file__).resolve().parents[2] / "sim_assets" / "franka_arm" / "scene_reach.xml"  # radians


def ee_delta_artifact(path: Path, action: tuple[float, ...]) -> Path:
    """An arm-reach artifact in the task's ee_delta mode whose MLP always outputs `action` (normalized)."""
    cfg = registry.cfg_class("arm-reach")(action_mode="ee_delta")
    spec = registry.env_class("arm-reach").make_spec(cfg)
    d = sum(t.dim for t in spec.obs_terms["policy"])
    policy = MLPPolicy(d, spec.action.dim, hidden=(8,), output="tanh")
    with torch.no_grad():
        policy.mlp.linears[-1].weight.zero_()
        policy.mlp.linears[-1].bias.copy_(torch.atanh(torch.tensor(action).clamp(-0.999, 0.999)))
    return export_policy(policy, spec, path, source={"kind": "test-constant-ee-delta"})


def ee_topic_map(tmp_path: Path) -> Path:
    out = tmp_path / "arm_ee.yaml"
    out.write_text((CONFIG / "arm.yaml").read_text() + f"  model: {ARM_MJCF}\n")
    return out


def test_arm_adapter_turns_tcp_deltas_into_joint_targets_by_ik(tmp_path):
    from robolearn_ros.adapters import ArmAdapter
    from robolearn_ros.messages import ConfigError
    from robolearn_ros.topic_map import load_topic_map
    from sensor_msgs.msg import JointState

    from robolearn.core.kinematics import MjArmKinematics
    from robolearn.envs.manipulation.arm import HOME
    from robolearn.export.artifact import read_manifest

    m = read_manifest(ee_delta_artifact(tmp_path / "ee", (0.0,) * 7))
    tmap = load_topic_map(ee_topic_map(tmp_path))
    ad = ArmAdapter(m, tmap.options, set(tmap.outputs))
    names = tmap.options["joints"] + ["finger_left", "finger_right"]
    q = np.asarray(HOME, dtype=np.float64) + 0.1
    js = JointState(name=names, position=[*q, 0.02, 0.02], velocity=[0.0] * 9)
    ad.terms({"joint_states": js, "goal": PoseStamped(), "tcp_pose": PoseStamped()})
    delta = np.array([0.01, -0.005, 0.02, 0.0, 0.0, 0.0, 0.04])
    cmds = ad.commands(delta, None)
    kin = MjArmKinematics(ARM_MJCF, tmap.options["joints"])
    (p0, r0), (p1, r1) = kin.tcp(q), kin.tcp(np.asarray(cmds["forward_command"].data))
    # the targets put the TCP where it was told (damping λ = 0.05 and first order: a few % short)
    np.testing.assert_allclose(p1 - p0, delta[:3], rtol=0.1, atol=1e-3)
    assert np.abs(r1 - r0).max() < 5e-3 and list(cmds["gripper_command"].data) == [0.04]
    hold = ad.safe(0.0, {}, False, delta)
    np.testing.assert_allclose(ad.commands(hold.physical, None)["forward_command"].data, q)  # safe: hold still
    with pytest.raises(ConfigError, match="need option 'model'"):
        ArmAdapter(m, {**tmap.options, "model": ""}, set(tmap.outputs))
    with pytest.raises(ConfigError, match="option 'model': .*no site 'nose'"):
        ArmAdapter(m, {**tmap.options, "tcp_site": "nose"}, set(tmap.outputs))


def test_policy_node_moves_the_sim_arm_tcp_by_ee_deltas(launch, test_node, tmp_path):
    """A constant TCP-delta policy through policy_node (IK at the measured joints) and sim_robot_node (joint
    targets) moves the TCP along the commanded direction, as the task's own ee_delta mode does.

    (How far per step depends on the servos following the targets and, over DDS, on when each command lands; the
    IK's step size itself is checked without DDS above.)"""
    action = (0.1, -0.1, 0.15, 0.0, 0.0, 0.0, 1.0)
    want = np.array(action[:3]) / np.linalg.norm(action[:3])
    sim = launch("robolearn-sim-robot-node", task="arm-reach", real_time_factor=0.5, goal=list(GOAL))
    tcp = Samples(test_node, PoseStamped, "/tcp_pose", lambda m: (m.pose.position.x, m.pose.position.y,
                                                                   m.pose.position.z))
    try:
        assert spin_until(test_node, lambda: len(tcp.values) >= 1, timeout=30.0), sim.output()
        pol = launch("robolearn-policy-node", artifact=ee_delta_artifact(tmp_path / "ee", action),
                     topic_map=ee_topic_map(tmp_path), trigger="input", rate_hz=50.0, watchdog_periods=10)
        moved = lambda: np.linalg.norm(np.subtract(tcp.values[-1], tcp.values[0])) > 0.05  # noqa: E731
        assert spin_until(test_node, moved, timeout=60.0), pol.output()
    finally:
        tcp.close()
    p = np.asarray(tcp.values)
    d = p[-1] - p[0]
    cos = float(d @ want / np.linalg.norm(d))
    assert cos > 0.97, f"TCP moved {d}, commanded direction {want} (cos {cos:.3f})"
