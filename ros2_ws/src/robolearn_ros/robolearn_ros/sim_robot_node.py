"""sim_robot_node: a robolearn task behind the real robot's ROS 2 topics, stepping in real time.

    robolearn-sim-robot-node --ros-args -p task:=quadrotor-hover -p action_mode:=rpm
    robolearn-sim-robot-node --ros-args -p task:=arm-reach -p goal:="[0.5, 0.15, 0.3]"
    robolearn-sim-robot-node --ros-args -p task:=quadruped-walk

quadrotor-* (ctbr and rpm): publishes the state estimate the Crazyflie adapter reads (`nav_msgs/Odometry` on
`state_topic`, pose in the world frame, twist in the body frame) and takes motor speeds (`sensor_msgs/JointState`
on `motors_topic`, rad/s) or crazyswarm2's rate-mode `cmd_vel_legacy` (`geometry_msgs/Twist`). Physics steps at
the task's `sim_dt` against the wall clock scaled by `real_time_factor` (below 1 where the CPU cannot keep up:
the torch simulator costs a few ms per step at num_envs=1); the state is published at `publish_rate_hz`
(default: the task's control rate × real_time_factor). The last command is held between messages; with
`wait_for_command` (default) physics starts with the first command, so DDS discovery time is not flown open loop.
The world position is the task-frame position plus `origin` (the task's goal is the task-frame origin).
With `floor` the drone cannot sink below world z = `floor_z` (an inelastic, sticky ground: the velocity into it
and the spin are zeroed); `start_on_ground` (implies `floor`) puts it there, level, motors stopped, after every
(re)start. Motors-off commands (every motor speed 0, or cmd_vel_legacy thrust 0) stop the rotors.

arm-* (`ArmSimRobot`, MuJoCo on the CPU): what ros2_control's joint_state_broadcaster and forward position
controller give the arm adapter — `sensor_msgs/JointState` out, `Float64MultiArray` joint targets (or a
`JointTrajectory`) in — plus the reach goal (`PointStamped`, the adapter's `goal` input) and the TCP pose.
quadruped-* (`LeggedSimRobot`, MuJoCo on the CPU, flat ground): `JointState` + `Imu` out, the legged adapter's
(3, 12) [q_target; kp; kd] in, applied as servo targets and gains; `cmd_vel` sets the velocity command.
Both step one control period (the task's decimation of physics steps) per `dt`, with the same clock as above.

Robots plug in through `SIM_ROBOTS` (task → a class with `PARAMS` (its own ROS parameters and defaults),
`topics(node, on_command)`, `step()`, `publish_state(now) -> stamp`, `on_command(msg)`, `reset()`, `dt`,
`crashes`).

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

    PARAMS: dict[str, Any] = {
        "action_mode": "rpm", "init_scale": 0.3, "randomize": False, "origin": [0.0, 0.0, 1.0], "max_thrust_n": 0.595,
        "floor": False, "floor_z": 0.0, "start_on_ground": False, "frame_id": "cf1", "state_topic": "/cf1/odom",
        "motors_topic": "/cf1/cmd_motors", "cmd_vel_legacy_topic": "/cf1/cmd_vel_legacy",
    }

    def __init__(self, node: Any, task: str, params: dict[str, Any]) -> None:
        import torch

        from robolearn.envs.registry import make

        if params["action_mode"] not in ("rpm", "ctbr"):
            raise ConfigError(f"parameter 'action_mode' is '{params['action_mode']}'; choose rpm or ctbr")
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
        self.origin = np.asarray(params["origin"], dtype=np.float64)
        self.on_ground_start = bool(params.get("start_on_ground", False))
        self.floor = self.on_ground_start or bool(params.get("floor", False))
        self.floor_z = float(params.get("floor_z", 0.0)) - float(self.origin[2])  # in the task frame
        if self.floor:  # standing on the ground is not the task's "too far from the goal" crash
            overrides["max_pos_error"] = 1e3
        try:
            self.env = make(task, seed=int(params["seed"]), **overrides)
        except Exception as e:  # unknown task, bad override: one line to the user
            raise ConfigError(f"task '{task}': {e}") from None
        spec = self.env.spec.action
        self.mode = params["action_mode"]
        self.offset = np.array([o for t in spec.terms for o in t.offset])
        self.scale = np.array([c for t in spec.terms for c in t.scale])
        self.action = np.zeros(spec.dim)  # hover until the first command
        self.max_thrust_n = float(params["max_thrust_n"])
        self.motors_off = False
        self.reset()
        self.dt = self.env.step_dt
        self.crashes = 0
        self.frame = params["frame_id"]
        self.params = params
        self.describe = f"{task} ({self.mode})"

    def topics(self, node: Any, on_command: Any) -> None:
        """Odometry publisher; motor-speed and cmd_vel_legacy subscriptions."""
        from geometry_msgs.msg import Twist
        from nav_msgs.msg import Odometry
        from sensor_msgs.msg import JointState

        self.pub = node.create_publisher(Odometry, self.params["state_topic"], 1)  # reliable: any subscriber matches
        self.describe += f", state on {self.params['state_topic']}"
        node.create_subscription(JointState, self.params["motors_topic"], on_command, 10)
        node.create_subscription(Twist, self.params["cmd_vel_legacy_topic"], on_command, 10)
        self._msg = Odometry()

    def reset(self) -> None:
        """Back to a fresh initial state (on the ground, motors stopped, with `start_on_ground`)."""
        self.env.reset()
        if self.on_ground_start:
            state = self.env.sim.state
            state[0] = 0.0
            state[0, 2] = self.floor_z
            state[0, 3] = 1.0  # level
            self.motors_off = True
            self.action[:] = 0.0

    def _floor(self) -> None:
        """Inelastic ground contact at floor_z: no sinking, no sliding, no spinning on it."""
        state = self.env.sim.state
        if float(state[0, 2]) <= self.floor_z:
            state[0, 2] = self.floor_z
            if float(state[0, 9]) < 0.0:  # moving into the ground: stopped there (with friction)
                state[0, 7:10] = 0.0
            state[0, 10:13] = 0.0

    def publish_state(self, now: float) -> Any:
        """Publish the state stamped `now` (wall clock); return the stamp."""
        msg = self.state_msg(self._msg)
        s_to_stamp(now, msg.header.stamp)
        self.pub.publish(msg)
        return msg.header.stamp

    def on_command(self, msg: Any) -> None:
        """Motor speeds (JointState, rad/s) or rate-mode cmd_vel_legacy (Twist) → normalized action."""
        if hasattr(msg, "velocity"):
            if len(msg.velocity) != 4:
                return
            phys = np.asarray(msg.velocity, dtype=np.float64) / RPM_TO_RAD_S
            if not phys.any():  # every motor 0: motors off
                self.motors_off = True
                return
        else:
            if msg.linear.z == 0.0:  # crazyswarm2 cmd_vel_legacy with thrust 0: the firmware stops the motors
                self.motors_off = True
                return
            phys = np.array([pwm_to_thrust(msg.linear.z, self.max_thrust_n), math.radians(msg.linear.x),
                             math.radians(msg.linear.y), math.radians(msg.angular.z)])
        a = (phys - self.offset) / self.scale
        if np.isfinite(a).all():
            self.action = np.clip(a, -1.0, 1.0)
            self.motors_off = False

    def step(self) -> None:
        """One physics step with the held command, through the task's own action and physics hooks.

        The task's reward and observation terms are not needed here; a crash (its criterion) resets the drone.
        """
        torch = self.torch
        env = self.env
        with torch.inference_mode():
            env._apply_action(torch.as_tensor(self.action, dtype=torch.float32).unsqueeze(0))
            if self.motors_off:  # rotors spin down (motor lag), no thrust command
                env.rpm_cmd = torch.zeros_like(env.rpm_cmd)
                env.sim.step(env.rpm_cmd)
            else:
                env._physics_step()
            if self.floor:
                self._floor()
            if bool(env._crashed()[0]):
                self.crashes += 1
                self.reset()

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


def _make_task(task: str, seed: int, overrides: dict[str, Any]) -> Any:
    """robolearn.envs.registry.make with one-line errors (unknown task, bad override, missing extra)."""
    from robolearn.envs.registry import make

    try:
        return make(task, seed=seed, **overrides)
    except Exception as e:
        raise ConfigError(f"task '{task}': {e}") from None


def _joint_state(msg: Any, names: list[str], q: np.ndarray, dq: np.ndarray, stamp_s: float) -> Any:
    msg.name = names
    msg.position = q.tolist()
    msg.velocity = dq.tolist()
    s_to_stamp(stamp_s, msg.header.stamp)
    return msg


class ArmSimRobot:
    """The Franka-class arm of the arm-* tasks (MuJoCo on the CPU, num_envs=1) behind ros2_control's topics.

    Publishes `sensor_msgs/JointState` (joint1..joint7, then finger_left/right) like joint_state_broadcaster, the
    reach goal as `geometry_msgs/PointStamped` and the TCP pose from forward kinematics as
    `geometry_msgs/PoseStamped` (base frame; the arm adapter's `goal` and `tcp_pose` inputs). Accepts the arm
    adapter's output: a forward position controller's `Float64MultiArray` (7 absolute joint targets [rad]) and/or
    a `JointTrajectory` (its last point; joints matched by name), mapped to the task's `joint_pos` action
    (home + joint_scale · a, clamped to the joint range by the task); the finger opening [m] as a one-element
    `Float64MultiArray` on `gripper_command_topic` (open until commanded).
    """

    PARAMS: dict[str, Any] = {
        "joint_states_topic": "/joint_states", "forward_command_topic": "/forward_position_controller/commands",
        "trajectory_topic": "/joint_trajectory_controller/joint_trajectory", "goal_topic": "/goal",
        "tcp_pose_topic": "/tcp_pose", "gripper_command_topic": "/gripper_controller/commands",
        "goal": [0.5, 0.0, 0.3], "frame_id": "base", "randomize": False,
    }

    def __init__(self, node: Any, task: str, params: dict[str, Any]) -> None:
        import torch

        from robolearn.envs.manipulation.arm import ARM_JOINTS, HOME

        torch.set_num_threads(1)
        self.torch = torch
        overrides: dict[str, Any] = {"num_envs": 1, "action_mode": "joint_pos", "backend": "mujoco_cpu",
                                     "episode_length_s": 1e7}
        if not params["randomize"]:
            overrides |= {"randomize": {}, "obs_noise": {}}
        self.env = _make_task(task, int(params["seed"]), overrides)
        self.env.reset()
        goal = [float(g) for g in params["goal"]]
        if len(goal) != 3 or not np.isfinite(goal).all():
            raise ConfigError(f"parameter 'goal' must be 3 finite numbers (x, y, z in the base frame), got {goal}")
        if hasattr(self.env, "goal"):  # arm-reach: the task's command is this goal
            self.env.goal[:] = torch.tensor(goal)
        self.goal = np.asarray(goal)
        self.n = ARM_JOINTS
        self.home = np.asarray(HOME)
        self.joint_scale = float(self.env.cfg.joint_scale)
        self.names = [f"joint{i + 1}" for i in range(self.n)] + ["finger_left", "finger_right"]
        self.action = np.zeros(self.env.spec.action.dim)
        self.action[-1] = 1.0  # gripper open
        self.dt = self.env.step_dt
        self.crashes = 0
        self.params = params
        self.describe = f"{task} (joint targets), joint states on {params['joint_states_topic']}"

    def topics(self, node: Any, on_command: Any) -> None:
        """JointState, goal and TCP pose publishers; joint (forward, trajectory) and gripper subscriptions."""
        from geometry_msgs.msg import PointStamped, PoseStamped
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray
        from trajectory_msgs.msg import JointTrajectory

        p = self.params
        self.pubs = {"joint_states": node.create_publisher(JointState, p["joint_states_topic"], 1),
                     "goal": node.create_publisher(PointStamped, p["goal_topic"], 1),
                     "tcp_pose": node.create_publisher(PoseStamped, p["tcp_pose_topic"], 1)}
        node.create_subscription(Float64MultiArray, p["forward_command_topic"], on_command, 10)
        node.create_subscription(JointTrajectory, p["trajectory_topic"], on_command, 10)
        node.create_subscription(Float64MultiArray, p["gripper_command_topic"], self.on_gripper, 10)

    def on_gripper(self, msg: Any) -> None:
        """Finger opening [m] (one value) → the task's gripper action."""
        from robolearn.envs.manipulation.arm import FINGER_OPEN

        if len(msg.data) == 1 and math.isfinite(msg.data[0]):
            self.action[-1] = float(np.clip(msg.data[0] / (FINGER_OPEN / 2) - 1.0, -1.0, 1.0))

    def on_command(self, msg: Any) -> None:
        """Joint position targets [rad] → the task's normalized joint_pos action (malformed commands are dropped)."""
        if hasattr(msg, "points"):  # JointTrajectory: the final point, joints by name
            if not msg.points:
                return
            index = {n: i for i, n in enumerate(msg.joint_names)}
            pos = msg.points[-1].positions
            if any(n not in index for n in self.names[:self.n]) or len(pos) != len(msg.joint_names):
                return
            q = np.array([pos[index[n]] for n in self.names[:self.n]], dtype=np.float64)
        else:
            if len(msg.data) != self.n:
                return
            q = np.asarray(msg.data, dtype=np.float64)
        if np.isfinite(q).all():
            self.action[:self.n] = (q - self.home) / self.joint_scale

    def step(self) -> None:
        """One control step (the task's decimation of physics steps) with the held targets."""
        torch, env = self.torch, self.env
        with torch.inference_mode():
            env._apply_action(torch.as_tensor(self.action, dtype=torch.float32).unsqueeze(0))
            env._physics_step()

    def reset(self) -> None:
        """Back to the home pose (goal kept)."""
        goal = self.torch.tensor(self.goal, dtype=self.torch.float32)
        self.env.reset()
        if hasattr(self.env, "goal"):
            self.env.goal[:] = goal
        self.action[:self.n] = 0.0

    def tcp(self) -> tuple[np.ndarray, np.ndarray]:
        """TCP position [m] and orientation (w, x, y, z), base frame."""
        return self.env.ee_pos[0].double().numpy(), self.env.ee_quat[0].double().numpy()

    def messages(self, now: float) -> dict[str, Any]:
        """The robot's messages stamped `now`: the arm adapter's input slot → message."""
        from geometry_msgs.msg import PointStamped, PoseStamped
        from sensor_msgs.msg import JointState

        env, frame = self.env, self.params["frame_id"]
        q = env.sim.qpos[0, :self.n].double().numpy()
        dq = env.sim.qvel[0, :self.n].double().numpy()
        fq = env.sim.qpos[0, env.finger_qpos].double().numpy()
        fdq = env.sim.qvel[0, env.finger_qpos].double().numpy()
        js = _joint_state(JointState(), self.names, np.concatenate([q, fq]), np.concatenate([dq, fdq]), now)
        goal, tcp = PointStamped(), PoseStamped()
        for m in (goal, tcp):
            m.header.frame_id = frame
            m.header.stamp = js.header.stamp
        goal.point.x, goal.point.y, goal.point.z = (float(v) for v in self.goal)
        pos, quat = self.tcp()
        p, o = tcp.pose.position, tcp.pose.orientation
        p.x, p.y, p.z = (float(v) for v in pos)
        o.w, o.x, o.y, o.z = (float(v) for v in quat)
        return {"goal": goal, "tcp_pose": tcp, "joint_states": js}

    def publish_state(self, now: float) -> Any:
        """Goal, TCP pose, then joint states (the policy steps on these, with the rest delivered); the stamp."""
        msgs = self.messages(now)
        for slot, msg in msgs.items():
            self.pubs[slot].publish(msg)
        return msgs["joint_states"].header.stamp


class LeggedSimRobot:
    """The Go1-class quadruped of the quadruped-* tasks (MuJoCo on the CPU, flat ground, num_envs=1).

    Publishes `sensor_msgs/JointState` (the 12 joints, names FL_hip … RR_calf), `sensor_msgs/Imu` (orientation
    base-to-world, angular velocity in the base frame; no accelerometer: linear_acceleration_covariance[0] = -1,
    REP 145) and the trunk's true pose as `nav_msgs/Odometry` (ground truth, for monitoring). Accepts the legged
    adapter's (3, 12) `Float64MultiArray` [q_target; kp; kd]: targets clamped to the joint range, gains clamped
    to [0, max_kp] / [0, max_kd] and written into the servos (τ = kp (q* − q) − kd q̇, torque-limited); an
    optional `geometry_msgs/Twist` on `cmd_vel_topic` sets the task's velocity command (vx, vy, yaw rate).
    `~/mute_joint_states` (std_srvs/SetBool) stops publishing joint states: an encoder-bus dropout for watchdog
    tests. A fallen robot is counted (trunk below `fall_height`), not reset: a real one is not either.
    """

    PARAMS: dict[str, Any] = {
        "joint_states_topic": "/joint_states", "imu_topic": "/imu", "odom_topic": "/odom",
        "joint_command_topic": "/joint_command", "cmd_vel_topic": "/cmd_vel", "frame_id": "base",
        "max_kp": 100.0, "max_kd": 10.0, "fall_height": 0.15, "randomize": False,
    }

    def __init__(self, node: Any, task: str, params: dict[str, Any]) -> None:
        import torch

        from robolearn.envs.quadruped.env import JOINTS

        torch.set_num_threads(1)
        self.torch = torch
        overrides: dict[str, Any] = {"num_envs": 1, "backend": "mujoco_cpu", "episode_length_s": 1e7,
                                     "terrain": "flat", "curriculum": False, "command_resample_s": 1e7,
                                     "latency_steps": 0, "pushes": False, "init_joint_noise": 0.0,
                                     "init_base_vel": 0.0}
        if not params["randomize"]:
            overrides |= {"randomize": {}, "obs_noise": {}}
        self.env = _make_task(task, int(params["seed"]), overrides)
        self.env.reset()
        self.names = list(JOINTS)
        self.n = len(JOINTS)
        cfg = self.env.cfg
        self.nominal = (float(cfg.kp), max(float(cfg.kd), 1e-9))
        self.max_kp, self.max_kd = float(params["max_kp"]), float(params["max_kd"])
        if not (self.max_kp > 0 and self.max_kd >= 0):
            raise ConfigError("parameters 'max_kp' must be > 0 and 'max_kd' ≥ 0")
        self.target = self.env.default_pose[None].clone()
        self.gains = (np.full(self.n, cfg.kp), np.full(self.n, cfg.kd))
        self._new_gains: tuple[np.ndarray, np.ndarray] | None = None
        self.mute = False
        self.fall_height = float(params["fall_height"])
        self.crashes = 0  # falls
        self._down = False
        self.dt = self.env.step_dt
        self.params = params
        self.describe = f"{task} (PD targets + gains), joint states on {params['joint_states_topic']}"

    def topics(self, node: Any, on_command: Any) -> None:
        """JointState, Imu and Odometry publishers; joint-command and cmd_vel subscriptions; the mute service."""
        from geometry_msgs.msg import Twist
        from nav_msgs.msg import Odometry
        from sensor_msgs.msg import Imu, JointState
        from std_msgs.msg import Float64MultiArray
        from std_srvs.srv import SetBool

        p = self.params
        self.pubs = {"imu": node.create_publisher(Imu, p["imu_topic"], 1),
                     "odom": node.create_publisher(Odometry, p["odom_topic"], 1),
                     "joint_states": node.create_publisher(JointState, p["joint_states_topic"], 1)}
        node.create_subscription(Float64MultiArray, p["joint_command_topic"], on_command, 10)
        node.create_subscription(Twist, p["cmd_vel_topic"], self.on_cmd_vel, 10)
        node.create_service(SetBool, "~/mute_joint_states", self._on_mute)

    def _on_mute(self, request: Any, response: Any) -> Any:
        self.mute = bool(request.data)
        response.success, response.message = True, f"joint states {'muted' if self.mute else 'published'}"
        return response

    def on_cmd_vel(self, msg: Any) -> None:
        """Velocity command (vx, vy, yaw rate) into the task's command (what its reward and observation use)."""
        c = np.array([msg.linear.x, msg.linear.y, msg.angular.z])
        if np.isfinite(c).all():
            self.env.commands[0] = self.torch.as_tensor(c, dtype=self.torch.float32)

    def on_command(self, msg: Any) -> None:
        """(3, n) [q_target; kp; kd] → servo targets and gains (malformed or non-finite commands are dropped)."""
        d = np.asarray(msg.data, dtype=np.float64)
        if d.shape != (3 * self.n,) or not np.isfinite(d).all():
            return
        q, kp, kd = d.reshape(3, self.n)
        env = self.env
        t = self.torch.as_tensor(q, dtype=self.torch.float32)[None]
        self.target = self.torch.minimum(self.torch.maximum(t, env.joint_low), env.joint_high)
        gains = (np.clip(kp, 0.0, self.max_kp), np.clip(kd, 0.0, self.max_kd))
        if not all(np.array_equal(a, b) for a, b in zip(gains, self.gains, strict=True)):
            self._new_gains = gains

    def step(self) -> None:
        """One control step (the task's decimation of physics steps) with the held targets and gains."""
        torch, env = self.torch, self.env
        with torch.inference_mode():
            if self._new_gains is not None:
                self.gains, self._new_gains = self._new_gains, None
                ids, motors = torch.zeros(1, dtype=torch.long), list(range(self.n))
                for fld, g, nom in zip(("actuator_kp", "actuator_kv"), self.gains, self.nominal, strict=True):
                    env.sim.set_params(ids, fld, motors, torch.as_tensor(g / nom, dtype=torch.float32)[None])
            env.joint_target = self.target
            env._ctrl = self.target
            env._substeps_pending = True
            env._physics_step()
            down = float(env.base_pos[0, 2]) < self.fall_height
            self.crashes += int(down and not self._down)
            self._down = down

    def reset(self) -> None:
        """Standing start again (default pose, nominal gains)."""
        self.env.reset()
        self.target = self.env.default_pose[None].clone()
        cfg = self.env.cfg
        self._new_gains = (np.full(self.n, cfg.kp), np.full(self.n, cfg.kd))

    def messages(self, now: float) -> dict[str, Any]:
        """The robot's messages stamped `now`: imu, odom (ground truth) and joint_states (unless muted)."""
        from nav_msgs.msg import Odometry
        from sensor_msgs.msg import Imu, JointState

        env, frame = self.env, self.params["frame_id"]
        quat = env.base_quat[0].double().numpy()  # w, x, y, z
        gyro = env.base_ang_vel[0].double().numpy()
        imu = Imu()
        imu.header.frame_id = frame
        s_to_stamp(now, imu.header.stamp)
        o, w = imu.orientation, imu.angular_velocity
        o.w, o.x, o.y, o.z = (float(v) for v in quat)
        w.x, w.y, w.z = (float(v) for v in gyro)
        imu.linear_acceleration_covariance[0] = -1.0  # no accelerometer (REP 145)
        od = Odometry()
        od.header.stamp, od.header.frame_id, od.child_frame_id = imu.header.stamp, "world", frame
        p, po = od.pose.pose.position, od.pose.pose.orientation
        p.x, p.y, p.z = (float(v) for v in env.base_pos[0])
        po.x, po.y, po.z, po.w = o.x, o.y, o.z, o.w
        tl, ta = od.twist.twist.linear, od.twist.twist.angular
        tl.x, tl.y, tl.z = (float(v) for v in env.base_lin_vel[0])
        ta.x, ta.y, ta.z = (float(v) for v in gyro)
        out = {"imu": imu, "odom": od}
        if not self.mute:  # last: the policy steps on joint states, with this IMU sample already delivered
            q = env.joint_pos[0].double().numpy()
            dq = env.joint_vel[0].double().numpy()
            out["joint_states"] = _joint_state(JointState(), self.names, q, dq, now)
        return out

    def publish_state(self, now: float) -> Any:
        """Publish `messages(now)`; return the stamp."""
        msgs = self.messages(now)
        for slot, msg in msgs.items():
            self.pubs[slot].publish(msg)
        return msgs["imu"].header.stamp


SIM_ROBOTS: dict[str, type] = {
    "quadrotor-hover": QuadrotorSimRobot, "quadrotor-track": QuadrotorSimRobot,
    "arm-reach": ArmSimRobot, "arm-lift": ArmSimRobot, "arm-pick-place": ArmSimRobot, "arm-peg-insert": ArmSimRobot,
    "quadruped-walk": LeggedSimRobot, "quadruped-hind-legs": LeggedSimRobot,
}


def main(argv: list[str] | None = None) -> int:
    """Console entry point `robolearn-sim-robot-node` (`ros2 run robolearn_ros sim_robot_node`)."""
    return run_node("sim_robot_node", _make_node_class(), close='finish', argv=argv)


def _make_node_class() -> type:
    from rclpy.node import Node
    from std_srvs.srv import Trigger

    class _SimRobotNode(Node):
        def __init__(self) -> None:
            super().__init__("sim_robot_node")
            p = {"task": "quadrotor-hover", "seed": 0, "sim_dt": 0.0, "publish_rate_hz": 0.0,
                 "real_time_factor": 1.0, "wait_for_command": True, "max_steps_per_tick": 0, "latency_log": "",
                 "max_cycles": 0}
            self._declare(p)
            task = self.get_parameter("task").value
            if task not in SIM_ROBOTS:
                raise ConfigError(f"parameter 'task' is '{task}'; simulated robots: {sorted(SIM_ROBOTS)}")
            cls = SIM_ROBOTS[task]
            self._declare(cls.PARAMS)  # the robot's own parameters (topics, options)
            g = {k: self.get_parameter(k).value for k in (*p, *cls.PARAMS)}
            if not float(g["real_time_factor"]) > 0:
                raise ConfigError("parameter 'real_time_factor' must be > 0")
            self.robot = cls(self, task, g)
            self.robot.topics(self, self._on_cmd)
            self.create_service(Trigger, "~/reset", self._reset)
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
            self._pub_t0 = self._pub_t1 = 0.0
            self._t0 = time.monotonic()
            self._sim_t = 0.0
            self.create_timer(1.0 / rate, self._tick)
            self.get_logger().info(f"{self.robot.describe}; physics {1 / self.robot.dt:g} Hz per step, "
                                   f"state at {rate:g} Hz")

        def _declare(self, params: dict[str, Any]) -> None:
            """Declare parameters with their defaults; a value of the wrong type is one line naming it."""
            from rclpy.exceptions import InvalidParameterTypeException

            for k, v in params.items():
                try:
                    self.declare_parameter(k, v)
                except InvalidParameterTypeException:
                    want = f"a list of floats like {v}" if isinstance(v, list) else f"a {type(v).__name__}"
                    raise ConfigError(f"parameter '{k}' must be {want} (default {v!r})") from None

        def _reset(self, request: Any, response: Any) -> Any:
            self.robot.reset()
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
            stamp = self.robot.publish_state(time.time())
            if self.published == 0:
                self._pub_t0 = time.monotonic()
            self._pub_t1 = time.monotonic()
            if self.latency_log:
                self.sent[(stamp.sec, stamp.nanosec)] = self.published
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
