"""A whole Crazyflie flight over real DDS: takeoff from the ground, hover, land, motors off.

sim_robot_node (quadrotor-hover, `start_on_ground`: the drone sits on a floor with its motors stopped) and
policy_node (the trained hover artifact, `autostart:=false`) as console entry points; the test is the operator
calling `/policy_node/takeoff` and `/policy_node/land`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from ros_harness import CONFIG, spin_until

rclpy = pytest.importorskip("rclpy")
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.qos import QoSDurabilityPolicy, QoSProfile  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

RPM_TO_RAD_S = 2 * math.pi / 60
GOAL = np.array([0.0, 0.0, 1.0])


class Flight:
    """The operator's view: odometry (one entry per physics step), motor commands, node state, services."""

    def __init__(self, node: object) -> None:
        self.node = node
        self.pos: list[np.ndarray] = []
        self.cmds: list[np.ndarray] = []
        self.states: list[str] = []
        latched = QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
        self.subs = [
            node.create_subscription(Odometry, "/cf1/odom", self._odom, 50),
            node.create_subscription(JointState, "/cf1/cmd_motors", lambda m: self.cmds.append(np.array(m.velocity)),
                                     50),
            node.create_subscription(String, "/policy_node/state", lambda m: self.states.append(m.data), latched),
        ]

    def _odom(self, m: Odometry) -> None:
        p = m.pose.pose.position
        p = np.array([p.x, p.y, p.z])
        if not self.pos or not np.array_equal(p, self.pos[-1]):  # the sim publishes a frozen state more than once
            self.pos.append(p)

    def state(self) -> str:
        return self.states[-1] if self.states else ""

    def call(self, name: str) -> str:
        cli = self.node.create_client(Trigger, f"/policy_node/{name}")
        assert cli.wait_for_service(timeout_sec=30.0), f"service {name} never appeared"
        fut = cli.call_async(Trigger.Request())
        rclpy.spin_until_future_complete(self.node, fut, timeout_sec=10.0)
        self.node.destroy_client(cli)
        return fut.result().message

    def close(self) -> None:
        for s in self.subs:
            self.node.destroy_subscription(s)


def test_takeoff_hover_land_motors_off(launch, test_node, hover_artifact, tmp_path):
    """Takeoff ramps the goal from the ground to 1 m, the drone hovers there, land brings it down, motors stop."""
    topic_map = tmp_path / "crazyflie.yaml"
    topic_map.write_text((CONFIG / "crazyflie_rpm.yaml").read_text() + "  takeoff_s: 2.0\n  land_speed: 0.5\n")
    sim = launch("robolearn-sim-robot-node", task="quadrotor-hover", action_mode="rpm", real_time_factor=0.5,
                 start_on_ground=True, seed=3)
    pol = launch("robolearn-policy-node", artifact=hover_artifact, topic_map=topic_map, trigger="input",
                 rate_hz=50.0, watchdog_periods=10, autostart=False)
    fl = Flight(test_node)
    try:
        assert spin_until(test_node, lambda: fl.pos and fl.state() == "inactive", 60.0), pol.output()
        assert abs(fl.pos[-1][2]) < 1e-6 and not fl.cmds  # on the ground, nothing commanded

        assert fl.call("takeoff") == "taking off"
        n0 = len(fl.pos)
        # the 2 s ramp, then hold the goal: within 5 cm over 0.5 s (50 physics steps of 0.01 s; the sim runs at
        # half real time), reached within 8 s of sim time
        def hovering() -> bool:
            return len(fl.pos) >= n0 + 250 and np.linalg.norm(np.asarray(fl.pos[-50:]) - GOAL, axis=1).max() < 0.05

        spin_until(test_node, lambda: hovering() or len(fl.pos) >= n0 + 800, 150.0)
        flight = np.asarray(fl.pos[n0:])
        hover_err = np.linalg.norm(flight[-50:] - GOAL, axis=1)
        assert hovering(), f"not hovering at the goal after {len(flight)} steps: error up to {hover_err.max():.3f} m"
        assert flight[:, 2].max() < 1.3 and (np.linalg.norm(flight[:, :2], axis=1) < 0.2).all(), "wild takeoff"
        assert fl.state() == "active"

        assert fl.call("land") == "landing"
        n1 = len(fl.pos)
        assert spin_until(test_node, lambda: fl.state() == "inactive", 90.0), (fl.states[-3:], pol.output()[-2000:])
        # the state and the command travel on two topics: on a loaded machine the state can arrive first
        spin_until(test_node, lambda: np.array_equal(fl.cmds[-1], np.zeros(4)), 10.0)
        assert np.array_equal(fl.cmds[-1], np.zeros(4)), f"last command {fl.cmds[-1]} is not motors off"
        n2, n_cmds = len(fl.pos), len(fl.cmds)
        assert spin_until(test_node, lambda: len(fl.pos) >= n2 + 30 or sim.p.poll() is not None, 30.0)
        landing = np.asarray(fl.pos[n1:])
        assert (np.diff(landing[:, 2]) < 0.02).all(), "climbed while landing"
        assert np.linalg.norm(fl.pos[-1][:2]) < 0.2, f"landed away from the take-off point: {fl.pos[-1]}"
        # motors off (cut within land_cutoff_z = 5 cm of the floor): it drops to the floor and nothing lifts it again
        after = np.asarray(fl.pos[n2:])[:, 2]
        assert after.max() <= max(after[0], 0.05) and after[-1] < 1e-3, after
        assert not np.any(fl.cmds[n_cmds:]), "a motor command after motors off"
    finally:
        fl.close()
