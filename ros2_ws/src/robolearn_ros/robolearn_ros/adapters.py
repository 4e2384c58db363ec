"""Robot adapters: ROS 2 messages → the manifest's observation vector, actions → command messages, safe actions.

An adapter knows one robot family's topics. It declares its input and output slots (which message types each
takes), which observation terms it can build, and its safe action. Nothing here creates ROS entities, so the
adapters are plain numpy and testable without DDS; `policy_node` wires them to subscriptions and publishers.

Conventions (shared with `sim_robot_node`):
- Crazyflie state: `nav_msgs/Odometry`, pose in the world frame (z up), twist in the body frame (REP 105
  `child_frame_id` convention); the adapter rotates the linear velocity into the world frame.
- Crazyflie `rpm` policies: `sensor_msgs/JointState` on `motors`, names motor_1..motor_4, `velocity` in rad/s
  (the manifest's rpm × 2π/60); header stamp = stamp of the state estimate the command was computed from.
- Crazyflie `ctbr` policies: crazyswarm2's `cmd_vel_legacy` (`geometry_msgs/Twist`) with the firmware's roll
  and pitch in rate mode (params `flightmode.stabModeRoll/stabModePitch = 0`): linear.x/y = roll/pitch rate
  [deg/s], angular.z = yaw rate [deg/s], linear.z = thrust as a 16-bit PWM value (`thrust_to_pwm`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from robolearn_ros.messages import ConfigError, quat_to_rotmat

RPM_TO_RAD_S = 2 * math.pi / 60
MOTOR_NAMES = ["motor_1", "motor_2", "motor_3", "motor_4"]
PWM_MAX = 65535
DEFAULT_MAX_THRUST_N = 0.595  # Crazyflie 2.1 at full PWM: 4 × 3.16e-10 N/rpm² × 21702² rpm² (sim_assets/crazyflie)


def thrust_to_pwm(thrust_n: float, max_thrust_n: float = DEFAULT_MAX_THRUST_N) -> float:
    """Collective thrust [N] → crazyswarm2 legacy thrust (0..65535), linear in thrust."""
    return float(np.clip(thrust_n / max_thrust_n * PWM_MAX, 0.0, PWM_MAX))


def pwm_to_thrust(pwm: float, max_thrust_n: float = DEFAULT_MAX_THRUST_N) -> float:
    """Inverse of `thrust_to_pwm`."""
    return float(np.clip(pwm, 0.0, PWM_MAX)) / PWM_MAX * max_thrust_n


def joint_state(msg: Any, joints: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Positions and velocities of `joints` from a sensor_msgs/JointState, in that order (velocity 0 if absent)."""
    index = {n: i for i, n in enumerate(msg.name)}
    missing = [j for j in joints if j not in index]
    if missing:
        raise ValueError(f"joint_states lacks joint(s) {missing}")
    ids = [index[j] for j in joints]
    q = np.array([msg.position[i] for i in ids], dtype=np.float64)
    dq = np.array([msg.velocity[i] for i in ids], dtype=np.float64) if len(msg.velocity) else np.zeros(len(ids))
    return q, dq


@dataclass
class Slot:
    """One input or output of an adapter: the message types it accepts and whether the topic map must give it."""

    types: tuple[str, ...]
    required: bool = True
    doc: str = ""


@dataclass
class SafeCommand:
    """What the adapter commands while the policy is not trusted: physical action and whether the sequence ended."""

    physical: np.ndarray
    done: bool = False
    phase: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    motors_off: bool = False
    """Stop the motors (Crazyflie): the adapter sends its explicit motors-off message instead of `physical`."""


class Adapter:
    """Base class: slots, provided observation terms, observation assembly, command messages, safe action."""

    kind: ClassVar[str] = ""
    INPUTS: ClassVar[dict[str, Slot]] = {}
    OUTPUTS: ClassVar[dict[str, Slot]] = {}
    OPTIONS: ClassVar[dict[str, Any]] = {}
    """Option name → default (the topic map's `options:`; unknown names are errors)."""

    def __init__(self, manifest: dict[str, Any], options: dict[str, Any], outputs: set[str]) -> None:
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            raise ConfigError(f"topic map: unknown option(s) {unknown} for adapter '{self.kind}'; known: "
                              f"{sorted(self.OPTIONS)}")
        self.opt = {**self.OPTIONS, **options}
        self.manifest = manifest
        self.obs_terms = manifest["observation"]["terms"]
        self.action_terms = manifest["action"]["terms"]
        self.action_dim = int(manifest["action"]["dim"])
        self.outputs = outputs
        self.scale = np.array([s for t in self.action_terms for s in t["scale"]], dtype=np.float64)
        self.offset = np.array([o for t in self.action_terms for o in t["offset"]], dtype=np.float64)
        self.history = np.zeros((0, self.action_dim))
        self.now = 0.0  # node time of the observation being built (set by the node before `observation`)
        for t in self.obs_terms:
            if t["name"] not in self.provides() and t.get("source") != "last_action":
                raise ConfigError(f"artifact observation term '{t['name']}' cannot be provided by the '{self.kind}' "
                                  f"adapter (it provides {sorted(self.provides())} and 'last_action' terms)")
            if t.get("source") == "last_action" and t["dim"] % self.action_dim:
                raise ConfigError(f"observation term '{t['name']}' (last_action) has dim {t['dim']}, not a multiple "
                                  f"of the action dim {self.action_dim}")
        hist = max([t["dim"] // self.action_dim for t in self.obs_terms if t.get("source") == "last_action"] or [0])
        self.history = np.zeros((hist, self.action_dim))  # newest first; a = 0 is the neutral action
        self.check_actions()

    # ---- to override

    def provides(self) -> dict[str, int | None]:
        """Observation term name → dim (None: any dim) this adapter can build."""
        raise NotImplementedError

    def check_actions(self) -> None:
        """Fail (ConfigError naming the term) if the manifest's action terms are not what this adapter commands."""

    def terms(self, msgs: dict[str, Any]) -> dict[str, np.ndarray]:
        """Observation terms from the latest message per input slot."""
        raise NotImplementedError

    def commands(self, physical: np.ndarray, stamp: Any, safe: SafeCommand | None = None) -> dict[str, Any]:
        """Output slot → message for a physical command (already clamped to the limits); `safe` while in a fault."""
        raise NotImplementedError

    def safe(self, t: float, msgs: dict[str, Any], fresh: bool, last: np.ndarray | None) -> SafeCommand:
        """Safe physical command `t` seconds into a fault; `fresh`: the inputs are still trustworthy."""
        raise NotImplementedError

    def on_activate(self) -> None:
        """The node (re)starts the policy: forget per-flight state."""

    def estop_command(self) -> SafeCommand | None:
        """What the e-stop latches, if not the safe sequence (the Crazyflie's motors-off)."""
        return None

    # ---- shared

    def observation(self, msgs: dict[str, Any]) -> np.ndarray:
        """The manifest's observation vector (D,) in term order."""
        built = self.terms(msgs)
        parts = []
        for t in self.obs_terms:
            if t.get("source") == "last_action":
                parts.append(self.history[: t["dim"] // self.action_dim].reshape(-1))
            else:
                v = np.asarray(built[t["name"]], dtype=np.float64).reshape(-1)
                if v.shape[0] != t["dim"]:
                    raise ConfigError(f"observation term '{t['name']}' has {v.shape[0]} values from the robot, "
                                      f"manifest says {t['dim']}")
                parts.append(v)
        return np.concatenate(parts) if parts else np.zeros(0)

    def normalized(self, physical: np.ndarray) -> np.ndarray:
        """Physical command → normalized action (inverse of offset + scale * a)."""
        return (np.asarray(physical, dtype=np.float64) - self.offset) / self.scale

    def record(self, normalized: np.ndarray) -> None:
        """Push the action actually sent into the history (newest first)."""
        if len(self.history):
            self.history[1:] = self.history[:-1]
            self.history[0] = normalized

    def reset_history(self) -> None:
        """Neutral history after a fault or on activation."""
        self.history[:] = 0.0

    def action_index(self, name: str) -> slice | None:
        """Slice of the action vector holding term `name`, or None."""
        o = 0
        for t in self.action_terms:
            if t["name"] == name:
                return slice(o, o + t["dim"])
            o += t["dim"]
        return None


def _need_dim(provided: dict[str, int | None], terms: list[dict[str, Any]]) -> None:
    for t in terms:
        want = provided.get(t["name"])
        if t["name"] in provided and want is not None and t["dim"] != want:
            raise ConfigError(f"artifact observation term '{t['name']}' has dim {t['dim']}; the robot provides {want}")


# ---------------------------------------------------------------------------------------------------------- Crazyflie
class CrazyflieAdapter(Adapter):
    """Crazyflie through crazyswarm2-style topics: Odometry in, motor speeds (rpm policies) or cmd_vel_legacy out.

    Takeoff (`takeoff`): the goal ramps from the current position (on the ground) to `goal` over `takeoff_s`.
    Landing (`land`): the policy keeps flying while the goal descends at `land_speed` to `ground_z` below the
    current position; once the state estimate is within `land_cutoff_z` of the ground the motors are switched
    off (if that takes `land_timeout_s` longer than the descent, the safe sequence's open-loop descent finishes it).
    Safe action: hover (the neutral action, a = 0) for `hover_s`, then descend at reduced thrust for `land_s`
    (stopping early once the fresh state estimate is below `ground_z + 0.03`), then motors off. The e-stop switches
    the motors off at once (`estop_motors_off`, as crazyswarm2's emergency stop does).

    Motors off is the one command outside the manifest's limits, sent only in those three places: `motors` with
    every speed 0 (rpm policies), `cmd_vel_legacy` with thrust 0 (the firmware's own motor stop for that setpoint).

    Policies trained with `pos_error_integral: true` observe ∫ pos_error dt: the adapter integrates the error it
    hands the policy over node time (each step's dt, at most 0.1 s across a gap), clamps each component to the
    training run's `pos_error_integral_limit` (or the option of that name), and starts from 0 with the action
    history (`reset_history`: activation, takeoff, resume after a fault), as an episode starts from 0 in simulation.
    """

    kind = "crazyflie"
    INPUTS = {
        "state": Slot(("nav_msgs/msg/Odometry",), True, "state estimate (crazyswarm2 `odom`)"),
        "goal": Slot(("geometry_msgs/msg/PointStamped",), False, "goal position, world frame"),
    }
    OUTPUTS = {
        "motors": Slot(("sensor_msgs/msg/JointState",), False, "rpm policies: motor speeds [rad/s]"),
        "cmd_vel_legacy": Slot(("geometry_msgs/msg/Twist",), False, "ctbr policies: rate-mode legacy setpoint"),
    }
    OPTIONS = {
        "goal": [0.0, 0.0, 1.0],
        "hover_s": 1.0,
        "land_s": 3.0,
        "land_thrust_frac": 0.85,
        "ground_z": 0.0,
        "takeoff_s": 2.0,
        "land_speed": 0.3,
        "land_cutoff_z": 0.05,
        "land_timeout_s": 3.0,
        "estop_motors_off": True,
        "max_thrust_n": DEFAULT_MAX_THRUST_N,
        "pos_error_integral_limit": None,
    }
    MAX_INTEGRAL_DT = 0.1
    """Longest time step [s] the integral takes at once (a gap in the inputs must not wind it up)."""

    def provides(self) -> dict[str, int | None]:
        """Observation term name → dim this robot provides."""
        return {"pos_error": 3, "rotation_matrix": 9, "lin_vel": 3, "ang_vel": 3, "pos_error_integral": 3}

    def check_actions(self) -> None:
        """Check the manifest's action terms and the topic map against this robot."""
        _need_dim(self.provides(), self.obs_terms)
        names = [t["name"] for t in self.action_terms]
        if names == ["motor_rpm"]:
            self.mode, slot = "rpm", "motors"
        elif names == ["collective_thrust", "body_rates"]:
            self.mode, slot = "ctbr", "cmd_vel_legacy"
        else:
            raise ConfigError(f"artifact action terms {names} are not a Crazyflie command; expected ['motor_rpm'] or "
                              "['collective_thrust', 'body_rates']")
        if slot not in self.outputs:
            raise ConfigError(f"topic map: '{self.mode}' policies publish on output '{slot}', which the map lacks")
        goal = self.opt["goal"]
        if not (isinstance(goal, list) and len(goal) == 3 and all(isinstance(g, int | float) for g in goal)):
            raise ConfigError(f"topic map: option 'goal' must be 3 numbers, got {goal!r}")
        self.goal = np.asarray(goal, dtype=np.float64)
        for k in ("takeoff_s", "land_speed", "land_cutoff_z", "land_timeout_s"):
            if not (isinstance(self.opt[k], int | float) and self.opt[k] > 0):
                raise ConfigError(f"topic map: option '{k}' must be a number > 0, got {self.opt[k]!r}")
        self._ramp: tuple[np.ndarray, np.ndarray, float, float] | None = None  # start, end, t0, duration
        self.land_s = 0.0  # duration of the landing ramp in progress
        self.integral_limit = self._integral_limit()
        self.integral, self._integral_t = np.zeros(3), None

    def _integral_limit(self) -> float:
        """The clamp of `pos_error_integral`: the option, else the training run's env setting, else the task's."""
        lim = self.opt["pos_error_integral_limit"]
        if lim is None:
            env = (self.manifest.get("source") or {}).get("config", {}).get("env", {})
            lim = env.get("pos_error_integral_limit", 1.0) if isinstance(env, dict) else 1.0
        if not (isinstance(lim, int | float) and math.isfinite(lim) and lim > 0):
            raise ConfigError(f"topic map: option 'pos_error_integral_limit' must be a number > 0, got {lim!r}")
        return float(lim)

    def on_activate(self) -> None:
        """A new flight: the goal is `goal` again (no takeoff or landing ramp)."""
        self._ramp = None

    def reset_history(self) -> None:
        """Neutral history and ∫ pos_error dt from 0 again (after a fault or on activation: an episode start)."""
        super().reset_history()
        self.integral, self._integral_t = np.zeros(3), None

    def _position(self, msgs: dict[str, Any]) -> np.ndarray | None:
        s = msgs.get("state")
        if s is None:
            return None
        p = s.pose.pose.position
        return np.array([p.x, p.y, p.z])

    def takeoff(self, msgs: dict[str, Any], now: float) -> None:
        """Move the goal from the current position to `goal` over `takeoff_s` (crazyswarm2's takeoff, as a ramp)."""
        pos = self._position(msgs)
        self._ramp = None if pos is None else (pos, self.goal.copy(), now, float(self.opt["takeoff_s"]))

    def land(self, msgs: dict[str, Any], now: float) -> None:
        """Move the goal straight down from the current position to the ground at `land_speed`."""
        pos = self._position(msgs)
        if pos is None:
            return
        end = np.array([pos[0], pos[1], float(self.opt["ground_z"])])
        self.land_s = max(float(pos[2] - end[2]), 0.0) / float(self.opt["land_speed"])
        self._ramp = (pos, end, now, max(self.land_s, 1e-3))

    def landed(self, msgs: dict[str, Any]) -> bool:
        """The state estimate is within `land_cutoff_z` of the ground."""
        pos = self._position(msgs)
        return pos is not None and pos[2] < float(self.opt["ground_z"]) + float(self.opt["land_cutoff_z"])

    def motors_off(self) -> SafeCommand:
        """Stop the motors (the physical vector is the lowest command the manifest allows, for the action history)."""
        low = self.offset + np.minimum(self.scale * self.manifest["action"]["low"],
                                       self.scale * self.manifest["action"]["high"])
        return SafeCommand(low, done=True, phase="motors_off", motors_off=True)

    def estop_command(self) -> SafeCommand | None:
        """E-stop: motors off (`estop_motors_off`), else the safe sequence."""
        return self.motors_off() if self.opt["estop_motors_off"] else None

    def terms(self, msgs: dict[str, Any]) -> dict[str, np.ndarray]:
        """Observation terms from the latest messages."""
        s = msgs["state"]
        p, q, v, w = s.pose.pose.position, s.pose.pose.orientation, s.twist.twist.linear, s.twist.twist.angular
        rot = quat_to_rotmat(q.x, q.y, q.z, q.w)
        goal = self.goal
        if msgs.get("goal") is not None:
            g = msgs["goal"].point
            goal = np.array([g.x, g.y, g.z])
        elif self._ramp is not None:
            start, end, t0, duration = self._ramp
            alpha = min(max((self.now - t0) / duration, 0.0), 1.0)
            goal = start + alpha * (end - start)
        err = np.array([p.x, p.y, p.z]) - goal
        # ∫ e dt as the simulator's: 0 in the first observation, then + dt · (this observation's error)
        if self._integral_t is not None:
            dt = min(max(self.now - self._integral_t, 0.0), self.MAX_INTEGRAL_DT)
            self.integral = np.clip(self.integral + dt * err, -self.integral_limit, self.integral_limit)
        self._integral_t = self.now
        return {
            "pos_error": err,
            "pos_error_integral": self.integral.copy(),
            "rotation_matrix": rot.reshape(-1),  # row-major body-to-world
            "lin_vel": rot @ np.array([v.x, v.y, v.z]),  # body-frame twist → world frame
            "ang_vel": np.array([w.x, w.y, w.z]),
        }

    def commands(self, physical: np.ndarray, stamp: Any, safe: SafeCommand | None = None) -> dict[str, Any]:
        """Command messages for a clamped physical action (or motors off)."""
        off = safe is not None and safe.motors_off
        if self.mode == "rpm":
            from sensor_msgs.msg import JointState

            msg = JointState()
            msg.header.stamp = stamp
            msg.name = MOTOR_NAMES
            msg.velocity = [0.0] * 4 if off else (physical * RPM_TO_RAD_S).tolist()
            return {"motors": msg}
        from geometry_msgs.msg import Twist

        msg = Twist()
        if off:
            return {"cmd_vel_legacy": msg}  # thrust 0: the firmware stops the motors
        rates = np.degrees(physical[1:4])
        msg.linear.x, msg.linear.y, msg.angular.z = float(rates[0]), float(rates[1]), float(rates[2])
        msg.linear.z = thrust_to_pwm(float(physical[0]), self.opt["max_thrust_n"])
        return {"cmd_vel_legacy": msg}

    def safe(self, t: float, msgs: dict[str, Any], fresh: bool, last: np.ndarray | None) -> SafeCommand:
        """The safe physical command `t` s into a fault."""
        hover = self.offset.copy()  # a = 0: hover thrust, zero body rates
        if last is None:  # never commanded (e.g. started without a state estimate): do not spin up to hover
            return SafeCommand(self.motors_off().physical, done=True, phase="idle", motors_off=True)
        hover_s, land_s = float(self.opt["hover_s"]), float(self.opt["land_s"])
        on_ground = False
        if fresh and msgs.get("state") is not None:
            on_ground = msgs["state"].pose.pose.position.z < float(self.opt["ground_z"]) + 0.03
        if t < hover_s and not on_ground:
            return SafeCommand(hover, phase="hover")
        if t < hover_s + land_s and not on_ground:
            land = hover.copy()
            frac = float(self.opt["land_thrust_frac"])
            if self.mode == "rpm":
                land[:] = self.offset * math.sqrt(frac)  # thrust ∝ rpm²
            else:
                land[0] = self.offset[0] * frac
            return SafeCommand(land, phase="land")
        return SafeCommand(self.motors_off().physical, done=True, phase="landed", motors_off=True)


# ---------------------------------------------------------------------------------------------------------------- arm
class ArmAdapter(Adapter):
    """Arm: JointState (+ goal, TCP pose) in; forward-command Float64MultiArray and/or JointTrajectory out.

    Action terms: `joint_pos_target` or `joint_pos` (absolute, rad; `joint_pos` is what the robolearn arm tasks
    call it) or `joint_pos_delta` (added to the measured position) or `ee_pos_delta` + `ee_rot_delta` (the
    arm tasks' `ee_delta` mode: TCP translation [m] and axis-angle rotation [rad], base frame, turned into joint
    targets q + dq by damped-least-squares IK at the measured joint positions — `robolearn.core.kinematics` with
    the arm's MJCF from option `model`, its site `tcp_site`, damping `ik_damping`; targets clamped to the model's
    joint ranges), optionally followed by `gripper` (1: the opening of each finger [m], published on the
    `gripper_command` output as a one-element Float64MultiArray).
    Observation terms: `joint_pos`, `joint_vel`; `gripper_width` (the sum of the `gripper_joints` positions in
    the JointState); `ee_pos` and `ee_quat` (w, x, y, z; w ≥ 0) from the optional `tcp_pose` input (the robot's
    forward kinematics, e.g. franka's O_T_EE, base frame); for reach policies `goal_pos` (the task's command: the
    TCP goal, base frame) from the optional `goal` input (PointStamped, or PoseStamped's position) or, before any
    goal message, the `goal` option. A term whose source has sent nothing yet is invalid input (safe action).
    Safe action: hold the last measured position (or the last command if no measurement was ever received); the
    gripper keeps its last command. Delta policies (joint or TCP) hold with a zero delta.
    """

    kind = "arm"
    INPUTS = {
        "joint_states": Slot(("sensor_msgs/msg/JointState",), True, "measured joint positions/velocities"),
        "goal": Slot(("geometry_msgs/msg/PointStamped", "geometry_msgs/msg/PoseStamped"), False,
                     "reach goal (TCP position), base frame"),
        "tcp_pose": Slot(("geometry_msgs/msg/PoseStamped",), False, "TCP pose from forward kinematics, base frame"),
    }
    OUTPUTS = {
        "forward_command": Slot(("std_msgs/msg/Float64MultiArray",), False, "ros2_control forward position controller"),
        "trajectory": Slot(("trajectory_msgs/msg/JointTrajectory",), False, "joint trajectory controller"),
        "gripper_command": Slot(("std_msgs/msg/Float64MultiArray",), False, "finger opening [m] (gripper term)"),
    }
    OPTIONS = {"joints": [], "time_from_start_s": 0.0, "goal": [], "gripper_joints": [], "model": "",
               "tcp_site": "tcp", "ik_damping": 0.05}

    def provides(self) -> dict[str, int | None]:
        """Observation term name → dim this robot provides."""
        n = len(self.opt["joints"])
        out: dict[str, int | None] = {"joint_pos": n, "joint_vel": n, "goal_pos": 3, "ee_pos": 3, "ee_quat": 4}
        if self.opt["gripper_joints"]:
            out["gripper_width"] = 1
        return out

    def check_actions(self) -> None:
        """Check the manifest's action terms and the topic map against this robot."""
        joints = self.opt["joints"]
        if not joints or not all(isinstance(j, str) for j in joints):
            raise ConfigError("topic map: the arm adapter needs option 'joints' (joint names in policy order)")
        _need_dim(self.provides(), self.obs_terms)
        names = [t["name"] for t in self.action_terms]
        self.gripper = names[-1:] == ["gripper"]
        arm = names[:-1] if self.gripper else names
        if arm not in (["joint_pos_target"], ["joint_pos"], ["joint_pos_delta"], ["ee_pos_delta", "ee_rot_delta"]):
            raise ConfigError(f"artifact action terms {names}: the arm adapter commands ['joint_pos_target'], "
                              "['joint_pos'], ['joint_pos_delta'] or ['ee_pos_delta', 'ee_rot_delta'], optionally "
                              "followed by ['gripper']")
        self.n = len(joints)
        self.ee = arm == ["ee_pos_delta", "ee_rot_delta"]
        self.arm_dim = 6 if self.ee else self.n
        if self.action_dim != self.arm_dim + self.gripper:
            what = "6 (TCP translation + rotation)" if self.ee else f"{len(joints)} joints in option 'joints'"
            raise ConfigError(f"artifact action dim {self.action_dim} != {what}" + (" + 1 gripper" if self.gripper
                                                                                     else ""))
        self.kin = None
        if self.ee:
            self.kin = self._kinematics()
        if not self.outputs & {"forward_command", "trajectory"}:
            raise ConfigError("topic map: the arm adapter needs output 'forward_command' or 'trajectory'")
        if self.gripper and "gripper_command" not in self.outputs:
            raise ConfigError("topic map: the artifact commands a 'gripper' term; add output 'gripper_command'")
        self.delta = arm == ["joint_pos_delta"] or self.ee
        self._q: np.ndarray | None = None
        goal = self.opt["goal"]
        if goal and not (isinstance(goal, list) and len(goal) == 3 and all(isinstance(g, int | float) for g in goal)):
            raise ConfigError(f"topic map: option 'goal' must be 3 numbers (or absent), got {goal!r}")
        self.goal = np.asarray(goal, dtype=np.float64) if goal else None
        self.wanted = {t["name"] for t in self.obs_terms}

    def _kinematics(self) -> Any:
        """The arm's IK model for ee_delta policies (MuJoCo, imported only here)."""
        from robolearn.core.errors import RobolearnError
        from robolearn.core.kinematics import MjArmKinematics

        if not self.opt["model"]:
            raise ConfigError("topic map: ee_delta policies (ee_pos_delta, ee_rot_delta) need option 'model': the "
                              "arm's MJCF file, for the differential IK")
        if not (isinstance(self.opt["ik_damping"], int | float) and self.opt["ik_damping"] >= 0):
            raise ConfigError(f"topic map: option 'ik_damping' must be a number >= 0, got {self.opt['ik_damping']!r}")
        try:
            kin = MjArmKinematics(self.opt["model"], list(self.opt["joints"]), str(self.opt["tcp_site"]))
        except RobolearnError as e:
            raise ConfigError(f"topic map option 'model': {e}") from None
        m = kin.model
        limited = np.array([bool(m.jnt_limited[j]) for j in kin.joints])
        rng = np.array([m.jnt_range[j] for j in kin.joints])
        self.q_lo = np.where(limited, rng[:, 0], -np.inf)
        self.q_hi = np.where(limited, rng[:, 1], np.inf)
        return kin

    def terms(self, msgs: dict[str, Any]) -> dict[str, np.ndarray]:
        """Observation terms from the latest messages."""
        js = msgs["joint_states"]
        q, dq = joint_state(js, self.opt["joints"])
        self._q = q
        out = {"joint_pos": q, "joint_vel": dq}
        if "gripper_width" in self.wanted:
            out["gripper_width"] = np.array([joint_state(js, self.opt["gripper_joints"])[0].sum()])
        g = msgs.get("goal")
        if g is not None:
            p = g.point if hasattr(g, "point") else g.pose.position
            out["goal_pos"] = np.array([p.x, p.y, p.z])
        elif self.goal is not None:
            out["goal_pos"] = self.goal
        elif "goal_pos" in self.wanted:
            raise ValueError("no goal yet: the policy observes 'goal_pos' and input 'goal' has sent nothing "
                             "(nor is option 'goal' set)")
        tcp = msgs.get("tcp_pose")
        if tcp is not None:
            p, o = tcp.pose.position, tcp.pose.orientation
            quat = np.array([o.w, o.x, o.y, o.z])
            out["ee_pos"], out["ee_quat"] = np.array([p.x, p.y, p.z]), quat if quat[0] >= 0 else -quat
        elif self.wanted & {"ee_pos", "ee_quat"}:
            raise ValueError("no TCP pose yet: the policy observes 'ee_pos'/'ee_quat' and input 'tcp_pose' has "
                             "sent nothing")
        return out

    def target(self, physical: np.ndarray) -> np.ndarray:
        """Joint position targets for a physical action (delta actions add the measured position)."""
        arm = physical[:self.arm_dim]
        if self.ee:
            if self._q is None:
                raise ValueError("no joint state yet: TCP deltas need the measured joint positions")
            if not arm.any():
                return self._q.copy()  # hold (the safe action): exactly the measured position
            q = self.kin.ik_step(self._q, arm[:3], arm[3:6], float(self.opt["ik_damping"]))
            return np.clip(q, self.q_lo, self.q_hi)
        if self.delta:
            return (self._q if self._q is not None else np.zeros(self.n)) + arm
        return arm

    def commands(self, physical: np.ndarray, stamp: Any, safe: SafeCommand | None = None) -> dict[str, Any]:
        """Command messages for a clamped physical action."""
        if self.ee and self._q is None:
            return {}  # a TCP delta needs a measured joint state; none yet: command nothing
        q = self.target(physical)
        out: dict[str, Any] = {}
        if "forward_command" in self.outputs:
            from std_msgs.msg import Float64MultiArray

            out["forward_command"] = Float64MultiArray(data=q.tolist())
        if "trajectory" in self.outputs:
            from builtin_interfaces.msg import Duration
            from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

            tfs = float(self.opt["time_from_start_s"])
            msg = JointTrajectory(joint_names=list(self.opt["joints"]))
            msg.header.stamp = stamp
            msg.points = [JointTrajectoryPoint(positions=q.tolist(), time_from_start=Duration(
                sec=int(tfs), nanosec=int((tfs % 1) * 1e9)))]
            out["trajectory"] = msg
        if self.gripper:
            from std_msgs.msg import Float64MultiArray

            out["gripper_command"] = Float64MultiArray(data=[float(physical[self.arm_dim])])
        return out

    def safe(self, t: float, msgs: dict[str, Any], fresh: bool, last: np.ndarray | None) -> SafeCommand:
        """The safe physical command `t` s into a fault."""
        hold = (last if last is not None else self.offset).copy()  # the gripper keeps its last command
        if self.delta:
            hold[:self.arm_dim] = 0.0  # target = measured position
            return SafeCommand(hold, done=True, phase="hold")
        if fresh and msgs.get("joint_states") is not None:
            try:
                hold[:self.n] = joint_state(msgs["joint_states"], self.opt["joints"])[0]
                return SafeCommand(hold, done=True, phase="hold")
            except ValueError:
                pass
        if self._q is not None:
            hold[:self.n] = self._q
        return SafeCommand(hold, done=True, phase="hold")


# ------------------------------------------------------------------------------------------------------------- legged
class LeggedAdapter(Adapter):
    """Legged robot: JointState + Imu (+ optional Twist velocity command) in; targets + gains out.

    Output `joint_command` is a Float64MultiArray of shape (3, n) — rows q_target [rad], kp, kd — with the
    layout's dim labels "field" and "joint" saying so. Safe action: damping (kp = 0, kd = `damping_kd`,
    q_target = measured position) or, with `safe_mode: stand`, the action offset (default pose) with the
    policy gains.
    """

    kind = "legged"
    INPUTS = {
        "joint_states": Slot(("sensor_msgs/msg/JointState",), True, "joint positions/velocities"),
        "imu": Slot(("sensor_msgs/msg/Imu",), True, "base orientation and gyro"),
        "cmd_vel": Slot(("geometry_msgs/msg/Twist",), False, "velocity command (vx, vy, yaw rate)"),
    }
    OUTPUTS = {"joint_command": Slot(("std_msgs/msg/Float64MultiArray",), True, "(3, n): q_target, kp, kd")}
    OPTIONS = {"joints": [], "default_joint_pos": [], "kp": 20.0, "kd": 0.5, "damping_kd": 1.0,
               "safe_mode": "damping"}

    def provides(self) -> dict[str, int | None]:
        """Observation term name → dim this robot provides."""
        n = len(self.opt["joints"])
        return {"base_ang_vel": 3, "projected_gravity": 3, "velocity_command": 3, "joint_pos": n, "joint_pos_rel": n,
                "joint_vel": n}

    def check_actions(self) -> None:
        """Check the manifest's action terms and the topic map against this robot."""
        joints = self.opt["joints"]
        if not joints:
            raise ConfigError("topic map: the legged adapter needs option 'joints' (joint names in policy order)")
        _need_dim(self.provides(), self.obs_terms)
        names = [t["name"] for t in self.action_terms]
        if names != ["joint_pos_target"] or self.action_dim != len(joints):
            raise ConfigError(f"artifact action terms {names} (dim {self.action_dim}): the legged adapter commands "
                              f"['joint_pos_target'] for its {len(joints)} joints")
        n = len(joints)
        default = self.opt["default_joint_pos"] or [0.0] * n
        if len(default) != n:
            raise ConfigError(f"topic map: option 'default_joint_pos' has {len(default)} values for {n} joints")
        self.default = np.asarray(default, dtype=np.float64)
        self.kp, self.kd = (np.broadcast_to(np.asarray(self.opt[k], dtype=np.float64), (n,)).copy()
                            for k in ("kp", "kd"))
        if self.opt["safe_mode"] not in ("damping", "stand"):
            raise ConfigError(f"topic map: option 'safe_mode' is {self.opt['safe_mode']!r}; choose damping or stand")
        self._q: np.ndarray | None = None

    def terms(self, msgs: dict[str, Any]) -> dict[str, np.ndarray]:
        """Observation terms from the latest messages."""
        q, dq = joint_state(msgs["joint_states"], self.opt["joints"])
        self._q = q
        imu = msgs["imu"]
        o, w = imu.orientation, imu.angular_velocity
        rot = quat_to_rotmat(o.x, o.y, o.z, o.w)
        cmd = np.zeros(3)
        if msgs.get("cmd_vel") is not None:
            c = msgs["cmd_vel"]
            cmd = np.array([c.linear.x, c.linear.y, c.angular.z])
        return {
            "base_ang_vel": np.array([w.x, w.y, w.z]),
            "projected_gravity": rot.T @ np.array([0.0, 0.0, -1.0]),  # gravity direction in the base frame
            "velocity_command": cmd,
            "joint_pos": q,
            "joint_pos_rel": q - self.default,
            "joint_vel": dq,
        }

    def _msg(self, q: np.ndarray, kp: np.ndarray, kd: np.ndarray) -> Any:
        """The (3, n) command array with its layout."""
        from std_msgs.msg import Float64MultiArray, MultiArrayDimension

        n = len(q)
        msg = Float64MultiArray(data=np.concatenate([q, kp, kd]).tolist())
        msg.layout.dim = [MultiArrayDimension(label="field", size=3, stride=3 * n),
                          MultiArrayDimension(label="joint", size=n, stride=n)]
        return msg

    def commands(self, physical: np.ndarray, stamp: Any, safe: SafeCommand | None = None) -> dict[str, Any]:
        """Command messages for a clamped physical action."""
        kp, kd = self.kp, self.kd
        if safe is not None and safe.extra.get("damping"):
            kp, kd = np.zeros_like(self.kp), np.full_like(self.kd, float(self.opt["damping_kd"]))
        return {"joint_command": self._msg(physical, kp, kd)}

    def safe(self, t: float, msgs: dict[str, Any], fresh: bool, last: np.ndarray | None) -> SafeCommand:
        """The safe physical command `t` s into a fault."""
        if self.opt["safe_mode"] == "stand":
            return SafeCommand(self.offset.copy(), done=True, phase="stand")
        q = self._q if self._q is not None else (last if last is not None else self.offset.copy())
        return SafeCommand(q.copy(), done=True, phase="damping", extra={"damping": True})


ADAPTERS: dict[str, type[Adapter]] = {a.kind: a for a in (CrazyflieAdapter, ArmAdapter, LeggedAdapter)}
