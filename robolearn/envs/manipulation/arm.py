"""Franka-class 7-DoF arm tasks on a MuJoCo backend: `arm-reach`, `arm-lift` and `arm-pick-place` (a ~4 cm cube).

One task definition runs on `mujoco_cpu` or `mjwarp` (config field `backend`). The robot model is
`sim_assets/franka_arm/` (written by this project; figures and sources in its README).

Actions (normalized to [-1, 1], applied at 1 / (sim_dt * decimation) Hz):
    "ee_delta"   TCP position delta (3, ≤ `ee_pos_step` m per step) and rotation delta (3, axis-angle in the
                 world frame, ≤ `ee_rot_step` rad per step) relative to the current TCP pose, solved for joint
                 targets by damped-least-squares differential IK; then the gripper opening (1)
    "joint_pos"  absolute joint position targets home + `joint_scale` * a (7, clamped to the joint range);
                 then the gripper opening (1)
The gripper term maps a ∈ [-1, 1] to a finger opening of 0 (closed) … 4 cm (open) per finger.

Observations: "policy" is what the real robot reports (joint encoders, gripper width, the TCP pose from its
forward kinematics, the last action) plus the task command (reach goal) or a perception estimate of the
cube pose (noisy); "critic" adds the exact cube pose and velocity, finger contact forces and the randomized
physical parameters (as scale factors of their nominal values). With `cameras` set, "policy" becomes a dict
of named terms: {"state": (N, D), "rgb_<camera>": (N, H, W, 3) uint8, "depth_<camera>": (N, H, W) m}.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from robolearn.core.errors import ConfigError
from robolearn.core.kinematics import dls_step, hinge_jacobian
from robolearn.core.math import quat_normalize, quat_to_rotmat
from robolearn.core.types import ActionSpec, ActionTerm, Obs, ObsTerm, TaskSpec, VizCurve
from robolearn.envs.manipulation.mujoco_task import MujocoTaskCfg, MujocoTaskEnv
from robolearn.sim.backend import import_mujoco

ROBOT = "franka-arm"
ASSETS = Path(__file__).resolve().parents[3] / "sim_assets" / "franka_arm"
ARM_JOINTS = 7
HOME = (0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785)
"""Franka's "ready" pose [rad]: TCP 0.31 m in front of the base, 0.49 m up, pointing down."""
FINGER_OPEN = 0.04
"""Opening of one finger [m] at a = +1 (the Franka Hand opens 8 cm in total)."""


@dataclass(kw_only=True)
class ArmCfg(MujocoTaskCfg):
    """Shared settings of the arm tasks: backend, action mode, randomization, observation noise, cameras."""

    num_envs: int = 64
    sim_dt: float = 0.004
    """Physics step [s] (overrides the MJCF timestep)."""
    decimation: int = 5
    """Physics steps per policy step: 50 Hz policy."""
    episode_length_s: float = 4.0
    action_mode: Literal["ee_delta", "joint_pos"] = "ee_delta"
    """"ee_delta": TCP pose deltas through differential IK; "joint_pos": absolute joint targets."""
    ee_pos_step: float = 0.05
    """ee_delta: TCP translation per policy step at |a| = 1 [m]."""
    ee_rot_step: float = 0.1
    """ee_delta: TCP rotation per policy step at |a| = 1 [rad]."""
    ik_damping: float = 0.05
    """Damping λ of the least-squares IK: dq = Jᵀ (J Jᵀ + λ² I)⁻¹ e."""
    joint_scale: float = 1.0
    """joint_pos: joint target at |a| = 1 relative to home [rad]."""
    init_joint_noise: float = 0.05
    """Initial joint positions: home + U(± this) [rad]."""
    randomize: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {"friction": (0.7, 1.3), "mass": (0.8, 1.2), "damping": (0.8, 1.25), "kp": (0.8, 1.2)}
    )
    """Per-episode scale ranges of physical parameters (nominal × U(low, high)): "friction" (finger pads),
    "mass" (links 1–7), "damping" (arm joints), "kp" (arm position servos); arm-lift also draws the cube's
    mass and friction (`object_mass`, `object_friction`).
    An empty dict turns randomization off."""
    obs_noise: dict[str, float] = field(
        default_factory=lambda: {"joint_pos": 0.001, "joint_vel": 0.01, "object": 0.002}
    )
    """Standard deviation of Gaussian noise per policy term (joint_pos [rad], joint_vel [rad/s], object [m])."""
    cameras: tuple[str, ...] = ()
    """Cameras rendered into obs["policy"] ("wrist", "front"); empty: state-only, obs["policy"] is a tensor."""
    success_radius: float = 0.02
    """Reach: success when the TCP is within this distance of the goal [m]."""


class ArmEnv(MujocoTaskEnv[ArmCfg]):
    """Base class of the arm tasks; subclasses define the scene, the command/object and the rewards."""

    task_name = "arm"
    description = ""
    assets = ASSETS
    scene = "scene_reach.xml"
    camera_names = {"wrist": "wrist", "front": "front"}
    viz_camera = "front"
    """MJCF camera of the evaluation video (episodes.mp4)."""
    termination_terms: tuple[str, ...] = ("failure",)

    def __init__(self, cfg: ArmCfg, seed: int = 0) -> None:
        self.spec = self.make_spec(cfg)
        super().__init__(cfg, seed)
        m, n, dev = self.model, self.num_envs, self.device
        self._ids(m)
        self.home = torch.tensor(HOME, device=dev)
        self.joint_low = torch.tensor(m.jnt_range[:ARM_JOINTS, 0], dtype=torch.float32, device=dev)
        self.joint_high = torch.tensor(m.jnt_range[:ARM_JOINTS, 1], dtype=torch.float32, device=dev)
        self.joint_target = self.home.expand(n, -1).clone()
        self.gripper_target = torch.full((n,), FINGER_OPEN, device=dev)
        self.prev_action = torch.zeros(n, self.spec.action.dim, device=dev)
        self.failed = torch.zeros(n, dtype=torch.bool, device=dev)
        self.succeeded = torch.zeros(n, dtype=torch.bool, device=dev)
        self.ever_succeeded = torch.zeros(n, dtype=torch.bool, device=dev)
        self.rand_scale = {k: torch.ones(n, len(ids), device=dev) for k, (_, ids) in self._rand_fields().items()}

    # ---- model ids -----------------------------------------------------------------------------
    def _ids(self, m: Any) -> None:
        mujoco = import_mujoco()
        name = mujoco.mj_name2id
        self.tcp_site = name(m, mujoco.mjtObj.mjOBJ_SITE, "tcp")
        self.finger_qpos = [int(m.jnt_qposadr[name(m, mujoco.mjtObj.mjOBJ_JOINT, f"finger_{s}")]) for s in
                            ("left", "right")]
        self.pad_geoms = [name(m, mujoco.mjtObj.mjOBJ_GEOM, g) for g in ("left_pad", "right_pad")]
        self.link_bodies = [name(m, mujoco.mjtObj.mjOBJ_BODY, f"link{i}") for i in range(1, 8)]

    def _rand_fields(self) -> dict[str, tuple[str, list[int]]]:
        """Randomization name -> (backend field, element ids)."""
        return {
            "friction": ("geom_friction", list(self.pad_geoms)),
            "mass": ("body_mass", list(self.link_bodies)),
            "damping": ("dof_damping", list(range(ARM_JOINTS))),
            "kp": ("actuator_kp", list(range(ARM_JOINTS))),
        }

    # ---- specification -------------------------------------------------------------------------
    @classmethod
    def reward_term_names(cls) -> list[str]:
        """Named reward terms (see `_reward_terms`)."""
        raise NotImplementedError

    @classmethod
    def task_policy_terms(cls, cfg: ArmCfg) -> tuple[ObsTerm, ...]:
        """Task-specific policy terms after the robot's own (goal or object estimate)."""
        return ()

    @classmethod
    def task_critic_terms(cls, cfg: ArmCfg) -> tuple[ObsTerm, ...]:
        """Task-specific privileged terms."""
        return ()

    @classmethod
    def num_rand_params(cls) -> int:
        """Length of the critic's randomized-parameter term."""
        return 2 + 7 + 7 + 7

    @classmethod
    def make_spec(cls, cfg: ArmCfg) -> TaskSpec:
        """Observation and action specification for a config (no simulator needed)."""
        if cfg.action_mode == "ee_delta":
            arm: tuple[ActionTerm, ...] = (
                ActionTerm("ee_pos_delta", 3, "m", (cfg.ee_pos_step,) * 3, (0.0,) * 3,
                           "TCP translation per step, world frame"),
                ActionTerm("ee_rot_delta", 3, "rad", (cfg.ee_rot_step,) * 3, (0.0,) * 3,
                           "TCP rotation per step (axis-angle), world frame"),
            )
        elif cfg.action_mode == "joint_pos":
            arm = (ActionTerm("joint_pos", ARM_JOINTS, "rad", (cfg.joint_scale,) * ARM_JOINTS, HOME,
                              "joint position targets (clamped to the joint range)"),)
        else:
            raise ConfigError(f"{cls.task_name}: unknown action_mode '{cfg.action_mode}' (ee_delta or joint_pos)")
        gripper = ActionTerm("gripper", 1, "m", (FINGER_OPEN / 2,), (FINGER_OPEN / 2,), "opening of each finger")
        terms = arm + (gripper,)
        adim = sum(t.dim for t in terms)
        for cam in cfg.cameras:
            if cam not in cls.camera_names:
                raise ConfigError(f"{cls.task_name}: unknown camera '{cam}' (wrist or front)")
        policy = (
            ObsTerm("joint_pos", ARM_JOINTS, "rad", "arm joint positions (encoders)"),
            ObsTerm("joint_vel", ARM_JOINTS, "rad/s", "arm joint velocities"),
            ObsTerm("gripper_width", 1, "m", "distance between the fingers"),
            ObsTerm("ee_pos", 3, "m", "TCP position from forward kinematics, base frame"),
            ObsTerm("ee_quat", 4, "", "TCP orientation (w, x, y, z) from forward kinematics, base frame"),
            *cls.task_policy_terms(cfg),
            ObsTerm("last_action", adim, "", "previous normalized action", source="last_action"),
        )
        critic = policy + (
            *cls.task_critic_terms(cfg),
            ObsTerm("finger_force", 2, "N", "normal contact force on the left/right finger pads"),
            ObsTerm("params", cls.num_rand_params(), "",
                    "randomized pad friction(2), link mass(7), joint damping(7), servo kp(7), each / nominal"),
        )
        return TaskSpec(
            name=cls.task_name,
            obs_terms={"policy": policy, "critic": critic},
            action=ActionSpec(terms, rate_hz=1.0 / cfg.step_dt, mode=cfg.action_mode),
            robot=ROBOT,
            description=cls.description,
            reward_scales=dict(cfg.reward_scales),
        )

    # ---- robot state ---------------------------------------------------------------------------
    @property
    def joint_pos(self) -> Tensor:
        """(N, 7) [rad]."""
        return self.sim.qpos[:, :ARM_JOINTS]

    @property
    def joint_vel(self) -> Tensor:
        """(N, 7) [rad/s]."""
        return self.sim.qvel[:, :ARM_JOINTS]

    @property
    def gripper_width(self) -> Tensor:
        """(N,) distance between the fingers [m]."""
        q = self.sim.qpos
        return q[:, self.finger_qpos[0]] + q[:, self.finger_qpos[1]]

    @property
    def ee_pos(self) -> Tensor:
        """(N, 3) TCP position [m]."""
        return self.sim.site_xpos[:, self.tcp_site]

    @property
    def ee_rot(self) -> Tensor:
        """(N, 3, 3) TCP orientation (TCP-to-world)."""
        return self.sim.site_xmat[:, self.tcp_site]

    @property
    def ee_quat(self) -> Tensor:
        """(N, 4) TCP orientation (w, x, y, z), w ≥ 0."""
        return quat_normalize(self.sensor("tcp_quat"))

    def ee_jacobian(self) -> Tensor:
        """(N, 6, 7) TCP Jacobian [linear; angular] w.r.t. the arm joints (all hinges, all ancestors of the TCP)."""
        return hinge_jacobian(self.sim.xaxis[:, :ARM_JOINTS], self.sim.xanchor[:, :ARM_JOINTS], self.ee_pos)

    # ---- hooks ---------------------------------------------------------------------------------
    def _apply_action(self, action: Tensor) -> None:
        cfg = self.cfg
        if cfg.action_mode == "ee_delta":
            dpos = cfg.ee_pos_step * action[:, 0:3]
            drot = cfg.ee_rot_step * action[:, 3:6]
            # dq = Jᵀ (J Jᵀ + λ² I)⁻¹ [Δp; Δθ]   (damped least squares)
            target = self.joint_pos + dls_step(self.ee_jacobian(), torch.cat((dpos, drot), -1), cfg.ik_damping)
        else:
            target = self.home + cfg.joint_scale * action[:, :ARM_JOINTS]
        self.joint_target = torch.minimum(torch.maximum(target, self.joint_low), self.joint_high)
        self.gripper_target = FINGER_OPEN / 2 * (action[:, -1] + 1)
        self._ctrl = torch.cat((self.joint_target, self.gripper_target[:, None]), -1)
        self._substeps_pending = True

    def _policy_state(self) -> Tensor:
        noise, n = self.cfg.obs_noise, self.num_envs
        return torch.cat(
            (
                self.joint_pos + noise.get("joint_pos", 0.0) * self.randn(n, ARM_JOINTS),
                self.joint_vel + noise.get("joint_vel", 0.0) * self.randn(n, ARM_JOINTS),
                self.gripper_width[:, None],
                self.ee_pos,
                self.ee_quat,
                *self._task_policy_obs(),
                self.action,
            ),
            -1,
        )

    def _observe(self) -> Obs:
        state = self._policy_state()
        force = torch.cat((self.sensor("left_touch"), self.sensor("right_touch")), -1)
        params = torch.cat([self.rand_scale[k] for k in ("friction", "mass", "damping", "kp")], -1)
        critic = torch.cat((state, *self._task_critic_obs(), force, params), -1)
        if not self.cfg.cameras:
            return {"policy": state, "critic": critic}
        return {"policy": {"state": state, **self.render_images()}, "critic": critic}

    def _reset_idx(self, env_ids: Tensor) -> None:
        cfg, k = self.cfg, len(env_ids)
        self._randomize(env_ids)
        qpos = torch.zeros(k, self.model.nq, device=self.device)
        qvel = torch.zeros(k, self.model.nv, device=self.device)
        noise = cfg.init_joint_noise
        qpos[:, :ARM_JOINTS] = self.home + self.uniform(-noise, noise, k, ARM_JOINTS)
        qpos[:, self.finger_qpos] = FINGER_OPEN
        self._reset_task(env_ids, qpos)
        ctrl = torch.cat((qpos[:, :ARM_JOINTS], qpos[:, self.finger_qpos[:1]]), -1)
        self.sim.reset_idx(env_ids, qpos, qvel, ctrl)
        self._ctrl = self.sim.ctrl.clone()
        self.joint_target[env_ids] = qpos[:, :ARM_JOINTS]
        self.gripper_target[env_ids] = FINGER_OPEN
        self.action[env_ids] = 0.0
        self.prev_action[env_ids] = 0.0
        self.failed[env_ids] = False
        self.succeeded[env_ids] = False
        self.ever_succeeded[env_ids] = False

    def _randomize(self, env_ids: Tensor) -> None:
        k = len(env_ids)
        for name, (fld, ids) in self._rand_fields().items():
            low, high = self.cfg.randomize.get(name, (1.0, 1.0))
            scale = self.uniform(low, high, k, len(ids))
            if name == "friction":  # one friction coefficient for both pads
                scale = scale[:, :1].expand(-1, len(ids))
            self.rand_scale[name][env_ids] = scale
            self.sim.set_params(env_ids, fld, ids, scale)
        self._randomize_task(env_ids)

    def _reset_task(self, env_ids: Tensor, qpos: Tensor) -> None:
        """Sample the task's goal/object state; may write object coordinates into `qpos` (K, nq)."""

    def _randomize_task(self, env_ids: Tensor) -> None:
        """Task-level parameter randomization (object mass, friction)."""

    def _task_policy_obs(self) -> tuple[Tensor, ...]:
        return ()

    def _task_critic_obs(self) -> tuple[Tensor, ...]:
        return ()

    def _common_terms(self) -> dict[str, Tensor]:
        terms = {
            "action_rate": (self.action - self.prev_action).square().sum(-1),
            "joint_vel": self.joint_vel.square().sum(-1),
        }
        self.prev_action = self.action.clone()
        return terms

    def _terminated(self) -> Tensor:
        return self.failed | self.succeeded

    def _task_metrics(self, done_ids: Tensor) -> dict[str, Tensor]:
        return {"success": self.ever_succeeded[done_ids].float(), "failure": self.failed[done_ids].float()}

    def viz_curves(self) -> tuple[VizCurve, ...]:
        """What `robolearn eval` plots per episode: the task's curves, the gripper opening, success."""
        return (
            *self._task_viz_curves(),
            VizCurve("gripper opening", "cm", lambda env: env.gripper_width, scale=100.0),
            VizCurve("success", "", lambda env: env.ever_succeeded, kind="success"),
        )

    def _task_viz_curves(self) -> tuple[VizCurve, ...]:
        return ()

    def expert_action(self, obs: Obs) -> Tensor:
        """The task's scripted expert (ee_delta mode); see `robolearn.envs.manipulation.expert`."""
        from robolearn.envs.manipulation import expert

        if self.cfg.action_mode != "ee_delta":
            raise ConfigError(f"{self.spec.name}: the scripted expert commands TCP deltas; set action_mode: ee_delta")
        return expert.expert_action(self, obs)


# ---------------------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class ReachCfg(ArmCfg):
    """Move the TCP to a random goal position (gripper pointing down) and stop there."""

    episode_length_s: float = 3.0
    goal_low: tuple[float, float, float] = (0.35, -0.25, 0.15)
    """Goal box lower corner (x, y, z) [m], base frame."""
    goal_high: tuple[float, float, float] = (0.65, 0.25, 0.5)
    """Goal box upper corner [m]."""
    reward_scales: dict[str, float] = field(
        default_factory=lambda: {"position": -1.0, "proximity": 1.0, "action_rate": -0.01, "joint_vel": -0.001,
                                 "success": 10.0, "failure": -10.0}
    )
    """position ‖e‖, proximity 1 − tanh(‖e‖ / 0.1), action_rate ‖a_t − a_{t−1}‖², joint_vel ‖q̇‖²,
    success 1 once (bonus), failure 1 once (TCP into the table)."""


class ReachEnv(ArmEnv):
    """arm-reach: bring the TCP within `success_radius` of a goal, low joint speed (success ends the episode)."""

    task_name = "arm-reach"
    description = "Franka-class arm: move the gripper to a random goal position"
    scene = "scene_reach.xml"
    termination_terms = ("success", "failure")

    def __init__(self, cfg: ReachCfg, seed: int = 0) -> None:
        super().__init__(cfg, seed)
        self.goal = torch.zeros(self.num_envs, 3, device=self.device)

    @classmethod
    def reward_term_names(cls) -> list[str]:
        """Named reward terms."""
        return ["position", "proximity", "action_rate", "joint_vel", "success", "failure"]

    @classmethod
    def task_policy_terms(cls, cfg: ArmCfg) -> tuple[ObsTerm, ...]:
        """The goal is a command."""
        return (ObsTerm("goal_pos", 3, "m", "goal position, base frame", source="command"),)

    def _task_policy_obs(self) -> tuple[Tensor, ...]:
        return (self.goal,)

    def _reset_task(self, env_ids: Tensor, qpos: Tensor) -> None:
        cfg = self.cfg
        low = torch.tensor(cfg.goal_low, device=self.device)
        high = torch.tensor(cfg.goal_high, device=self.device)
        self.goal[env_ids] = low + (high - low) * self.rand(len(env_ids), 3)

    def _reward_terms(self) -> dict[str, Tensor]:
        err = (self.ee_pos - self.goal).norm(dim=-1)
        self.succeeded = (err < self.cfg.success_radius) & (self.joint_vel.norm(dim=-1) < 0.2)
        self.ever_succeeded |= self.succeeded
        self.failed = self.ee_pos[:, 2] < 0.0
        return {
            "position": err,
            "proximity": 1 - torch.tanh(err / 0.1),
            **self._common_terms(),
            "success": self.succeeded.float() / self.step_dt,  # one-off bonus, not a rate
            "failure": self.failed.float() / self.step_dt,
        }

    def _task_metrics(self, done_ids: Tensor) -> dict[str, Tensor]:
        m = super()._task_metrics(done_ids)
        m["final_pos_error"] = (self.ee_pos[done_ids] - self.goal[done_ids]).norm(dim=-1)
        return m

    def _task_viz_curves(self) -> tuple[VizCurve, ...]:
        return (VizCurve("TCP to goal", "cm", lambda env: (env.ee_pos - env.goal).norm(dim=-1), scale=100.0,
                         threshold=100.0 * self.cfg.success_radius),)


# ---------------------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class LiftCfg(ArmCfg):
    """Grasp a 4 cm cube from the table and lift it above `lift_height`."""

    episode_length_s: float = 5.0
    object_xy_low: tuple[float, float] = (0.4, -0.15)
    """Cube start area lower corner (x, y) [m]."""
    object_xy_high: tuple[float, float] = (0.6, 0.15)
    """Cube start area upper corner [m]."""
    object_yaw: float = math.pi / 4
    """Cube start yaw: U(± this) [rad]."""
    object_mass: tuple[float, float] = (0.05, 0.3)
    """Cube mass range [kg] (nominal 0.1)."""
    object_friction: tuple[float, float] = (0.6, 1.2)
    """Cube sliding friction range (nominal 1.0)."""
    object_half_size: tuple[float, float] = (0.018, 0.022)
    """Cube half edge length range [m] (nominal 0.02: a 4 cm cube)."""
    lift_height: float = 0.1
    """Success: cube centre this far above its resting height [m], held between the fingers."""
    reward_scales: dict[str, float] = field(
        default_factory=lambda: {"reach": 1.0, "grasp": 1.0, "lift": 5.0, "action_rate": -0.01,
                                 "joint_vel": -0.001, "success": 20.0, "failure": -10.0}
    )
    """reach 1 − tanh(‖TCP − cube‖ / 0.1), grasp 1 while both pads touch the cube, lift min(Δz, lift_height) /
    lift_height, action_rate, joint_vel, success 1 once, failure 1 once (cube off the table or TCP into it)."""


class LiftEnv(ArmEnv):
    """arm-lift: pick the cube up (success ends the episode)."""

    task_name = "arm-lift"
    description = "Franka-class arm: grasp a cube and lift it 10 cm"
    scene = "scene_lift.xml"
    termination_terms = ("success", "failure")
    object_name = "cube"
    """MJCF name of the object's body, free joint and geom (sensors `<name>_pos`, `<name>_quat`)."""
    object_half_height = 0.0
    """Half height of the object if it is not a cube (0: a cube, its half size comes from object_params)."""

    def __init__(self, cfg: LiftCfg, seed: int = 0) -> None:
        n, dev = cfg.num_envs, torch.device(cfg.device)
        self.object_params = torch.ones(n, 3, device=dev)  # cube mass [kg], friction, half size [m] (on reset)
        super().__init__(cfg, seed)
        mujoco, m, name = import_mujoco(), self.model, self.object_name
        self.cube_qpos = int(m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, name)])
        self.cube_dof = int(m.jnt_dofadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, name)])
        self.cube_body = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, name)
        self.cube_geom = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, name)

    @classmethod
    def reward_term_names(cls) -> list[str]:
        """Named reward terms."""
        return ["reach", "grasp", "lift", "action_rate", "joint_vel", "success", "failure"]

    @classmethod
    def task_policy_terms(cls, cfg: ArmCfg) -> tuple[ObsTerm, ...]:
        """The cube as a perception system reports it (noisy position, yaw as cos/sin of 4·yaw, size)."""
        return (
            ObsTerm("object_pos", 3, "m", "cube position estimate (perception, noisy), base frame"),
            ObsTerm("object_yaw4", 2, "", "cos, sin of 4 × cube yaw (a cube looks the same every 90°)"),
            ObsTerm("object_half_size", 1, "m", "half edge length of the cube (perception)"),
        )

    @classmethod
    def task_critic_terms(cls, cfg: ArmCfg) -> tuple[ObsTerm, ...]:
        """Exact cube state."""
        return (
            ObsTerm("object_pose", 7, "m, quat", "exact cube position and orientation (w, x, y, z)"),
            ObsTerm("object_vel", 6, "m/s, rad/s", "cube linear and angular velocity"),
            ObsTerm("object_params", 3, "kg, -, m", "cube mass, sliding friction, half edge length"),
        )

    @property
    def cube_pos(self) -> Tensor:
        """(N, 3) [m]."""
        return self.sensor(f"{self.object_name}_pos")

    @property
    def cube_half(self) -> Tensor:
        """(N,) half edge length of each env's cube [m]."""
        return self.object_params[:, 2]

    @property
    def cube_quat(self) -> Tensor:
        """(N, 4) (w, x, y, z)."""
        return quat_normalize(self.sensor(f"{self.object_name}_quat"))

    def cube_yaw4(self) -> Tensor:
        """(N, 2) cos/sin of 4 × yaw of the cube (yaw from its x-axis in the horizontal plane)."""
        x_axis = quat_to_rotmat(self.cube_quat)[:, :, 0]
        yaw = torch.atan2(x_axis[:, 1], x_axis[:, 0])
        return torch.stack((torch.cos(4 * yaw), torch.sin(4 * yaw)), -1)

    def _task_policy_obs(self) -> tuple[Tensor, ...]:
        sigma = self.cfg.obs_noise.get("object", 0.0)
        return (self.cube_pos + sigma * self.randn(self.num_envs, 3), self.cube_yaw4(), self.cube_half[:, None])

    def _task_critic_obs(self) -> tuple[Tensor, ...]:
        qvel = self.sim.qvel
        return (self.cube_pos, self.cube_quat, qvel[:, self.cube_dof : self.cube_dof + 6], self.object_params)

    def _reset_task(self, env_ids: Tensor, qpos: Tensor) -> None:
        cfg, k = self.cfg, len(env_ids)
        low = torch.tensor(cfg.object_xy_low, device=self.device)
        high = torch.tensor(cfg.object_xy_high, device=self.device)
        a = self.cube_qpos
        qpos[:, a : a + 2] = low + (high - low) * self.rand(k, 2)
        qpos[:, a + 2] = self.object_params[env_ids, 2] if not self.object_half_height else self.object_half_height
        yaw = self.uniform(-cfg.object_yaw, cfg.object_yaw, k)
        qpos[:, a + 3] = torch.cos(yaw / 2)
        qpos[:, a + 6] = torch.sin(yaw / 2)

    def _randomize_task(self, env_ids: Tensor) -> None:
        cfg, k = self.cfg, len(env_ids)
        mass = self.uniform(*cfg.object_mass, k)
        friction = self.uniform(*cfg.object_friction, k)
        half = self.uniform(*cfg.object_half_size, k)
        self.object_params[env_ids] = torch.stack((mass, friction, half), -1)
        self._apply_object_params(env_ids)

    def _apply_object_params(self, env_ids: Tensor) -> None:
        nominal_mass = float(self.model.body_mass[self.cube_body])
        nominal_friction = float(self.model.geom_friction[self.cube_geom, 0])
        nominal_half = float(self.model.geom_size[self.cube_geom, 0])
        p = self.object_params[env_ids]
        mass, size = p[:, :1] / nominal_mass, p[:, 2:3] / nominal_half
        self.sim.set_params(env_ids, "body_mass", [self.cube_body], mass)
        self.sim.set_params(env_ids, "body_inertia", [self.cube_body], mass * size**2)  # I = (2/3) m a²
        self.sim.set_params(env_ids, "geom_friction", [self.cube_geom], p[:, 1:2] / nominal_friction)
        self.sim.set_params(env_ids, "geom_size", [self.cube_geom], size)

    def _randomize_all_task_params(self) -> None:
        self._apply_object_params(torch.arange(self.num_envs, device=self.device))

    def _reward_terms(self) -> dict[str, Tensor]:
        cube, tcp = self.cube_pos, self.ee_pos
        dist = (cube - tcp).norm(dim=-1)
        force = torch.cat((self.sensor("left_touch"), self.sensor("right_touch")), -1)
        grasped = (force > 0.1).all(-1) & (dist < 0.03)
        height = cube[:, 2] - self.cube_half
        self.succeeded = self._is_success(grasped, height, force)
        self.ever_succeeded |= self.succeeded
        off_table = (cube[:, :2].norm(dim=-1) > 0.9) | (cube[:, 2] < -0.05)
        self.failed = off_table | (tcp[:, 2] < 0.0) | ~torch.isfinite(self.sim.qpos).all(-1)
        return {
            "reach": 1 - torch.tanh(dist / 0.1),
            "grasp": grasped.float(),
            "lift": (height.clamp(0.0, self.cfg.lift_height) / self.cfg.lift_height) * grasped.float(),
            **self._common_terms(),
            "success": self.succeeded.float() / self.step_dt,
            "failure": self.failed.float() / self.step_dt,
        }

    def _is_success(self, grasped: Tensor, height: Tensor, force: Tensor) -> Tensor:
        """Lifted: held between both pads with the cube's centre `lift_height` above its resting height."""
        return grasped & (height > self.cfg.lift_height)

    def _task_metrics(self, done_ids: Tensor) -> dict[str, Tensor]:
        m = super()._task_metrics(done_ids)
        m["final_height"] = self.cube_pos[done_ids, 2] - self.cube_half[done_ids]
        return m

    def _object_height(self) -> Tensor:
        """(N,) how far the object's centre is above its resting height [m]."""
        rest = self.object_half_height if self.object_half_height else self.cube_half
        return self.cube_pos[:, 2] - rest

    def _task_viz_curves(self) -> tuple[VizCurve, ...]:
        return (
            VizCurve(f"{self.object_name} height", "cm", lambda env: env._object_height(), scale=100.0,
                     threshold=100.0 * self.cfg.lift_height if type(self) is LiftEnv else None),
            VizCurve(f"TCP to {self.object_name}", "cm", lambda env: (env.cube_pos - env.ee_pos).norm(dim=-1),
                     scale=100.0),
            VizCurve("finger force", "N", lambda env: torch.cat((env.sensor("left_touch"),
                                                                  env.sensor("right_touch")), -1),
                     labels=("left pad", "right pad")),
        )


# ---------------------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class PickPlaceCfg(LiftCfg):
    """Pick the cube up, carry it to a goal on the table and put it down there."""

    episode_length_s: float = 8.0
    goal_xy_low: tuple[float, float] = (0.35, -0.25)
    """Goal area lower corner (x, y) [m]."""
    goal_xy_high: tuple[float, float] = (0.65, 0.25)
    """Goal area upper corner [m]."""
    min_goal_distance: float = 0.1
    """Goals are at least this far from the cube's start [m]."""
    place_radius: float = 0.025
    """Success: cube centre within this horizontal distance of the goal, resting on the table, released [m]."""
    reward_scales: dict[str, float] = field(
        default_factory=lambda: {"reach": 0.5, "grasp": 0.5, "lift": 1.0, "place": 5.0, "action_rate": -0.01,
                                 "joint_vel": -0.001, "success": 20.0, "failure": -10.0}
    )
    """As arm-lift, plus place 1 − tanh(‖cube − goal‖ / 0.1) (goal at table height)."""


class PickPlaceEnv(LiftEnv):
    """arm-pick-place: move the cube to a goal on the table and release it there (success ends the episode)."""

    task_name = "arm-pick-place"
    description = "Franka-class arm: carry a cube to a goal on the table and put it down"

    def __init__(self, cfg: PickPlaceCfg, seed: int = 0) -> None:
        super().__init__(cfg, seed)
        self.goal = torch.zeros(self.num_envs, 3, device=self.device)

    @classmethod
    def reward_term_names(cls) -> list[str]:
        """Named reward terms."""
        return ["reach", "grasp", "lift", "place", "action_rate", "joint_vel", "success", "failure"]

    @classmethod
    def task_policy_terms(cls, cfg: ArmCfg) -> tuple[ObsTerm, ...]:
        """Cube estimate, then the goal (a command)."""
        return (*super().task_policy_terms(cfg),
                ObsTerm("goal_pos", 3, "m", "where the cube centre should end up, base frame", source="command"))

    def _task_policy_obs(self) -> tuple[Tensor, ...]:
        return (*super()._task_policy_obs(), self.goal)

    def _reset_task(self, env_ids: Tensor, qpos: Tensor) -> None:
        super()._reset_task(env_ids, qpos)
        cfg, k = self.cfg, len(env_ids)
        low = torch.tensor(cfg.goal_xy_low, device=self.device)
        high = torch.tensor(cfg.goal_xy_high, device=self.device)
        start = qpos[:, self.cube_qpos : self.cube_qpos + 2]
        goal = low + (high - low) * self.rand(k, 2)
        for _ in range(10):  # resample goals too close to the start (rejection, bounded)
            near = (goal - start).norm(dim=-1) < cfg.min_goal_distance
            if not bool(near.any()):
                break
            goal = torch.where(near[:, None], low + (high - low) * self.rand(k, 2), goal)
        self.goal[env_ids, :2] = goal
        self.goal[env_ids, 2] = self.cube_half[env_ids]

    def _is_success(self, grasped: Tensor, height: Tensor, force: Tensor) -> Tensor:
        """Placed: resting on the table within `place_radius` of the goal, and released."""
        cube = self.cube_pos
        near = (cube[:, :2] - self.goal[:, :2]).norm(dim=-1) < self.cfg.place_radius
        return near & (height < 0.01) & (force < 0.05).all(-1)

    def _reward_terms(self) -> dict[str, Tensor]:
        terms = super()._reward_terms()
        terms["place"] = 1 - torch.tanh((self.cube_pos - self.goal).norm(dim=-1) / 0.1)
        return {k: terms[k] for k in self.reward_term_names()}

    def _task_metrics(self, done_ids: Tensor) -> dict[str, Tensor]:
        m = super()._task_metrics(done_ids)
        m["final_place_error"] = (self.cube_pos[done_ids, :2] - self.goal[done_ids, :2]).norm(dim=-1)
        return m

    def _task_viz_curves(self) -> tuple[VizCurve, ...]:
        to_goal = VizCurve(f"{self.object_name} to goal (horizontal)", "cm",
                           lambda env: (env.cube_pos[:, :2] - env.goal[:, :2]).norm(dim=-1), scale=100.0,
                           threshold=100.0 * self.cfg.place_radius)
        return (*super()._task_viz_curves(), to_goal)


# ---------------------------------------------------------------------------------------------------
HOLE_XY = (0.5, 0.2)
"""Centre of the fixture's hole in `scene_peg.xml` [m]."""
HOLE_TOP = 0.04
"""Height of the fixture's top face [m]."""


@dataclass(kw_only=True)
class PegInsertCfg(PickPlaceCfg):
    """Pick up a square peg and insert it into a fixture with 2 mm clearance per side."""

    episode_length_s: float = 8.0
    object_xy_low: tuple[float, float] = (0.4, -0.2)
    object_xy_high: tuple[float, float] = (0.6, 0.0)
    object_mass: tuple[float, float] = (0.05, 0.12)
    object_half_size: tuple[float, float] = (0.012, 0.012)
    """Peg half width [m] (fixed: the clearance is the point of the task)."""
    obs_noise: dict[str, float] = field(
        default_factory=lambda: {"joint_pos": 0.001, "joint_vel": 0.01, "object": 0.0005}
    )
    """A precise pose estimate of the peg (0.5 mm), as fiducial markers give."""
    insert_depth: float = 0.02
    """Success: the peg's bottom this far below the fixture's top, inside the hole [m]."""
    reward_scales: dict[str, float] = field(
        default_factory=lambda: {"reach": 0.5, "grasp": 0.5, "lift": 1.0, "place": 5.0, "action_rate": -0.01,
                                 "joint_vel": -0.001, "success": 20.0, "failure": -10.0}
    )
    """As arm-pick-place; place 1 − tanh(‖peg − inserted pose‖ / 0.1)."""


class PegInsertEnv(PickPlaceEnv):
    """arm-peg-insert: insert a 2.4 cm square peg into a 2.8 cm hole, 2 cm deep (success ends the episode)."""

    task_name = "arm-peg-insert"
    description = "Franka-class arm: insert a square peg into a hole with 2 mm clearance"
    scene = "scene_peg.xml"
    object_name = "peg"
    object_half_height = 0.03

    def _reset_task(self, env_ids: Tensor, qpos: Tensor) -> None:
        LiftEnv._reset_task(self, env_ids, qpos)
        self.goal[env_ids, 0] = HOLE_XY[0]
        self.goal[env_ids, 1] = HOLE_XY[1]
        self.goal[env_ids, 2] = self.object_half_height  # resting on the table inside the hole

    def _is_success(self, grasped: Tensor, height: Tensor, force: Tensor) -> Tensor:
        """Inserted: centred in the hole and the bottom `insert_depth` below the fixture's top."""
        peg = self.cube_pos
        centred = (peg[:, :2] - self.goal[:, :2]).norm(dim=-1) < 0.004
        bottom = peg[:, 2] - self.object_half_height
        return centred & (bottom < HOLE_TOP - self.cfg.insert_depth)

    def _task_metrics(self, done_ids: Tensor) -> dict[str, Tensor]:
        m = super()._task_metrics(done_ids)
        m["final_depth"] = HOLE_TOP - (self.cube_pos[done_ids, 2] - self.object_half_height)
        return m

    def _task_viz_curves(self) -> tuple[VizCurve, ...]:
        depth = VizCurve("insertion depth", "cm",
                         lambda env: HOLE_TOP - (env.cube_pos[:, 2] - env.object_half_height), scale=100.0,
                         threshold=100.0 * self.cfg.insert_depth)
        return (*super()._task_viz_curves(), depth)
