"""Crazyflie 2.1 tasks: hover (recover from a random state and hold a goal) and figure-eight tracking.

After "Learning to Fly in Seconds" (Eschmann et al., 2023): the policy sees what the drone's state
estimator provides plus its own recent actions and commands the four motors directly ("rpm"), or
commands collective thrust and body rates ("ctbr", what a setpoint interface on the real drone takes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from robolearn.core.env import BatchedEnv, EnvCfg
from robolearn.core.errors import RobolearnError
from robolearn.core.math import quat_normalize, quat_to_rotmat, random_quat
from robolearn.core.types import ActionSpec, ActionTerm, Obs, ObsTerm, TaskSpec
from robolearn.sim.quadrotor import QuadrotorParams, QuadrotorSim, load_crazyflie21

ROBOT = "crazyflie-2.1"


def rpm_for_thrust(p: QuadrotorParams, thrust: Tensor) -> Tensor:
    """Inverse of `QuadrotorParams.thrust` on its increasing branch, clamped to the motor's range."""
    c0, c1, c2 = p.thrust_poly
    rpm = (-c1 + (c1 * c1 - 4 * c2 * (c0 - thrust)).clamp_min(0.0).sqrt()) / (2 * c2)
    return rpm.clamp(p.rpm_min, p.rpm_max)


@dataclass(kw_only=True)
class QuadrotorCfg(EnvCfg):
    """Shared quadrotor settings: action mode, initial-state distribution, randomization, noise."""

    num_envs: int = 1024
    sim_dt: float = 0.01
    decimation: int = 1
    episode_length_s: float = 5.0
    action_mode: Literal["rpm", "ctbr"] = "rpm"
    """"rpm": four normalized motor commands; "ctbr": collective thrust + body-rate setpoints."""
    action_history: int = 32
    """Number of past actions in the policy observation (the motors lag; the history lets the policy know)."""
    critic_action_history: bool = False
    """Also give the critic the policy's action history. Off by default: the critic sees the Markov state (true
    pose, velocities and motor speeds), which already holds what the history tells the policy about the lagging
    motors; 4 × `action_history` more inputs only slow its learning (Learning to Fly's critic has no history)."""
    pos_error_integral: bool = False
    """Add the integral of the position error since the episode began to the policy (and critic) observation,
    as the I of a PID controller. Any steady hover of a policy that uses it sits on the goal (the integral stops
    changing only where the error is zero); without it, TD3 policies settle a few cm off the goal, the same
    offset in every episode. The ROS adapter and the firmware kit integrate the measured error the same way
    (manifest term `pos_error_integral`)."""
    pos_error_integral_limit: float = 1.0
    """Clamp of each component of the integral [m·s] (anti-windup)."""
    compile: bool = False
    """torch.compile the physics step (worth it for large num_envs)."""
    init_pos: float = 0.2
    """Initial position error: uniform in a cube of this half-width [m]."""
    init_at_goal: float = 0.1
    """Fraction of episodes that start at rest at the goal ("guidance" in Learning to Fly): they teach holding it."""
    init_max_angle_deg: float = 90.0
    """Initial attitude: rotation about a random axis by up to this angle [deg]."""
    init_lin_vel: float = 1.0
    """Initial linear velocity: uniform per axis in ± this [m/s]."""
    init_ang_vel: float = 1.0
    """Initial angular velocity: uniform per axis in ± this [rad/s]."""
    max_pos_error: float = 1.0
    """Crash (terminate) when farther than this from the goal/reference [m]."""
    max_ang_vel: float = 35.0
    """Crash when the angular speed exceeds the gyro range (2000 deg/s) [rad/s]."""
    randomize: dict[str, float] = field(
        default_factory=lambda: {"mass": 0.02, "inertia": 0.05, "thrust": 0.02, "torque": 0.05, "motor_tau": 0.1}
    )
    """Relative ranges of per-episode parameter randomization: nominal × U(1 - r, 1 + r)."""
    disturbance_force: float = 0.003
    """Constant external force per episode, uniform in a ball of this radius [N] (weight is ~0.27 N)."""
    disturbance_max_force: float = 0.3
    """Disturbance interface (`set_disturbance`): largest force per world axis [N] (H∞ disturber, pushes); about
    the drone's weight."""
    disturbance_max_torque: float = 0.0
    """Largest disturbance torque per world axis [N·m]; 0 makes the disturbance a force only (3 components,
    else 6: force xyz, torque xyz). The Crazyflie's own roll authority is ~5e-3 N·m."""
    obs_noise: dict[str, float] = field(
        default_factory=lambda: {"pos": 0.001, "rot": 0.001, "lin_vel": 0.002, "ang_vel": 0.01}
    )
    """Standard deviation of Gaussian observation noise per policy term."""
    max_body_rate: float = 6.0
    """ctbr: body-rate setpoint at |action| = 1 [rad/s]."""
    rate_gain: tuple[float, float, float] = (20.0, 20.0, 10.0)
    """ctbr: proportional gain of the onboard body-rate controller [1/s]."""
    reward_scales: dict[str, float] = field(
        default_factory=lambda: {
            "position": -20.0,
            "orientation": -1.0,
            "lin_vel": -1.0,
            "ang_vel": -0.05,
            "action": -0.5,
            "alive": 5.0,
            "crash": -10.0,
        }
    )
    """Reward term weights per second: position ‖e_p‖², proximity 1 − tanh(‖e_p‖ / proximity_length),
    orientation 1 − q_w², velocities ‖·‖², action ‖a‖² (a = 0 is hover), alive 1 while flying, crash 1 once
    (its scale is the one-off penalty)."""
    proximity_length: float = 0.3
    """Length scale [m] of the bounded "proximity" reward 1 − tanh(‖e_p‖ / length)."""
    success_radius: float = 0.05
    """An episode succeeds when it ends within this distance of the goal/reference without crashing [m]."""


@dataclass(kw_only=True)
class HoverCfg(QuadrotorCfg):
    """Fly to the goal from a random state and hold it (all defaults of QuadrotorCfg)."""


@dataclass(kw_only=True)
class TrackCfg(QuadrotorCfg):
    """Follow a figure-eight in the horizontal plane."""

    init_pos: float = 0.1
    init_max_angle_deg: float = 20.0
    init_lin_vel: float = 0.2
    init_ang_vel: float = 0.5
    episode_length_s: float = 10.0
    amplitude: float = 0.5
    """Figure-eight half-width along x [m] (half of that along y)."""
    period_s: float = 6.0
    """Time for one full figure-eight [s]."""


class QuadrotorEnv(BatchedEnv[QuadrotorCfg]):
    """Crazyflie 2.1 in the batched torch simulator; the goal/reference is the origin of the task frame."""

    task_name = "quadrotor"
    description = ""
    termination_terms = ("crash",)
    differentiable = True

    def __init__(self, cfg: QuadrotorCfg, seed: int = 0) -> None:
        self.params: QuadrotorParams = load_crazyflie21()
        self.spec = self.make_spec(cfg)
        super().__init__(cfg, seed)
        p, n, dev = self.params, self.num_envs, self.device
        self.sim = QuadrotorSim(p, n, dev, dt=cfg.sim_dt, compile=cfg.compile)
        terms = self.spec.action.terms
        self._action_offset = torch.tensor([o for t in terms for o in t.offset], device=dev)
        self._action_scale = torch.tensor([c for t in terms for c in t.scale], device=dev)
        self.hover_action = 0.0  # by construction of the action scaling (see make_spec)
        self.action_hist = torch.full((n, cfg.action_history, 4), self.hover_action, device=dev)
        self.rpm_cmd = torch.full((n, 4), p.hover_rpm, device=dev)
        self.rate_cmd = torch.zeros(n, 3, device=dev)
        self.thrust_cmd = torch.zeros(n, device=dev)
        self.goal = torch.zeros(n, 3, device=dev)
        self.goal_vel = torch.zeros(n, 3, device=dev)
        self.time = torch.zeros(n, device=dev)
        self.sq_err_sum = torch.zeros(n, device=dev)
        self.pos_err_int = torch.zeros(n, 3, device=dev)
        self.crashed = torch.zeros(n, dtype=torch.bool, device=dev)
        # mixer: per-rotor thrust -> (collective thrust, roll, pitch, yaw torque), inverted for ctbr
        pos = torch.tensor(p.rotor_positions, dtype=torch.float32, device=dev)
        dirs = torch.tensor(p.rotor_directions, dtype=torch.float32, device=dev)
        self._rotor_y, self._rotor_x, self._rotor_dir = pos[:, 1], pos[:, 0], dirs
        self._rate_gain = torch.tensor(cfg.rate_gain, device=dev)
        self.disturbance_dim = self.disturbance_dim_of(cfg)
        limits = [cfg.disturbance_max_force] * 3 + [cfg.disturbance_max_torque] * (self.disturbance_dim - 3)
        if not all(math.isfinite(x) and x > 0 for x in limits):
            raise RobolearnError(
                f"{self.spec.name}: disturbance_max_force/torque must be positive and finite, got "
                f"{cfg.disturbance_max_force}/{cfg.disturbance_max_torque}"
            )
        self.disturbance_limit = torch.tensor(limits, device=dev)
        self.disturbance = torch.zeros(n, self.disturbance_dim, device=dev)
        self.episode_force = torch.zeros(n, 3, device=dev)

    # ---- disturbance interface (robolearn.core.env.Disturbable) --------------------------------
    @staticmethod
    def disturbance_dim_of(cfg: QuadrotorCfg) -> int:
        """3 (force) or 6 (force, torque) components."""
        return 6 if cfg.disturbance_max_torque > 0 else 3

    def set_disturbance(self, wrench: Tensor) -> None:
        """Apply (N, 3|6) world-frame force [N] (and torque [N·m]), clipped to `disturbance_limit`, until changed."""
        expected = (self.num_envs, self.disturbance_dim)
        if tuple(wrench.shape) != expected:
            raise RobolearnError(f"{self.spec.name}: disturbance shape {tuple(wrench.shape)}, expected {expected}")
        wrench = wrench.detach().to(self.device, torch.float32)
        self.disturbance = torch.maximum(torch.minimum(wrench, self.disturbance_limit), -self.disturbance_limit)

    def _apply_disturbance(self) -> None:
        """External wrench on the simulator: the episode's constant force plus the set disturbance."""
        s = self.sim
        s.force_ext = self.episode_force + self.disturbance[:, :3]
        if self.disturbance_dim == 6:  # the simulator takes torque in the body frame: τ_b = Rᵀ τ_w
            rot = quat_to_rotmat(s.quat.detach())
            s.torque_ext = (rot.transpose(1, 2) @ self.disturbance[:, 3:].unsqueeze(-1)).squeeze(-1)

    # ---- specification -----------------------------------------------------------------------
    @classmethod
    def reward_term_names(cls) -> list[str]:
        """Named reward terms (see `_reward_terms`)."""
        return ["position", "proximity", "orientation", "lin_vel", "ang_vel", "action", "alive", "crash"]

    @classmethod
    def policy_terms(cls, cfg: QuadrotorCfg) -> tuple[ObsTerm, ...]:
        """What the drone's state estimate provides, in order."""
        return (
            ObsTerm("pos_error", 3, "m", "position minus goal/reference, world frame"),
            ObsTerm("rotation_matrix", 9, "", "body-to-world rotation, row-major"),
            ObsTerm("lin_vel", 3, "m/s", "linear velocity (minus reference velocity), world frame"),
            ObsTerm("ang_vel", 3, "rad/s", "angular velocity, body frame (gyro)"),
            *(
                (ObsTerm("pos_error_integral", 3, "m*s", "time integral of pos_error since the episode began, "
                         f"each component clamped to ±{cfg.pos_error_integral_limit:g}"),)
                if cfg.pos_error_integral else ()
            ),
            ObsTerm(
                "action_history",
                4 * cfg.action_history,
                "",
                "previous normalized actions, newest first",
                source="last_action",
            ),
        )

    @classmethod
    def make_spec(cls, cfg: QuadrotorCfg) -> TaskSpec:
        """Observation and action specification for a config."""
        p = load_crazyflie21()
        # a = 0 is hover, so an untrained Gaussian policy starts near an equilibrium instead of falling or
        # shooting up (Learning to Fly maps [-1, 1] to [0, max rpm]; centring is what lets PPO learn quickly)
        if cfg.action_mode == "rpm":
            up = p.rpm_max - p.hover_rpm
            terms: tuple[ActionTerm, ...] = (
                ActionTerm(
                    "motor_rpm",
                    4,
                    "rpm",
                    (up,) * 4,
                    (p.hover_rpm,) * 4,
                    "motor speed setpoints M1..M4 (clamped to the motor range)",
                ),
            )
        elif cfg.action_mode == "ctbr":
            weight = p.mass * p.gravity
            terms = (
                ActionTerm("collective_thrust", 1, "N", (weight,), (weight,), "sum of rotor thrusts"),
                ActionTerm("body_rates", 3, "rad/s", (cfg.max_body_rate,) * 3, (0.0,) * 3, "roll/pitch/yaw rate"),
            )
        else:
            raise ValueError(f"{cls.task_name}: unknown action_mode '{cfg.action_mode}' (choose 'rpm' or 'ctbr')")
        policy = cls.policy_terms(cfg)
        critic = (policy if cfg.critic_action_history else policy[:-1]) + (
            ObsTerm("motor_rpm", 4, "", "true motor speeds / max rpm"),
            ObsTerm(
                "disturbance",
                cls.disturbance_dim_of(cfg),
                "N*10" if cls.disturbance_dim_of(cfg) == 3 else "N*10|N*m*1000",
                "external force ×10 (episode force + set_disturbance), world frame"
                + ("" if cls.disturbance_dim_of(cfg) == 3 else "; set torque ×1000, world frame"),
            ),
            ObsTerm("params", 7, "", "randomized mass, inertia(3), thrust scale, torque coef, motor tau / nominal"),
        )
        return TaskSpec(
            name=cls.task_name,
            obs_terms={"policy": policy, "critic": critic},
            action=ActionSpec(terms, rate_hz=1.0 / cfg.step_dt, mode=cfg.action_mode),
            robot=ROBOT,
            description=cls.description,
            reward_scales=dict(cfg.reward_scales),
        )

    # ---- hooks -------------------------------------------------------------------------------
    def _apply_action(self, action: Tensor) -> None:
        physical = self._action_offset + self._action_scale * action  # what the manifest tells the robot
        if self.cfg.action_mode == "rpm":
            self.rpm_cmd = physical
        else:
            self.thrust_cmd, self.rate_cmd = physical[:, 0], physical[:, 1:]
        self.action_hist = torch.cat((action.unsqueeze(1), self.action_hist[:, :-1]), 1)

    def _physics_step(self) -> None:
        if self.cfg.action_mode == "ctbr":
            self.rpm_cmd = self._rate_controller()
        self._apply_disturbance()
        self.sim.step(self.rpm_cmd)
        self.time += self.cfg.sim_dt
        self._advance_goal()
        if self.cfg.pos_error_integral:  # the error after the step, as the next observation's pos_error
            lim = self.cfg.pos_error_integral_limit
            err = (self.sim.pos - self.goal).detach()
            self.pos_err_int = (self.pos_err_int + self.cfg.sim_dt * err).clamp(-lim, lim)

    def _rate_controller(self) -> Tensor:
        """Body-rate P controller + mixer, as in the onboard firmware: (thrust, rates) -> motor rpm."""
        p, bp, w = self.params, self.sim.bp, self.sim.ang_vel
        inertia = bp.inertia
        # τ = J K (ω_cmd − ω) + ω × Jω
        tau = inertia * self._rate_gain * (self.rate_cmd - w) + torch.linalg.cross(w, inertia * w)
        # per-rotor thrust f_i solves: Σf = T, Σ y_i f_i = τx, −Σ x_i f_i = τy, Σ d_i k f_i = τz
        arm = self._rotor_y.abs().mean()
        t = self.thrust_cmd.unsqueeze(-1) / 4
        fx = tau[:, :1] / (4 * arm) * torch.sign(self._rotor_y)
        fy = -tau[:, 1:2] / (4 * arm) * torch.sign(self._rotor_x)
        fz = tau[:, 2:3] / (4 * bp.torque_coef.unsqueeze(-1)) * self._rotor_dir
        f = (t + fx + fy + fz).clamp_min(0.0) / bp.thrust_scale.unsqueeze(-1)
        return rpm_for_thrust(p, f)

    def _observe(self) -> Obs:
        s, cfg = self.sim, self.cfg
        noise = cfg.obs_noise
        pos_err = s.pos - self.goal
        vel_err = s.lin_vel - self.goal_vel
        rot = quat_to_rotmat(s.quat).flatten(1)
        integral = (self.pos_err_int,) if cfg.pos_error_integral else ()
        policy = torch.cat(
            (
                pos_err + noise.get("pos", 0.0) * self.randn(self.num_envs, 3),
                rot + noise.get("rot", 0.0) * self.randn(self.num_envs, 9),
                vel_err + noise.get("lin_vel", 0.0) * self.randn(self.num_envs, 3),
                s.ang_vel + noise.get("ang_vel", 0.0) * self.randn(self.num_envs, 3),
                *integral,
                self.action_hist.flatten(1),
            ),
            -1,
        )
        history = (self.action_hist.flatten(1),) if cfg.critic_action_history else ()
        critic = torch.cat(
            (
                pos_err, rot, vel_err, s.ang_vel, *integral, *history,
                s.rpm / self.params.rpm_max, self._disturbance_obs(), s.bp.as_tensor(),
            ),
            -1,
        )  # fmt: skip
        return {"policy": policy, "critic": critic}

    def _disturbance_obs(self) -> Tensor:
        """Critic term `disturbance`: total external force ×10 [N] (and set torque ×1000 [N·m])."""
        force = (self.episode_force + self.disturbance[:, :3]) * 10
        if self.disturbance_dim == 3:
            return force
        return torch.cat((force, self.disturbance[:, 3:] * 1000), -1)

    def _reward_terms(self) -> dict[str, Tensor]:
        s = self.sim
        self.crashed = crashed = self._crashed()
        pos_sq = (s.pos - self.goal).square().sum(-1)
        self.sq_err_sum += pos_sq.detach()
        return {
            "position": pos_sq,
            "proximity": 1 - torch.tanh(pos_sq.sqrt() / self.cfg.proximity_length),
            "orientation": 1 - s.quat[:, 0].square(),
            "lin_vel": (s.lin_vel - self.goal_vel).square().sum(-1),
            "ang_vel": s.ang_vel.square().sum(-1),
            "action": (self.action - self.hover_action).square().sum(-1),
            "alive": (~crashed).float(),
            "crash": crashed.float() / self.step_dt,  # a one-off penalty, not a rate
        }

    def _crashed(self) -> Tensor:
        s, cfg = self.sim, self.cfg
        far = (s.pos - self.goal).norm(dim=-1) > cfg.max_pos_error
        spinning = s.ang_vel.norm(dim=-1) > cfg.max_ang_vel
        return far | spinning | ~torch.isfinite(s.state).all(-1)

    def _terminated(self) -> Tensor:
        return self.crashed

    def _task_metrics(self, done_ids: Tensor) -> dict[str, Tensor]:
        err = (self.sim.pos[done_ids] - self.goal[done_ids]).norm(dim=-1)
        crashed = self.crashed[done_ids]
        return {
            "success": ((err < self.cfg.success_radius) & ~crashed).float(),
            "final_pos_error": torch.where(crashed, torch.nan, err),
            "crash": crashed.float(),
            "pos_error_rms": (self.sq_err_sum[done_ids] / self.episode_length[done_ids].clamp_min(1)).sqrt(),
        }

    def _reset_idx(self, env_ids: Tensor) -> None:
        cfg, p, s, n = self.cfg, self.params, self.sim, len(env_ids)
        self.time[env_ids] = 0.0
        self.sq_err_sum[env_ids] = 0.0
        self.pos_err_int[env_ids] = 0.0
        self._set_goal(env_ids)
        state = s.state
        state[env_ids, 0:3] = self.goal[env_ids] + self.uniform(-cfg.init_pos, cfg.init_pos, n, 3)
        q = random_quat(n, math.radians(cfg.init_max_angle_deg), generator=self.rng, device=self.device)
        state[env_ids, 3:7] = quat_normalize(q)
        state[env_ids, 7:10] = self.goal_vel[env_ids] + self.uniform(-cfg.init_lin_vel, cfg.init_lin_vel, n, 3)
        state[env_ids, 10:13] = self.uniform(-cfg.init_ang_vel, cfg.init_ang_vel, n, 3)
        state[env_ids, 13:17] = p.hover_rpm
        at_goal = self.rand(n) < cfg.init_at_goal
        if bool(at_goal.any()):
            ids = env_ids[at_goal]
            state[ids, 0:3] = self.goal[ids]
            state[ids, 3:7] = torch.tensor([1.0, 0.0, 0.0, 0.0], device=self.device)
            state[ids, 7:10] = self.goal_vel[ids]
            state[ids, 10:13] = 0.0
        s.bp.randomize_(p, env_ids, cfg.randomize, self.rand)
        direction = self.randn(n, 3)
        direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        radius = cfg.disturbance_force * self.rand(n, 1).pow(1 / 3)
        self.episode_force[env_ids] = direction * radius
        self.disturbance[env_ids] = 0.0
        s.force_ext[env_ids] = self.episode_force[env_ids]
        s.torque_ext[env_ids] = 0.0
        self.action_hist[env_ids] = self.hover_action
        self.rpm_cmd[env_ids] = p.hover_rpm

    def expert_action(self, obs: Obs) -> Tensor:
        """The scripted expert (cascaded PD on the policy observation), for `rpm` mode."""
        from robolearn.envs.quadrotor.expert import pd_rpm_action

        if self.cfg.action_mode != "rpm":
            raise ValueError(f"{self.spec.name}: the scripted expert commands motors; set action_mode: rpm")
        return pd_rpm_action(obs["policy"], self.params, integral=self.cfg.pos_error_integral)

    def viz_state(self) -> dict[str, Tensor]:
        """What plots and videos show: position, attitude, goal/reference and the last action."""
        return {"pos": self.sim.pos, "quat": self.sim.quat, "goal": self.goal, "action": self.action}

    def _advance_goal(self) -> None:
        """Move the goal/reference after a physics step (hover: it stays)."""

    def _set_goal(self, env_ids: Tensor) -> None:
        self.goal[env_ids] = 0.0
        self.goal_vel[env_ids] = 0.0


class HoverEnv(QuadrotorEnv):
    """quadrotor-hover: recover from up to 90° tilt, 1 m/s and 1 rad/s, then hold the goal."""

    task_name = "quadrotor-hover"
    description = "Crazyflie 2.1: recover from a random state and hold a goal position"


class TrackEnv(QuadrotorEnv):
    """quadrotor-track: follow a figure-eight x = A sin(ωt), y = A/2 sin(2ωt), starting at a random phase."""

    task_name = "quadrotor-track"
    description = "Crazyflie 2.1: follow a figure-eight (Lissajous) reference"

    def __init__(self, cfg: TrackCfg, seed: int = 0) -> None:
        super().__init__(cfg, seed)
        self.phase = torch.zeros(self.num_envs, device=self.device)

    def reference(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """Reference position and velocity (N, 3) at episode time t (N,)."""
        cfg = self.cfg
        w = 2 * math.pi / cfg.period_s
        a = cfg.amplitude
        th = w * t + self.phase
        pos = torch.stack((a * torch.sin(th), 0.5 * a * torch.sin(2 * th), torch.zeros_like(th)), -1)
        vel = torch.stack((a * w * torch.cos(th), a * w * torch.cos(2 * th), torch.zeros_like(th)), -1)
        return pos, vel

    def _advance_goal(self) -> None:
        self.goal, self.goal_vel = self.reference(self.time)

    def _set_goal(self, env_ids: Tensor) -> None:
        self.phase[env_ids] = 2 * math.pi * self.rand(len(env_ids))
        pos, vel = self.reference(self.time)
        self.goal[env_ids] = pos[env_ids]
        self.goal_vel[env_ids] = vel[env_ids]
