"""Unitree Go1-class quadruped on MuJoCo terrains: `quadruped-walk` and `quadruped-hind-legs`.

One task definition runs on `mujoco_cpu` or `mjwarp` (config field `backend`). The robot is
`sim_assets/quadruped/` (written by this project; figures and sources in its README); the terrain is a height
field of tiles (`robolearn.envs.quadruped.terrain`).

Action "joint_pos_target" (12, normalized to [-1, 1], legs FL, FR, RL, RR × hip abduction, hip flexion, knee):
joint targets = default pose + `action_scale` × a [rad], clamped to the joint range, tracked by MuJoCo position
servos (PD: τ = kp (q* − q) − kd q̇, saturated at the motor torque limits) at the physics rate.

Observations: "policy" is what the real robot measures, in the terms and order the legged ROS adapter provides
(gyro, gravity direction from the IMU orientation, velocity command, joint positions relative to the default
pose, joint velocities, then the last `action_history` actions, newest first). "critic" adds base linear velocity,
foot contacts, the randomized physics (friction, payload, motor strength, PD gain scales, latency), a height scan
of the terrain around the robot and the external wrench on the trunk (`disturbance`).

External disturbances: `set_disturbance(wrench)` holds a world-frame force and torque on the trunk, clipped to
`disturbance_limit`, until changed or the env resets (the H∞ learner's disturber writes it; the random-push
baseline, `pushes: true`, writes it too). Envs whose state becomes non-finite (or that MuJoCo reset because
they went unstable) are terminated and reset; each step that finishes episodes logs how many in
info["log"]["episode/nonfinite_resets"].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from robolearn.core.env import BatchedEnv, EnvCfg
from robolearn.core.errors import ConfigError, RobolearnError
from robolearn.core.math import quat_rotate, quat_rotate_inverse, quat_to_rotmat
from robolearn.core.types import ActionSpec, ActionTerm, Obs, ObsTerm, TaskSpec
from robolearn.envs.quadruped.terrain import Terrain, TerrainLayout, check_terrain, grid_points
from robolearn.sim.backend import Backend, import_mujoco, make_backend

ROBOT = "go1-quadruped"
ASSETS = Path(__file__).resolve().parents[3] / "sim_assets" / "quadruped"
LEGS = ("FL", "FR", "RL", "RR")
JOINTS = tuple(f"{leg}_{j}" for leg in LEGS for j in ("hip", "thigh", "calf"))
"""Policy/actuator order: per leg hip abduction, hip flexion ("thigh"), knee ("calf")."""
NJ = 12
DEFAULT_POSE = (0.0, 0.9, -1.8) * 4
"""Standing pose [rad] (MuJoCo Menagerie's Go1 "home" keyframe)."""
RANDOMIZE_KEYS = ("friction", "payload", "motor_strength", "kp", "kd")


@dataclass(kw_only=True)
class QuadrupedCfg(EnvCfg):
    """Shared settings of the quadruped tasks: backend, terrain, PD gains, commands, randomization, pushes."""

    num_envs: int = 64
    sim_dt: float = 0.005
    """Physics step [s] (overrides the MJCF timestep)."""
    decimation: int = 4
    """Physics steps per policy step: 50 Hz policy."""
    episode_length_s: float = 20.0
    backend: Literal["mujoco_cpu", "mjwarp"] = "mujoco_cpu"
    """Physics backend: MuJoCo on the CPU, or MuJoCo Warp (GPU, or warp's CPU device when device is 'cpu')."""
    fallback_to_cpu: bool = False
    """mjwarp on device 'cuda' without CUDA: run on warp's CPU device instead of failing."""
    nconmax: int = 64
    """mjwarp: contacts allocated per world (height-field contacts need more than a plane)."""
    njmax: int = 320
    """mjwarp: constraint rows allocated per world."""

    terrain: str = "flat"
    """"flat" (a plane), "mixed" (every type, one column each) or one type: slope, stairs_up, stairs_down, rough."""
    terrain_levels: int = 5
    """Rows of the tile grid (difficulty levels)."""
    tile_size: float = 4.0
    """Side of one terrain tile [m]."""
    terrain_resolution: float = 0.05
    """Height-field sample spacing [m]."""
    terrain_border: float = 2.0
    """Flat border around the tile grid [m]."""
    curriculum: bool = True
    """Move an env one level up when it walked more than half a tile, down when it covered less than half of
    the commanded distance (checked when its episode ends)."""
    max_init_level: int = 1
    """Envs start on a level drawn from 0 … this."""
    start_level: int | None = None
    """Every env starts on this level (row) instead (evaluation on a fixed difficulty; with curriculum: false it
    stays there); None: drawn as `max_init_level` says."""

    kp: float = 40.0
    """Position-servo stiffness [N·m/rad] (nominal, before randomization)."""
    kd: float = 1.0
    """Position-servo damping [N·m·s/rad]."""
    torque_limits: tuple[float, float, float] = (23.7, 23.7, 35.55)
    """Motor torque limits [N·m] of hip abduction, hip flexion, knee (Unitree Go1)."""
    joint_vel_limit: float = 30.1
    """Joint speed limit [rad/s] (Unitree Go1); faster joints are penalized by `joint_vel_limit` reward."""
    action_scale: float = 0.25
    """Joint target offset at |a| = 1 [rad]."""
    action_history: int = 1
    """Number of past actions in the policy observation (newest first)."""

    command_ranges: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {"vx": (-1.0, 1.0), "vy": (-0.6, 0.6), "yaw_rate": (-1.0, 1.0)}
    )
    """Uniform ranges of the velocity command: vx, vy [m/s] (base frame), yaw_rate [rad/s]."""
    command_resample_s: float = 10.0
    """Each env draws a new command after this long."""
    small_command: float = 0.2
    """Linear commands with a norm below this are set to zero (standing still is a command too)."""

    randomize: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {"friction": (0.5, 1.25), "payload": (-1.0, 2.0), "motor_strength": (0.9, 1.1),
                                 "kp": (0.9, 1.1), "kd": (0.9, 1.1)}
    )
    """Per-episode draws: "friction" (foot friction coefficient), "payload" (kg added to the trunk),
    "motor_strength", "kp", "kd" (scales of the nominal torque limits / servo gains). Missing keys: nominal."""
    latency_steps: int = 1
    """Action latency: each env applies the action of 0 … this many control steps ago (drawn per episode)."""
    obs_noise: dict[str, float] = field(
        default_factory=lambda: {"base_ang_vel": 0.2, "projected_gravity": 0.05, "joint_pos": 0.01,
                                 "joint_vel": 1.5}
    )
    """Uniform noise half-widths of the policy terms (rad/s, 1, rad, rad/s)."""

    disturbance_limit: tuple[float, float, float, float, float, float] = (60.0, 60.0, 60.0, 6.0, 6.0, 6.0)
    """Largest |force| [N] (x, y, z) and |torque| [N·m] (x, y, z) `set_disturbance` applies to the trunk."""
    pushes: bool = False
    """Random-push baseline: every `push_interval_s` a random horizontal force on the trunk for `push_duration_s`."""
    push_interval_s: float = 4.0
    push_duration_s: float = 0.2
    push_force: float = 50.0
    """Largest push force [N] (clipped to `disturbance_limit`)."""

    height_scan: tuple[int, int, float] = (7, 5, 0.1)
    """Critic terrain scan: (points along x, points along y, spacing [m]) centred under the base, yaw frame."""
    max_tilt_deg: float = 60.0
    """Tilt of the trunk beyond which the episode terminates."""
    base_height_target: float = 0.27
    """Trunk height above the ground the `base_height` term asks for [m]."""
    feet_air_time_target: float = 0.5
    """Swing time the `feet_air_time` term rewards beyond [s]."""
    init_joint_noise: float = 0.1
    """Initial joint positions: default + U(± this) [rad]."""
    init_base_vel: float = 0.2
    """Initial base linear and angular velocity: U(± this) per axis."""


def _validate(cfg: QuadrupedCfg, task: str) -> None:
    """One-line errors for gains, limits and ranges that cannot be right."""
    check_terrain(cfg.terrain, task)
    positive = {"kp": cfg.kp, "action_scale": cfg.action_scale, "joint_vel_limit": cfg.joint_vel_limit,
                "sim_dt": cfg.sim_dt, "tile_size": cfg.tile_size, "terrain_resolution": cfg.terrain_resolution}
    for key, value in positive.items():
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{task}: config key '{key}' must be a positive number (got {value})")
    if not (math.isfinite(cfg.kd) and cfg.kd >= 0):
        raise ConfigError(f"{task}: config key 'kd' must be ≥ 0 (got {cfg.kd})")
    if len(cfg.torque_limits) != 3 or not all(math.isfinite(t) and t > 0 for t in cfg.torque_limits):
        raise ConfigError(f"{task}: config key 'torque_limits' needs 3 positive values (got {cfg.torque_limits})")
    if len(cfg.disturbance_limit) != 6 or not all(math.isfinite(t) and t >= 0 for t in cfg.disturbance_limit):
        raise ConfigError(f"{task}: config key 'disturbance_limit' needs 6 values ≥ 0 (got {cfg.disturbance_limit})")
    if cfg.start_level is not None and not 0 <= cfg.start_level < cfg.terrain_levels:
        raise ConfigError(f"{task}: config key 'start_level' must be in 0 … terrain_levels − 1 = "
                          f"{cfg.terrain_levels - 1} (got {cfg.start_level})")
    if cfg.latency_steps < 0 or cfg.action_history < 1 or cfg.decimation < 1 or cfg.terrain_levels < 1:
        raise ConfigError(f"{task}: latency_steps ≥ 0, action_history ≥ 1, decimation ≥ 1 and terrain_levels ≥ 1 "
                          f"(got {cfg.latency_steps}, {cfg.action_history}, {cfg.decimation}, {cfg.terrain_levels})")
    unknown = set(cfg.randomize) - set(RANDOMIZE_KEYS)
    if unknown:
        raise ConfigError(f"{task}: unknown randomize keys {sorted(unknown)}; known: {', '.join(RANDOMIZE_KEYS)}")
    for key, (low, high) in cfg.randomize.items():
        bad = low > high or (key != "payload" and low <= 0)
        if bad or not (math.isfinite(low) and math.isfinite(high)):
            raise ConfigError(f"{task}: randomize '{key}' range ({low}, {high}) must be low ≤ high"
                              + ("" if key == "payload" else ", both > 0"))
    unknown = set(cfg.command_ranges) - {"vx", "vy", "yaw_rate"}
    if unknown:
        raise ConfigError(f"{task}: unknown command_ranges keys {sorted(unknown)}; known: vx, vy, yaw_rate")
    for key, (low, high) in cfg.command_ranges.items():
        if low > high:
            raise ConfigError(f"{task}: command_ranges '{key}' ({low}, {high}) must be low ≤ high")


class QuadrupedEnv(BatchedEnv[QuadrupedCfg]):
    """Base class of the quadruped tasks; subclasses define the commands, reward terms and failure."""

    task_name = "quadruped"
    description = ""
    termination_terms: tuple[str, ...] = ("termination",)
    disturbance_dim: int = 6
    """Length of the trunk wrench `set_disturbance` takes: force (3) then torque (3), world frame."""

    def __init__(self, cfg: QuadrupedCfg, seed: int = 0) -> None:
        _validate(cfg, self.task_name)
        self.spec = self.make_spec(cfg)
        if cfg.backend == "mjwarp":  # a missing CUDA is an error unless the config allows warp's CPU device
            from robolearn.sim.mjwarp import resolve_device

            device = resolve_device(cfg.device, cfg.fallback_to_cpu, self.task_name)
            if device != torch.device(cfg.device):
                cfg = replace(cfg, device=str(device))
        super().__init__(cfg, seed)
        n, dev = self.num_envs, self.device
        self.terrain = Terrain(
            TerrainLayout(cfg.terrain, cfg.terrain_levels, cfg.tile_size, cfg.terrain_resolution, cfg.terrain_border),
            seed, self.task_name, dev)
        self.model = self._build_model(cfg)
        self.sim: Backend = make_backend(cfg.backend, self.model, n, cfg.device, self.task_name,
                                         fallback_to_cpu=cfg.fallback_to_cpu,
                                         **({"nconmax": cfg.nconmax, "njmax": cfg.njmax}
                                            if cfg.backend == "mjwarp" else {}))
        self._ids(self.model)
        m = self.model
        self.default_pose = torch.tensor(DEFAULT_POSE, device=dev)
        self.joint_low = torch.tensor(m.jnt_range[1:, 0], dtype=torch.float32, device=dev)
        self.joint_high = torch.tensor(m.jnt_range[1:, 1], dtype=torch.float32, device=dev)
        self.disturbance_limit = torch.tensor(cfg.disturbance_limit, dtype=torch.float32, device=dev)
        self.disturbance = torch.zeros(n, 6, device=dev)
        self.push_steps_left = torch.zeros(n, dtype=torch.long, device=dev)
        self.push_timer = torch.zeros(n, dtype=torch.long, device=dev)
        self.action_buffer = torch.zeros(n, cfg.latency_steps + 1, NJ, device=dev)  # [0] = newest
        self.last_actions = torch.zeros(n, cfg.action_history, NJ, device=dev)  # [0] = newest
        self.prev_action = torch.zeros(n, NJ, device=dev)
        self.latency = torch.zeros(n, dtype=torch.long, device=dev)
        self.joint_target = self.default_pose.expand(n, -1).clone()
        self.commands = torch.zeros(n, 3, device=dev)
        self.command_timer = torch.zeros(n, dtype=torch.long, device=dev)
        self.commanded_distance = torch.zeros(n, device=dev)
        self.tracking_error_sum = torch.zeros(n, device=dev)
        self.feet_air_time = torch.zeros(n, 4, device=dev)
        self.last_contacts = torch.zeros(n, 4, dtype=torch.bool, device=dev)
        self.prev_joint_vel = torch.zeros(n, NJ, device=dev)
        self.nonfinite = torch.zeros(n, dtype=torch.bool, device=dev)
        self.started = torch.zeros(n, dtype=torch.bool, device=dev)  # reset at least once (curriculum applies)
        self.nonfinite_resets = 0
        """Envs reset because their state became non-finite, since construction."""
        # terrain: each env's tile (level row, type column) and its start point
        self.terrain_type = torch.arange(n, device=dev) % self.terrain.cols
        self.terrain_level = torch.randint(0, min(cfg.max_init_level, self.terrain.rows - 1) + 1, (n,),
                                           generator=self.rng, device=dev)
        if cfg.start_level is not None:
            self.terrain_level.fill_(min(cfg.start_level, self.terrain.rows - 1))
        self.env_origins = self.terrain.origins[self.terrain_level, self.terrain_type].clone()
        # randomized physics, as drawn (critic terms): friction coefficient, payload [kg], strength, kp/kd scale
        self.friction = torch.ones(n, 1, device=dev)
        self.payload = torch.zeros(n, 1, device=dev)
        self.motor_strength = torch.ones(n, 1, device=dev)
        self.gain_scale = torch.ones(n, 2, device=dev)
        nx, ny, spacing = cfg.height_scan
        self.scan_points = grid_points(nx, ny, spacing).to(dev)
        self._ctrl = self.sim.ctrl.clone()
        self._substeps_pending = False

    # ---- model -------------------------------------------------------------------------------------
    def _build_model(self, cfg: QuadrupedCfg) -> Any:
        """Compile the scene with this task's terrain, timestep, servo gains and torque limits."""
        mujoco = import_mujoco()
        path = ASSETS / "scene.xml"
        if not path.is_file():
            raise RobolearnError(f"{self.task_name}: MJCF file not found: {path}")
        try:
            spec = mujoco.MjSpec.from_file(str(path))
            self.terrain.build(spec)
            m = spec.compile()
        except ValueError as e:
            raise RobolearnError(f"{self.task_name}: malformed MJCF {path}: {' '.join(str(e).split())}") from None
        m.opt.timestep = cfg.sim_dt
        limits = torch.tensor(cfg.torque_limits * 4, dtype=torch.float64).numpy()
        m.actuator_gainprm[:, 0] = cfg.kp
        m.actuator_biasprm[:, 1] = -cfg.kp
        m.actuator_biasprm[:, 2] = -cfg.kd
        m.actuator_forcerange[:, 0] = -limits
        m.actuator_forcerange[:, 1] = limits
        return m

    def _ids(self, m: Any) -> None:
        mujoco = import_mujoco()
        name = mujoco.mj_name2id
        joints = [m.joint(i).name for i in range(1, m.njnt)]
        if joints != [f"{j}_joint" for j in JOINTS] or list(m.actuator_trnid[:, 0]) != list(range(1, NJ + 1)):
            raise RobolearnError(f"{self.task_name}: the MJCF's joints/actuators {joints} are not in the order "
                                 f"{', '.join(JOINTS)} the task reads them in")
        self.trunk = name(m, mujoco.mjtObj.mjOBJ_BODY, "trunk")
        self.foot_geoms = [name(m, mujoco.mjtObj.mjOBJ_GEOM, f"{leg}_foot") for leg in LEGS]
        self.foot_sites = [name(m, mujoco.mjtObj.mjOBJ_SITE, f"{leg}_foot") for leg in LEGS]
        self.sensor_adr = {m.sensor(i).name: (int(m.sensor_adr[i]), int(m.sensor_dim[i])) for i in range(m.nsensor)}
        self.trunk_mass = float(m.body_mass[self.trunk])

    def sensor(self, name: str) -> Tensor:
        """Sensor `name` of every env (N, dim)."""
        adr, dim = self.sensor_adr[name]
        return self.sim.sensordata[:, adr : adr + dim]

    def sensors(self, names: list[str]) -> Tensor:
        """Scalar sensors `names` of every env side by side (N, len(names))."""
        data = self.sim.sensordata
        return torch.stack([data[:, self.sensor_adr[k][0]] for k in names], -1)

    # ---- specification -----------------------------------------------------------------------------
    @classmethod
    def reward_term_names(cls) -> list[str]:
        """Named reward terms (see `_reward_terms`)."""
        raise NotImplementedError

    @classmethod
    def make_spec(cls, cfg: QuadrupedCfg) -> TaskSpec:
        """Observation and action specification for a config (no simulator needed)."""
        nx, ny, _ = cfg.height_scan
        policy = (
            ObsTerm("base_ang_vel", 3, "rad/s", "IMU gyro, base frame"),
            ObsTerm("projected_gravity", 3, "", "gravity direction in the base frame (from the IMU orientation)"),
            ObsTerm("velocity_command", 3, "m/s, m/s, rad/s", "commanded vx, vy (base frame) and yaw rate",
                    source="command"),
            ObsTerm("joint_pos_rel", NJ, "rad", "joint positions minus the default pose"),
            ObsTerm("joint_vel", NJ, "rad/s", "joint velocities"),
            ObsTerm("last_action", NJ * cfg.action_history, "", "previous normalized actions, newest first",
                    source="last_action"),
        )
        critic = policy + (
            ObsTerm("base_lin_vel", 3, "m/s", "trunk linear velocity, base frame"),
            ObsTerm("foot_contact", 4, "", "foot in contact (FL, FR, RL, RR)"),
            ObsTerm("friction", 1, "", "foot friction coefficient"),
            ObsTerm("payload", 1, "kg", "mass added to the trunk"),
            ObsTerm("motor_strength", 1, "", "torque-limit and gain scale of every motor"),
            ObsTerm("pd_gains", 2, "", "kp and kd scales"),
            ObsTerm("latency", 1, "steps", "action latency in control steps"),
            ObsTerm("height_scan", nx * ny, "m", "trunk height above the terrain at scan points around the base"),
            ObsTerm("disturbance", 6, "N, N·m", "external force then torque on the trunk, world frame"),
        )
        action = ActionTerm("joint_pos_target", NJ, "rad", (cfg.action_scale,) * NJ, DEFAULT_POSE,
                            f"joint position targets = default pose + {cfg.action_scale} rad × a "
                            f"(legs {', '.join(LEGS)}; hip, thigh, calf), clamped to the joint range")
        return TaskSpec(
            name=cls.task_name,
            obs_terms={"policy": policy, "critic": critic},
            action=ActionSpec((action,), rate_hz=1.0 / cfg.step_dt, mode="joint_pos_target"),
            robot=ROBOT,
            description=cls.description,
            reward_scales=dict(cfg.reward_scales),
        )

    # ---- robot state -------------------------------------------------------------------------------
    @property
    def base_pos(self) -> Tensor:
        """(N, 3) trunk position, world frame [m]."""
        return self.sim.qpos[:, 0:3]

    @property
    def base_quat(self) -> Tensor:
        """(N, 4) trunk orientation (w, x, y, z)."""
        return self.sim.qpos[:, 3:7]

    @property
    def joint_pos(self) -> Tensor:
        """(N, 12) [rad]."""
        return self.sim.qpos[:, 7:]

    @property
    def joint_vel(self) -> Tensor:
        """(N, 12) [rad/s]."""
        return self.sim.qvel[:, 6:]

    @property
    def base_ang_vel(self) -> Tensor:
        """(N, 3) gyro, base frame [rad/s] (the free joint's angular velocity is in the body frame)."""
        return self.sim.qvel[:, 3:6]

    @property
    def base_lin_vel(self) -> Tensor:
        """(N, 3) trunk linear velocity, base frame [m/s]."""
        return quat_rotate_inverse(self.base_quat, self.sim.qvel[:, 0:3])

    @property
    def projected_gravity(self) -> Tensor:
        """(N, 3) unit gravity direction in the base frame."""
        down = torch.tensor([0.0, 0.0, -1.0], device=self.device).expand(self.num_envs, 3)
        return quat_rotate_inverse(self.base_quat, down)

    @property
    def joint_torque(self) -> Tensor:
        """(N, 12) motor torques [N·m] (actuator force sensors)."""
        return self.sensors([f"{j}_torque" for j in JOINTS])

    @property
    def foot_force(self) -> Tensor:
        """(N, 4) normal contact force on each foot [N] (touch sensors)."""
        return self.sensors([f"{leg}_foot_touch" for leg in LEGS])

    @property
    def foot_contact(self) -> Tensor:
        """(N, 4) bool: foot touching the ground (normal force > 1 N)."""
        return self.foot_force > 1.0

    @property
    def leg_collision(self) -> Tensor:
        """(N,) number of thighs and calves touching something."""
        names = [f"{leg}_{part}_touch" for part in ("thigh", "calf") for leg in LEGS]
        return (self.sensors(names) > 1.0).float().sum(-1)

    @property
    def trunk_contact(self) -> Tensor:
        """(N,) bool: trunk or head touching something."""
        return self.sensor("trunk_touch")[:, 0] > 1.0

    def ground_height(self) -> Tensor:
        """(N,) terrain height under the base [m]."""
        return self.terrain.height_at(self.base_pos[:, :2])

    def height_scan(self) -> Tensor:
        """(N, nx·ny) trunk height above the terrain at the scan points (yaw frame, around the base) [m]."""
        pos = self.base_pos
        yaw_fwd = quat_rotate(self.base_quat, torch.tensor([1.0, 0.0, 0.0], device=self.device).expand(
            self.num_envs, 3))[:, :2]
        yaw_fwd = yaw_fwd / yaw_fwd.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        c, s = yaw_fwd[:, 0:1], yaw_fwd[:, 1:2]
        px, py = self.scan_points[:, 0], self.scan_points[:, 1]
        xy = torch.stack((pos[:, 0:1] + c * px - s * py, pos[:, 1:2] + s * px + c * py), -1)
        return (pos[:, 2:3] - self.terrain.height_at(xy)).clamp(-1.0, 2.0)

    # ---- the disturbance interface (H∞ disturber, random pushes) ------------------------------------
    def set_disturbance(self, wrench: Tensor) -> None:
        """Hold a world-frame force (3) then torque (3) (N, 6) on the trunk until changed.

        Values are clipped to ±`disturbance_limit`; an env's wrench is zeroed when it resets.
        """
        if tuple(wrench.shape) != (self.num_envs, self.disturbance_dim):
            raise RobolearnError(f"{self.spec.name}: disturbance shape {tuple(wrench.shape)}, expected "
                                 f"{(self.num_envs, self.disturbance_dim)}")
        w = wrench.detach().to(self.device, torch.float32)
        if not bool(torch.isfinite(w).all()):
            raise RobolearnError(f"{self.spec.name}: non-finite disturbance")
        lim = self.disturbance_limit
        self.disturbance = torch.maximum(torch.minimum(w, lim), -lim)
        self.sim.set_body_wrench(self.trunk, self.disturbance)

    def _push(self) -> None:
        """Random-push baseline: start a push where the interval elapsed, end pushes whose duration is over."""
        cfg = self.cfg
        wrench = self.disturbance.clone()
        ending = self.push_steps_left == 1
        wrench[ending] = 0.0
        self.push_steps_left = (self.push_steps_left - 1).clamp_min(0)
        self.push_timer += 1
        start = self.push_timer >= max(1, round(cfg.push_interval_s / self.step_dt))
        k = int(start.sum())
        if k:
            angle = self.uniform(0.0, 2 * math.pi, k)
            mag = self.uniform(0.0, cfg.push_force, k)
            push = torch.zeros(k, 6, device=self.device)
            push[:, 0], push[:, 1] = mag * torch.cos(angle), mag * torch.sin(angle)
            wrench[start] = push
            self.push_timer[start] = 0
            self.push_steps_left[start] = max(1, round(cfg.push_duration_s / self.step_dt))
        if k or bool(ending.any()):
            self.set_disturbance(wrench)

    # ---- hooks -------------------------------------------------------------------------------------
    def _apply_action(self, action: Tensor) -> None:
        # latency: env i applies the action of `latency[i]` control steps ago
        self.action_buffer = torch.cat((action[:, None], self.action_buffer[:, :-1]), 1)
        applied = self.action_buffer[torch.arange(self.num_envs, device=self.device), self.latency]
        target = self.default_pose + self.cfg.action_scale * applied
        self.joint_target = torch.minimum(torch.maximum(target, self.joint_low), self.joint_high)
        self._ctrl = self.joint_target
        if self.cfg.pushes:
            self._push()
        self._substeps_pending = True

    def _physics_step(self) -> None:
        # BatchedEnv calls this `decimation` times per policy step; the backend runs all substeps in one call
        if self._substeps_pending:
            self.sim.step(self._ctrl, self.cfg.decimation)
            self._substeps_pending = False
            self._after_physics()

    def _after_physics(self) -> None:
        """Per-step bookkeeping: non-finite states, foot air time, commands, distance asked for."""
        cfg = self.cfg
        # mjwarp leaves NaNs in a diverged world; MuJoCo on the CPU resets it to the model's defaults itself
        # (with a warning), which shows as its time falling behind the episode's (a time check only there:
        # mjwarp keeps time in float32)
        self.nonfinite = ~(torch.isfinite(self.sim.qpos).all(-1) & torch.isfinite(self.sim.qvel).all(-1))
        if self.sim.name == "mujoco_cpu":
            expected = (self.episode_length + 1).float() * self.step_dt
            self.nonfinite |= self.sim.time < expected - 0.5 * cfg.sim_dt
        self.commanded_distance += self.commands[:, :2].norm(dim=-1) * self.step_dt
        self.command_timer += 1
        resample = (self.command_timer >= max(1, round(cfg.command_resample_s / self.step_dt))).nonzero()
        if resample.numel():
            self._resample_commands(resample.squeeze(-1))

    def _observe(self) -> Obs:
        cfg, n = self.cfg, self.num_envs
        noise = cfg.obs_noise

        def noisy(x: Tensor, key: str) -> Tensor:
            amp = noise.get(key, 0.0)
            return x + amp * (2 * self.rand(*x.shape) - 1) if amp else x

        policy = torch.cat(
            (
                noisy(self.base_ang_vel, "base_ang_vel"),
                noisy(self.projected_gravity, "projected_gravity"),
                self.commands,
                noisy(self.joint_pos - self.default_pose, "joint_pos"),
                noisy(self.joint_vel, "joint_vel"),
                self.last_actions.reshape(n, -1),
            ),
            -1,
        )
        critic = torch.cat(
            (
                policy,
                self.base_lin_vel,
                self.foot_contact.float(),
                self.friction,
                self.payload,
                self.motor_strength,
                self.gain_scale,
                self.latency[:, None].float(),
                self.height_scan(),
                self.disturbance,
            ),
            -1,
        )
        # an env whose state went non-finite is reset in this step; its last observation must not carry NaNs
        return {"policy": torch.nan_to_num(policy, 0.0, 0.0, 0.0), "critic": torch.nan_to_num(critic, 0.0, 0.0, 0.0)}

    def _common_terms(self) -> dict[str, Tensor]:
        """Regularizers shared by the tasks; updates the action/velocity history used by them."""
        cfg = self.cfg
        contact = self.foot_contact
        first_contact = (self.feet_air_time > 0) & contact & ~self.last_contacts
        self.feet_air_time += self.step_dt
        moving = self.commands[:, :2].norm(dim=-1) > 0.1
        air = ((self.feet_air_time - cfg.feet_air_time_target) * first_contact).sum(-1) * moving
        self.feet_air_time = self.feet_air_time * ~contact
        self.last_contacts = contact
        joint_vel = self.joint_vel
        terms = {
            "torques": self.joint_torque.square().sum(-1),
            "joint_acc": ((joint_vel - self.prev_joint_vel) / self.step_dt).square().sum(-1),
            "joint_vel_limit": (joint_vel.abs() - cfg.joint_vel_limit).clamp_min(0).sum(-1),
            "action_rate": (self.action - self.prev_action).square().sum(-1),
            "feet_air_time": air,
            "collision": self.leg_collision,
        }
        self.prev_joint_vel = joint_vel.clone()
        self.prev_action = self.action.clone()
        self.last_actions = torch.cat((self.action[:, None], self.last_actions[:, :-1]), 1)
        return terms

    def _reward_terms(self) -> dict[str, Tensor]:
        terms = self._task_terms()
        terms.update(self._common_terms())
        terms["termination"] = self._failed().float()
        # a non-finite env contributes nothing: its terms are replaced by 0 before they reach the learner
        bad = self.nonfinite
        return {k: torch.where(bad, torch.zeros_like(v), torch.nan_to_num(v, 0.0, 0.0, 0.0)) for k, v in terms.items()}

    def _task_terms(self) -> dict[str, Tensor]:
        raise NotImplementedError

    def _failed(self) -> Tensor:
        """(N,) bool: the robot fell (task-specific), excluding non-finite envs."""
        raise NotImplementedError

    def _terminated(self) -> Tensor:
        return self._failed() | self.nonfinite

    def _finish(self, done_ids: Tensor, terminated: Tensor) -> dict[str, Any]:
        info = super()._finish(done_ids, terminated)
        count = int(self.nonfinite[done_ids].sum())
        self.nonfinite_resets += count
        info["log"]["episode/nonfinite_resets"] = float(count)
        return info

    def _task_metrics(self, done_ids: Tensor) -> dict[str, Tensor]:
        steps = self.episode_length[done_ids].clamp_min(1).float()
        return {
            "tracking_error": self.tracking_error_sum[done_ids] / steps,
            "terrain_level": self.terrain_level[done_ids].float(),
            "nonfinite": self.nonfinite[done_ids].float(),
        }

    # ---- resets ------------------------------------------------------------------------------------
    def _resample_commands(self, env_ids: Tensor) -> None:
        k, r = len(env_ids), self.cfg.command_ranges
        cmd = torch.stack([self.uniform(*r.get(key, (0.0, 0.0)), k) for key in ("vx", "vy", "yaw_rate")], -1)
        small = cmd[:, :2].norm(dim=-1) < self.cfg.small_command
        cmd[:, :2] *= (~small)[:, None]
        self.commands[env_ids] = cmd
        self.command_timer[env_ids] = 0

    def _update_curriculum(self, env_ids: Tensor) -> None:
        """Move finished envs up or down a terrain level (from how far they walked) and onto their new tile."""
        started = env_ids[self.started[env_ids]]  # the first reset places robots; it does not judge them
        if self.cfg.curriculum and self.terrain.rows > 1 and started.numel():
            walked = (self.base_pos[started, :2] - self.env_origins[started, :2]).norm(dim=-1)
            walked = torch.where(self.nonfinite[started], torch.zeros_like(walked), walked)  # diverged: failed
            self.terrain_level[started] = self.terrain.update_levels(
                self.terrain_level[started], walked, self.commanded_distance[started])
        self.started[env_ids] = True
        self.env_origins[env_ids] = self.terrain.origins[self.terrain_level[env_ids], self.terrain_type[env_ids]]

    def _randomize(self, env_ids: Tensor) -> None:
        """Draw friction, payload, motor strength, PD gain scales and latency for envs `env_ids`."""
        cfg, k = self.cfg, len(env_ids)

        def draw(key: str, nominal: float) -> Tensor:
            low, high = cfg.randomize.get(key, (nominal, nominal))
            return self.uniform(low, high, k, 1)

        self.friction[env_ids] = draw("friction", 1.0)
        self.payload[env_ids] = draw("payload", 0.0)
        self.motor_strength[env_ids] = draw("motor_strength", 1.0)
        self.gain_scale[env_ids] = torch.cat((draw("kp", 1.0), draw("kd", 1.0)), -1)
        self.latency[env_ids] = torch.randint(0, cfg.latency_steps + 1, (k,), generator=self.rng, device=self.device)
        self._apply_params(env_ids)

    def _apply_params(self, env_ids: Tensor) -> None:
        """Write the drawn physics of envs `env_ids` into the backend (nominal × scale)."""
        k, sim = len(env_ids), self.sim
        feet, motors = self.foot_geoms, list(range(NJ))
        nominal_friction = float(self.model.geom_friction[feet[0], 0])
        sim.set_params(env_ids, "geom_friction", feet, (self.friction[env_ids] / nominal_friction).expand(k, 4))
        mass_scale = (self.trunk_mass + self.payload[env_ids]) / self.trunk_mass
        sim.set_params(env_ids, "body_mass", [self.trunk], mass_scale)
        strength = self.motor_strength[env_ids]
        sim.set_params(env_ids, "actuator_kp", motors, (strength * self.gain_scale[env_ids, 0:1]).expand(k, NJ))
        sim.set_params(env_ids, "actuator_kv", motors, (strength * self.gain_scale[env_ids, 1:2]).expand(k, NJ))
        sim.set_params(env_ids, "actuator_forcerange", motors, strength.expand(k, NJ))

    def _reset_idx(self, env_ids: Tensor) -> None:
        cfg, k, dev = self.cfg, len(env_ids), self.device
        self._update_curriculum(env_ids)
        self._randomize(env_ids)
        qpos = torch.zeros(k, self.model.nq, device=dev)
        qvel = torch.zeros(k, self.model.nv, device=dev)
        qpos[:, 0:3] = self.env_origins[env_ids] + torch.tensor([0.0, 0.0, self._start_height()], device=dev)
        yaw = self.uniform(-math.pi, math.pi, k)
        qpos[:, 3], qpos[:, 6] = torch.cos(yaw / 2), torch.sin(yaw / 2)
        noise = cfg.init_joint_noise
        joints = self.default_pose + self.uniform(-noise, noise, k, NJ)
        qpos[:, 7:] = torch.minimum(torch.maximum(joints, self.joint_low), self.joint_high)
        v = cfg.init_base_vel
        qvel[:, 0:6] = self.uniform(-v, v, k, 6)
        self._initial_pose(env_ids, qpos)
        self.sim.reset_idx(env_ids, qpos, qvel, qpos[:, 7:])
        self._ctrl = self.sim.ctrl.clone()
        self.joint_target[env_ids] = qpos[:, 7:]
        # zero the disturbance of these envs (the others keep theirs)
        self.disturbance[env_ids] = 0.0
        self.push_steps_left[env_ids] = 0
        self.push_timer[env_ids] = 0
        self.sim.set_body_wrench(self.trunk, self.disturbance)
        for buf in (self.action_buffer, self.last_actions, self.prev_action, self.action, self.feet_air_time,
                    self.prev_joint_vel, self.commanded_distance, self.tracking_error_sum):
            buf[env_ids] = 0.0
        self.prev_joint_vel[env_ids] = qvel[:, 6:]
        self.last_contacts[env_ids] = False
        self.nonfinite[env_ids] = False
        self._resample_commands(env_ids)

    def _initial_pose(self, env_ids: Tensor, qpos: Tensor) -> None:
        """Hook: change the start pose `qpos` (k, nq) of envs `env_ids` in place (default: standing on four legs)."""

    def _start_height(self) -> float:
        """Trunk height above the tile centre at reset [m] (the robot drops a few cm onto its feet)."""
        return 0.30

    # ---- exact resume: the physics state lives in the backend --------------------------------------
    def state_dict(self) -> dict[str, Tensor]:
        """Env tensors, RNG and the backend's full physics state (the terrain is rebuilt from the config)."""
        state = super().state_dict()
        state["_physics"] = self.sim.get_state()
        return {k: v for k, v in state.items() if not k.startswith(("sim.", "terrain."))}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore env tensors, re-apply the randomized physics and the wrench, restore the physics state."""
        state = dict(state)
        physics = state.pop("_physics")
        super().load_state_dict(state)
        self._apply_params(torch.arange(self.num_envs, device=self.device))
        self.sim.set_body_wrench(self.trunk, self.disturbance)
        self.sim.set_state(physics)
        self._ctrl = self.sim.ctrl.clone()


# ---------------------------------------------------------------------------------------------------
def _walk_scales() -> dict[str, float]:
    return {"tracking_lin_vel": 1.0, "tracking_ang_vel": 0.5, "lin_vel_z": -2.0, "ang_vel_xy": -0.05,
            "orientation": -1.0, "base_height": -10.0, "torques": -1e-4, "joint_acc": -2.5e-7,
            "joint_vel_limit": -1.0, "action_rate": -0.01, "feet_air_time": 1.0, "collision": -1.0,
            "termination": -10.0}


@dataclass(kw_only=True)
class WalkCfg(QuadrupedCfg):
    """Track a velocity command (vx, vy in the base frame, yaw rate) on the chosen terrain."""

    reward_scales: dict[str, float] = field(default_factory=_walk_scales)
    """tracking_lin_vel exp(−‖v_xy* − v_xy‖² / 0.25), tracking_ang_vel exp(−(ω_z* − ω_z)² / 0.25), lin_vel_z v_z²,
    ang_vel_xy ‖ω_xy‖², orientation ‖g_xy‖² (tilt), base_height (h − target)², torques ‖τ‖², joint_acc ‖q̈‖²,
    joint_vel_limit Σ(|q̇| − limit)₊, action_rate ‖a_t − a_{t−1}‖², feet_air_time Σ(t_air − target) at touchdown
    (while commanded to move), collision thighs/calves touching, termination 1 once (fell)."""


class WalkEnv(QuadrupedEnv):
    """quadruped-walk: velocity-command tracking; falls (trunk contact, tilt beyond `max_tilt_deg`) terminate."""

    task_name = "quadruped-walk"
    description = "Go1-class quadruped (MuJoCo): track a velocity command (vx, vy, yaw rate) on terrains"

    @classmethod
    def reward_term_names(cls) -> list[str]:
        """Named reward terms (see WalkCfg.reward_scales)."""
        return list(_walk_scales())

    def _task_terms(self) -> dict[str, Tensor]:
        lin, ang = self.base_lin_vel, self.base_ang_vel
        lin_err = (self.commands[:, :2] - lin[:, :2]).square().sum(-1)
        self.tracking_error_sum += lin_err.sqrt()
        height = self.base_pos[:, 2] - self.ground_height()
        return {
            "tracking_lin_vel": torch.exp(-lin_err / 0.25),
            "tracking_ang_vel": torch.exp(-(self.commands[:, 2] - ang[:, 2]).square() / 0.25),
            "lin_vel_z": lin[:, 2].square(),
            "ang_vel_xy": ang[:, :2].square().sum(-1),
            "orientation": self.projected_gravity[:, :2].square().sum(-1),
            "base_height": (height - self.cfg.base_height_target).square(),
        }

    def _failed(self) -> Tensor:
        tilt_cos = -self.projected_gravity[:, 2]  # cos of the angle between the trunk's z axis and up
        fell = self.trunk_contact | (tilt_cos < math.cos(math.radians(self.cfg.max_tilt_deg)))
        return fell & ~self.nonfinite


# ---------------------------------------------------------------------------------------------------
def _hind_scales() -> dict[str, float]:
    return {"tracking_lin_vel": 1.0, "tracking_ang_vel": 0.5, "upright": 2.0, "height": 3.0,
            "front_feet_air": 0.5, "torques": -1e-4, "joint_acc": -2.5e-7, "joint_vel_limit": -1.0,
            "action_rate": -0.01, "feet_air_time": 0.5, "collision": -1.0, "termination": -10.0}


@dataclass(kw_only=True)
class HindLegsCfg(QuadrupedCfg):
    """Rear up onto the two hind legs and walk on them, following a forward speed and yaw-rate command."""

    command_ranges: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {"vx": (0.0, 0.5), "vy": (0.0, 0.0), "yaw_rate": (-0.5, 0.5)}
    )
    small_command: float = 0.1
    action_scale: float = 1.6
    """Joint target offset at |a| = 1 [rad]. Standing on the hind legs turns each hind thigh by about the trunk's
    pitch (~1.4 rad) from the four-legged pose, out of reach of quadruped-walk's 0.25 (with it, PPO learns to sit
    on its haunches at ~20° of pitch)."""
    max_roll_deg: float = 60.0
    """Sideways roll (the trunk's y axis out of the horizontal plane) beyond which the episode terminates."""
    stand_height: float = 0.5
    """Trunk-centre height above the ground when standing on the hind legs [m]."""
    init_reared_fraction: float = 0.0
    """Fraction of resets that start standing on the hind legs instead of on four legs (reference-state
    initialization: the policy meets the reared states from the first iteration instead of having to find them)."""
    init_reared_pitch_deg: tuple[float, float] = (70.0, 90.0)
    """Trunk pitch of those starts, drawn uniformly [deg above the horizon]; hind feet under the hips, knees at
    `init_reared_knee`, front legs in the default pose."""
    init_reared_knee: float = -1.6
    """Hind knee angle of the reared starts [rad]."""
    reared_pitch_deg: float = 60.0
    """The `reared` metric counts the time the trunk's x axis points this far above the horizon (or more) with
    both front feet off the ground."""
    reward_scales: dict[str, float] = field(default_factory=_hind_scales)
    """tracking_lin_vel exp(−‖v* − v‖² / 0.25) in the heading frame (the horizontal direction the robot faces,
    reared or not), tracking_ang_vel exp(−(ω_z* − ω_z)² / 0.25) about the world z axis, upright (trunk x axis
    up-component, ≥ 0), height (h − base_height_target) / (stand_height − base_height_target) clipped to [0, 1]
    (0 on four legs or sitting low, 1 standing tall), front_feet_air both front feet off the ground, then the
    regularizers of quadruped-walk; termination 1 once (trunk contact or rolled over)."""


class HindLegsEnv(QuadrupedEnv):
    """quadruped-hind-legs: stand up and walk on the two hind legs (the harder task of Long et al. 2024)."""

    task_name = "quadruped-hind-legs"
    description = "Go1-class quadruped (MuJoCo): stand up on the hind legs and walk on them"

    def __init__(self, cfg: HindLegsCfg, seed: int = 0) -> None:
        super().__init__(cfg, seed)
        self.reared_steps = torch.zeros(self.num_envs, device=self.device)
        """Control steps of the current episode spent reared (for the `reared` metric)."""
        if not 0.0 <= cfg.init_reared_fraction <= 1.0:
            raise ConfigError(f"{self.task_name}: config key 'init_reared_fraction' must be in [0, 1] "
                              f"(got {cfg.init_reared_fraction})")
        lo, hi = cfg.init_reared_pitch_deg
        if not 0.0 <= lo <= hi <= 90.0:
            raise ConfigError(f"{self.task_name}: config key 'init_reared_pitch_deg' must be 0 ≤ low ≤ high ≤ 90 "
                              f"(got {cfg.init_reared_pitch_deg})")
        self._reared_height = self._reared_height_table()

    def _reared_joints(self, pitch: Tensor) -> Tensor:
        """(k, 12) joint angles of the reared start at trunk pitch `pitch` (k,) [rad].

        Each hind thigh is turned by the pitch, so the hind legs stand as they do on four legs (feet under the
        hips); clamped to the joint range.
        """
        joints = self.default_pose.expand(len(pitch), NJ).clone()
        for leg in (2, 3):  # RL, RR
            joints[:, 3 * leg + 1] = joints[:, 3 * leg + 1] + pitch
            joints[:, 3 * leg + 2] = self.cfg.init_reared_knee
        return torch.minimum(torch.maximum(joints, self.joint_low), self.joint_high)

    def _reared_height_table(self) -> Tensor:
        """Trunk height that puts the lower hind foot on the ground, at pitches 0, 1, …, 90° (MuJoCo kinematics)."""
        mujoco = import_mujoco()
        data = mujoco.MjData(self.model)
        pitch = torch.deg2rad(torch.arange(91, dtype=torch.float32))
        joints = self._reared_joints(pitch.to(self.device)).cpu()
        radius = float(self.model.geom_size[self.foot_geoms[2], 0])
        heights = []
        for i, p in enumerate(pitch.tolist()):
            data.qpos[:] = 0.0
            data.qpos[3], data.qpos[5] = math.cos(-p / 2), math.sin(-p / 2)  # nose up: about −y
            data.qpos[7:] = joints[i].double().numpy()
            mujoco.mj_kinematics(self.model, data)
            lowest = min(float(data.site_xpos[s][2]) for s in self.foot_sites[2:])
            heights.append(radius - lowest + 0.005)
        return torch.tensor(heights, device=self.device)

    def _initial_pose(self, env_ids: Tensor, qpos: Tensor) -> None:
        """Rear a fraction `init_reared_fraction` of the starts (their yaw and joint noise are kept)."""
        cfg = self.cfg
        if cfg.init_reared_fraction <= 0.0:
            return
        rear = (self.rand(len(env_ids)) < cfg.init_reared_fraction).nonzero().squeeze(-1)
        if not rear.numel():
            return
        pitch_deg = self.uniform(*cfg.init_reared_pitch_deg, len(rear))
        pitch = torch.deg2rad(pitch_deg)
        yaw_w, yaw_z = qpos[rear, 3], qpos[rear, 6]  # the base draws a yaw-only start orientation
        c, s = torch.cos(-pitch / 2), torch.sin(-pitch / 2)  # pitch about the trunk's y axis, after the yaw
        qpos[rear, 3:7] = torch.stack((yaw_w * c, -yaw_z * s, yaw_w * s, yaw_z * c), -1)
        noise = qpos[rear, 7:] - self.default_pose
        qpos[rear, 7:] = torch.minimum(torch.maximum(self._reared_joints(pitch) + noise, self.joint_low),
                                       self.joint_high)
        lo = pitch_deg.floor().long().clamp(0, 89)
        frac = pitch_deg - lo
        table = self._reared_height
        qpos[rear, 2] += table[lo] * (1 - frac) + table[lo + 1] * frac - self._start_height()

    @classmethod
    def reward_term_names(cls) -> list[str]:
        """Named reward terms (see HindLegsCfg.reward_scales)."""
        return list(_hind_scales())

    def _heading_velocity(self) -> tuple[Tensor, Tensor]:
        """(forward/lateral velocity in the heading frame (N, 2), world yaw rate (N,)).

        The heading is the horizontal part of (trunk x axis − trunk z axis): the nose direction when standing on
        four legs, the belly direction when reared, and continuous in between.
        """
        rot = quat_to_rotmat(self.base_quat)
        head = (rot[:, :2, 0] - rot[:, :2, 2])
        head = head / head.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        v = self.sim.qvel[:, 0:2]
        fwd = (v * head).sum(-1)
        lat = head[:, 0] * v[:, 1] - head[:, 1] * v[:, 0]
        yaw_rate = (rot @ self.base_ang_vel[:, :, None])[:, 2, 0]
        return torch.stack((fwd, lat), -1), yaw_rate

    def _task_terms(self) -> dict[str, Tensor]:
        v, yaw_rate = self._heading_velocity()
        lin_err = (self.commands[:, :2] - v).square().sum(-1)
        self.tracking_error_sum += lin_err.sqrt()
        rot = quat_to_rotmat(self.base_quat)
        height = self.base_pos[:, 2] - self.ground_height()
        front = self.foot_contact[:, :2]
        reared = (rot[:, 2, 0] >= math.sin(math.radians(self.cfg.reared_pitch_deg))) & ~front.any(-1)
        self.reared_steps += reared.float()
        return {
            "tracking_lin_vel": torch.exp(-lin_err / 0.25),
            "tracking_ang_vel": torch.exp(-(self.commands[:, 2] - yaw_rate).square() / 0.25),
            "upright": rot[:, 2, 0].clamp_min(0.0),
            "height": ((height - self.cfg.base_height_target) / (self.cfg.stand_height - self.cfg.base_height_target)
                       ).clamp(0.0, 1.0),
            "front_feet_air": (~front).all(-1).float(),
        }

    def _task_metrics(self, done_ids: Tensor) -> dict[str, Tensor]:
        """Adds "reared": the fraction of the episode spent reared (see `HindLegsCfg.reared_pitch_deg`)."""
        metrics = super()._task_metrics(done_ids)
        metrics["reared"] = self.reared_steps[done_ids] / self.episode_length[done_ids].clamp_min(1).float()
        return metrics

    def _reset_idx(self, env_ids: Tensor) -> None:
        super()._reset_idx(env_ids)
        self.reared_steps[env_ids] = 0.0

    def _failed(self) -> Tensor:
        rot = quat_to_rotmat(self.base_quat)
        rolled = rot[:, 2, 1].abs() > math.sin(math.radians(self.cfg.max_roll_deg))
        return (self.trunk_contact | rolled) & ~self.nonfinite
