"""sim_robot_node: a robolearn task behind the real robot's ROS 2 topics, stepping in real time.

    robolearn-sim-robot-node --ros-args -p task:=quadrotor-hover -p action_mode:=rpm

quadrotor-* (ctbr and rpm): publishes the state estimate the Crazyflie adapter reads (`nav_msgs/Odometry` on
`state_topic`, pose in the world frame, twist in the body frame) and takes motor speeds (`sensor_msgs/JointState`
on `motors_topic`, rad/s) or crazyswarm2's rate-mode `cmd_vel_legacy` (`geometry_msgs/Twist`). Physics steps at
the task's `sim_dt` against the wall clock scaled by `real_time_factor` (below 1 where the CPU cannot keep up:
the torch simulator costs a few ms per step at num_envs=1); the state is published at `publish_rate_hz`
(default: the task's control rate × real_time_factor). The last command is held between messages; with
`wait_for_command` (default) physics starts with the first command, so DDS discovery time is not flown open loop.
The world position is the task-frame position plus `origin` (the task's goal is the task-frame origin).

Other robots plug in through `SIM_ROBOTS` (a class with `topics`, `step`, `publish_state`, `on_command`): the
MuJoCo arm task will register there when it lands.

With `latency_log` set, the node records for every command carrying a header (motor speeds) the delay from the
state message it was computed from to its arrival — in the middleware (`received_timestamp`) and in this node's
callback — and writes them to that .npz file on shutdown (`robolearn bench ros-loop-latency` reads it).
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import numpy as np

from robolearn_ros.adapters import RPM_TO_RAD_S, pwm_to_thrust
from robolearn_ros.messages import ConfigError, run_node, s_to_stamp, stamp_to_s


class QuadrotorSimRobot:
    """One simulated Crazyflie from robolearn.envs (torch, CPU, num_envs=1)."""

    def __init__(self, node: Any, task: str, params: dict[str, Any]) -> None:
        import torch

        from robolearn.envs.registry import make

        torch.set_num_threads(1)
        self.torch = torch
        s = float(params["init_scale"])
        overrides: dict[str, Any] = {
            "num_envs": 1, "action_mode": params["action_mode"], "episode_length_s": 1e7,
            "init_pos": 0.2 * s, "init_max_angle_deg": 90.0 * s, "init_lin_vel": 1.0 * s, "init_ang_vel": 1.0 * s,
        }
        if not params["randomize"]:  # the nominal Crazyflie: no parameter randomization, disturbance or noise
            overrides |= {"randomize": {}, "disturbance_force": 0.0, "obs_noise": {}}
        if params["sim_dt"] > 0:
            overrides["sim_dt"] = float(params["sim_dt"])
        try:
            self.env = make(task, seed=int(params["seed"]), **overrides)
        except Exception as e:  # unknown task, bad override: one line to the user
            raise ConfigError(f"task '{task}': {e}") from None
        self.env.reset()
        spec = self.env.spec.action
        self.mode = params["action_mode"]
        self.offset = np.array([o for t in spec.terms for o in t.offset])
        self.scale = np.array([c for t in spec.terms for c in t.scale])
        self.action = np.zeros(spec.dim)  # hover until the first command
        self.max_thrust_n = float(params["max_thrust_n"])
        self.origin = np.asarray(params["origin"], dtype=np.float64)
        self.dt = self.env.step_dt
        self.crashes = 0
        self.frame = params["frame_id"]

    def on_command(self, msg: Any) -> None:
        """Motor speeds (JointState, rad/s) or rate-mode cmd_vel_legacy (Twist) → normalized action."""
        if hasattr(msg, "velocity"):
            if len(msg.velocity) != 4:
                return
            phys = np.asarray(msg.velocity, dtype=np.float64) / RPM_TO_RAD_S
        else:
            phys = np.array([pwm_to_thrust(msg.linear.z, self.max_thrust_n), math.radians(msg.linear.x),
                             math.radians(msg.linear.y), math.radians(msg.angular.z)])
        a = (phys - self.offset) / self.scale
        if np.isfinite(a).all():
            self.action = np.clip(a, -1.0, 1.0)

    def step(self) -> None:
        """One physics step with the held command, through the task's own action and physics hooks.

        The task's reward and observation terms are not needed here; a crash (its criterion) resets the drone.
        """
        torch = self.torch
        env = self.env
        with torch.inference_mode():
            env._apply_action(torch.as_tensor(self.action, dtype=torch.float32).unsqueeze(0))
            env._physics_step()
            if bool(env._crashed()[0]):
                self.crashes += 1
                env.reset()

    def state_msg(self, msg: Any) -> Any:
        """Fill a nav_msgs/Odometry with the true state (no estimator noise)."""
        sim = self.env.sim
        pos = sim.pos[0].double().numpy() + self.origin
        w, x, y, z = (float(v) for v in sim.quat[0])
        v_world = sim.lin_vel[0].double().numpy()
        from robolearn_ros.messages import quat_to_rotmat

        v_body = quat_to_rotmat(x, y, z, w).T @ v_world
        wb = sim.ang_vel[0].double().numpy()
        msg.header.frame_id, msg.child_frame_id = "world", self.frame
        p, o = msg.pose.pose.position, msg.pose.pose.orientation
        p.x, p.y, p.z = (float(c) for c in pos)
        o.x, o.y, o.z, o.w = x, y, z, w
        tl, ta = msg.twist.twist.linear, msg.twist.twist.angular
        tl.x, tl.y, tl.z = (float(c) for c in v_body)
        ta.x, ta.y, ta.z = (float(c) for c in wb)
        return msg


SIM_ROBOTS: dict[str, type] = {"quadrotor-hover": QuadrotorSimRobot, "quadrotor-track": QuadrotorSimRobot}


def main(argv: list[str] | None = None) -> int:
    """Console entry point `robolearn-sim-robot-node` (`ros2 run robolearn_ros sim_robot_node`)."""
    return run_node("sim_robot_node", _make_node_class(), close='finish', argv=argv)


def _make_node_class() -> type:
    from geometry_msgs.msg import Twist
    from nav_msgs.msg import Odometry
    from rclpy.node import Node
    from sensor_msgs.msg import JointState
    from std_srvs.srv import Trigger

    class _SimRobotNode(Node):
        def __init__(self) -> None:
            super().__init__("sim_robot_node")
            p = {"task": "quadrotor-hover", "action_mode": "rpm", "seed": 0, "sim_dt": 0.0, "publish_rate_hz": 0.0,
                 "init_scale": 0.3, "randomize": False, "real_time_factor": 1.0, "wait_for_command": True,
                 "max_steps_per_tick": 0, "origin": [0.0, 0.0, 1.0], "max_thrust_n": 0.595, "frame_id": "cf1",
                 "state_topic": "/cf1/odom", "motors_topic": "/cf1/cmd_motors",
                 "cmd_vel_legacy_topic": "/cf1/cmd_vel_legacy", "latency_log": "", "max_cycles": 0}
            for k, v in p.items():
                self.declare_parameter(k, v)
            g = {k: self.get_parameter(k).value for k in p}
            if g["task"] not in SIM_ROBOTS:
                raise ConfigError(f"parameter 'task' is '{g['task']}'; simulated robots: {sorted(SIM_ROBOTS)}")
            if g["action_mode"] not in ("rpm", "ctbr"):
                raise ConfigError(f"parameter 'action_mode' is '{g['action_mode']}'; choose rpm or ctbr")
            self.robot = SIM_ROBOTS[g["task"]](self, g["task"], g)
            self.state_pub = self.create_publisher(Odometry, g["state_topic"], 1)  # reliable: any subscriber matches
            self.create_subscription(JointState, g["motors_topic"], self._on_cmd, 10)
            self.create_subscription(Twist, g["cmd_vel_legacy_topic"], self._on_cmd, 10)
            self.create_service(Trigger, "~/reset", self._reset)
            if not float(g["real_time_factor"]) > 0:
                raise ConfigError("parameter 'real_time_factor' must be > 0")
            rate = float(g["publish_rate_hz"]) or float(g["real_time_factor"]) / self.robot.dt
            self.waiting = bool(g["wait_for_command"])  # physics frozen at the initial state until commanded
            self.rtf = float(g["real_time_factor"])
            # physics steps per published state when the timer runs late; by default one step per state when
            # the state and physics rates match (a late timer slows simulated time rather than stepping twice on
            # one command, which a controller in the loop never saw), else what the rate ratio needs
            self.max_steps_per_tick = int(g["max_steps_per_tick"])
            if self.max_steps_per_tick <= 0:
                self.max_steps_per_tick = max(1, math.ceil(self.rtf / (self.robot.dt * rate) - 1e-9))
            self.latency_log = g["latency_log"]
            self.max_cycles = int(g["max_cycles"])
            self.sent: dict[tuple[int, int], int] = {}  # stamp of a published state -> its sequence number
            self.lat_mw: list[float] = []
            self.lat_cb: list[float] = []
            self.lat_seq: list[int] = []
            self.published = 0
            self.overruns = 0
            self._msg = Odometry()
            self._pub_t0 = self._pub_t1 = 0.0
            self._t0 = time.monotonic()
            self._sim_t = 0.0
            self.create_timer(1.0 / rate, self._tick)
            self.get_logger().info(f"{g['task']} ({g['action_mode']}) physics {1 / self.robot.dt:g} Hz, "
                                   f"state on {g['state_topic']} at {rate:g} Hz")

        def _reset(self, request: Any, response: Any) -> Any:
            self.robot.env.reset()
            response.success, response.message = True, "reset"
            return response

        def _tick(self) -> None:
            if self.waiting:
                self._t0 = time.monotonic()
            elapsed = (time.monotonic() - self._t0) * self.rtf
            steps = 0
            while self._sim_t + self.robot.dt <= elapsed:
                if steps == self.max_steps_per_tick:  # fell behind: drop the backlog instead of a burst (counted)
                    self.overruns += 1
                    self._sim_t = elapsed
                    break
                self.robot.step()
                self._sim_t += self.robot.dt
                steps += 1
            if self.max_cycles and self.published >= self.max_cycles:
                return
            msg = self.robot.state_msg(self._msg)
            now = time.time()
            s_to_stamp(now, msg.header.stamp)
            self.state_pub.publish(msg)
            if self.published == 0:
                self._pub_t0 = time.monotonic()
            self._pub_t1 = time.monotonic()
            if self.latency_log:
                self.sent[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = self.published
                if len(self.sent) > 1000:  # states older than that never got a command
                    for k in list(self.sent)[:500]:
                        del self.sent[k]
            self.published += 1
            if self.max_cycles and self.published == self.max_cycles:
                self.get_logger().info(f"published max_cycles = {self.max_cycles} states")

        def _on_cmd(self, msg: Any, info: Any) -> None:
            t_cb = time.time()
            self.robot.on_command(msg)
            self.waiting = False
            if self.latency_log and hasattr(msg, "header"):
                seq = self.sent.pop((msg.header.stamp.sec, msg.header.stamp.nanosec), None)
                if seq is not None:  # a command computed from one of our states (not a safe action)
                    t_obs = stamp_to_s(msg.header.stamp)
                    self.lat_seq.append(seq)
                    self.lat_cb.append(t_cb - t_obs)
                    self.lat_mw.append(info["received_timestamp"] * 1e-9 - t_obs)

        def finish(self) -> None:
            if self.latency_log:
                np.savez(self.latency_log, middleware_s=np.asarray(self.lat_mw), callback_s=np.asarray(self.lat_cb),
                         seq=np.asarray(self.lat_seq, dtype=np.int64), duration_s=self._pub_t1 - self._pub_t0,
                         published=self.published, overruns=self.overruns, crashes=self.robot.crashes)

    return _SimRobotNode


if __name__ == "__main__":
    sys.exit(main())
