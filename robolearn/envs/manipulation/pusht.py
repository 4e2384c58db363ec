"""`push-t`: the Diffusion Policy benchmark task (Chi et al. 2023; gym-pusht) in MuJoCo.

A disc pusher (radius 15 px) driven by position targets through gym-pusht's PD law moves a T-shaped block to a
fixed goal pose. The model is `sim_assets/pusht/pusht.xml` (figures and their sources in its README); it runs on
`mujoco_cpu` or `mjwarp` (config field `backend`), like the arm tasks.

Units: the original works in pixels of a 512 × 512 workspace; here 1 px = 1 mm, with the world origin at the
workspace centre and y pointing up (the image's rows point down):

    x = (x_px − 256) / 1000,   y = (256 − y_px) / 1000,   angle = −angle_px      (`px_to_world`, `world_to_px`)

The goal (256, 256, π/4) px/rad is (0, 0, −π/4) here.

Observations ("policy"): `state` mode (default) is gym-pusht's state (agent x, y, block x, y, block angle in
[0, 2π)) in metres/radians, where the block position is the T's reference point (the middle of the bar's top
edge), as in gym-pusht. `observation="keypoints"` replaces the block's position and angle by the 8 corners of the
T's two rectangles (16 values, `keypoints`): gym-pusht's `environment_state_agent_pos` and the low-dimensional
input of Chi et al., continuous where the angle wraps. With `cameras=("top",)` the policy group becomes
{"state": agent position (2), "rgb_top": (H, W, 3) uint8} — gym-pusht's `pixels_agent_pos`. "critic" adds
velocities, the block's centre of gravity, the coverage and the randomized parameters.

Actions: the absolute agent target position, normalized: a ∈ [-1, 1]² ↦ 0.256 a m (= [0, 512] px).

Reward: clip(coverage / 0.95, 0, 1) per step (gym-pusht's), where coverage = area(block ∩ goal) / area(goal);
success (and termination) when coverage > 0.95; 300 steps at 10 Hz.
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
from robolearn.core.types import ActionSpec, ActionTerm, Obs, ObsTerm, TaskSpec
from robolearn.sim.backend import Backend, import_mujoco, load_model, make_backend, make_renderer

ASSETS = Path(__file__).resolve().parents[3] / "sim_assets" / "pusht"
ROBOT = "pusht-pusher"
PX = 0.001
"""One pixel of the original 512 × 512 workspace [m]."""
HALF_WORKSPACE = 256 * PX
"""The action range: targets in [−0.256, 0.256] m on each axis (= [0, 512] px)."""
AGENT_RADIUS = 15 * PX
"""Pusher radius [m]."""
GOAL_POSE = (0.0, 0.0, -math.pi / 4)
"""Goal pose of the T's reference point (x, y [m], angle [rad]); gym-pusht's (256, 256, π/4) px."""
BAR = (0.0, -15 * PX, 60 * PX, 15 * PX)
"""The T's bar: centre (x, y) and half sizes in the T's frame (origin at the middle of the bar's top edge) [m]."""
STEM = (0.0, -75 * PX, 15 * PX, 45 * PX)
"""The T's stem: centre and half sizes in the T's frame [m]."""
COG = (0.0, -45 * PX)
"""The T's centre of gravity in its frame (gym-pusht: the mean of the two rectangles' centres) [m]."""
SUCCESS_COVERAGE = 0.95
VIZ_SIZE = (192, 192)
"""Top-view frames in evaluation videos [px]."""


def px_to_world(state_px: Tensor) -> Tensor:
    """gym-pusht state (..., 5) [px, rad] → (agent x, y, block x, y, angle) in metres/radians (this task's frame)."""
    out = torch.empty_like(state_px, dtype=torch.float32)
    out[..., 0::2] = (state_px[..., 0::2] - 256) * PX
    out[..., 1::2] = (256 - state_px[..., 1::2]) * PX
    out[..., 4] = -state_px[..., 4]
    return out


def world_to_px(state: Tensor) -> Tensor:
    """Inverse of `px_to_world`: (..., 5) in metres/radians → gym-pusht's pixels, angle in [0, 2π)."""
    out = torch.empty_like(state, dtype=torch.float64)
    out[..., 0:4:2] = state[..., 0:4:2].double() / PX + 256
    out[..., 1:4:2] = 256 - state[..., 1:4:2].double() / PX
    out[..., 4] = torch.remainder(-state[..., 4].double(), 2 * math.pi)
    return out


def _rot(angle: Tensor) -> Tensor:
    """2-D rotation matrices (..., 2, 2)."""
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack((torch.stack((c, -s), -1), torch.stack((s, c), -1)), -2)


def _rectangles(pose: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The T's two rectangles at reference poses (..., 3): centres (..., 2, 2), angles (..., 2), half sizes (2, 2)."""
    local = torch.tensor([BAR[:2], STEM[:2]], dtype=pose.dtype, device=pose.device)  # (2, 2)
    half = torch.tensor([BAR[2:], STEM[2:]], dtype=pose.dtype, device=pose.device)
    rot = _rot(pose[..., 2])  # (..., 2, 2)
    centres = pose[..., None, :2] + local @ rot.transpose(-1, -2)  # R c for both rectangles
    return centres, pose[..., None, 2].expand(*pose.shape[:-1], 2), half


def _edges(centres: Tensor, angles: Tensor, half: Tensor) -> tuple[Tensor, Tensor]:
    """Counter-clockwise edges of rectangles: start points and end points (..., 4, 2)."""
    signs = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], dtype=centres.dtype,
                         device=centres.device)
    corners = (signs * half[..., None, :]) @ _rot(angles).transpose(-1, -2) + centres[..., None, :]
    return corners, corners.roll(-1, dims=-2)


def _clipped_edge_area(p0: Tensor, p1: Tensor, centre: Tensor, angle: Tensor, half: Tensor) -> Tensor:
    """½ (q0 × q1) of the part [q0, q1] of segments p0 → p1 (..., 2) inside rectangles (Cyrus–Beck clipping)."""
    u = torch.stack((torch.cos(angle), torch.sin(angle)), -1)
    v = torch.stack((-torch.sin(angle), torch.cos(angle)), -1)
    d, rel = p1 - p0, p0 - centre
    lo, hi = torch.zeros_like(d[..., 0]), torch.ones_like(d[..., 0])
    for axis, a in ((u, half[..., 0]), (v, half[..., 1])):  # |x0 + t dx| ≤ a along each of the rectangle's axes
        x0, dx = (rel * axis).sum(-1), (d * axis).sum(-1)
        moving = dx.abs() > 1e-12
        inv = 1.0 / torch.where(moving, dx, torch.ones_like(dx))
        ta, tb = (-a - x0) * inv, (a - x0) * inv
        inside = x0.abs() <= a
        lo = torch.maximum(lo, torch.where(moving, torch.minimum(ta, tb), torch.where(inside, -1.0, 2.0)))
        hi = torch.minimum(hi, torch.where(moving, torch.maximum(ta, tb), torch.where(inside, 2.0, -1.0)))
    q0, q1 = p0 + lo[..., None] * d, p0 + hi[..., None] * d
    area = 0.5 * (q0[..., 0] * q1[..., 1] - q0[..., 1] * q1[..., 0])
    return torch.where(hi > lo, area, torch.zeros_like(area))


def keypoints(block_pose: Tensor) -> Tensor:
    """(..., 16) the corners (x, y) of the T's bar, then its stem, at reference poses (..., 3) [m]."""
    corners, _ = _edges(*_rectangles(block_pose))  # (..., 2, 4, 2)
    return corners.flatten(-3)


def coverage(block_pose: Tensor, goal_pose: Tensor | None = None, tol: float | None = None) -> Tensor:
    """Fraction of the goal T covered by the block: area(block ∩ goal) / area(goal), exact and batched (N,).

    Green's theorem: the area of the intersection of two convex polygons is ½ Σ q0 × q1 over its boundary, which
    is made of the parts of each polygon's edges inside the other. The T is two rectangles, so the intersection
    is the sum over the four rectangle pairs; each pair's boundary comes from clipping the 4 + 4 edges against
    the other rectangle. Edges shared by both (the block exactly on the goal) must count once: a block edge is
    tested a hair (`tol` [m]; default 1e-7 in float32, 1e-10 in float64) to its left — inside the block — and a
    goal edge against the block shrunk by `tol`, so a common edge counts once when both rectangles lie on the same
    side of it and not at all otherwise. The shift costs < 1e-5 of the goal's area (float32); the result matches
    shapely's polygon intersection within that (tests/envs/test_pusht.py).
    """
    dt = torch.float64 if block_pose.dtype == torch.float64 else torch.float32
    tol = tol if tol is not None else (1e-10 if dt == torch.float64 else 1e-7)
    pose = block_pose.to(dt)
    goal = (torch.tensor(GOAL_POSE) if goal_pose is None else goal_pose).to(pose.device, dt)
    origin = goal[:2]  # coordinates relative to the goal: small numbers, small rounding errors in the products
    pose = torch.cat((pose[:, :2] - origin, pose[:, 2:]), -1)
    goal = torch.cat((torch.zeros_like(origin), goal[2:]), -1)
    bc, ba, half = _rectangles(pose)  # (N, 2, 2), (N, 2)
    gc, ga, _ = _rectangles(goal)  # (2, 2), (2,)
    b0, b1 = _edges(bc, ba, half)  # (N, 2, 4, 2): block rectangle i, edge e
    g0, g1 = _edges(gc, ga, half)  # (2, 4, 2)
    # block edges (shifted left by tol) inside goal rectangle j: (N, i, j, e)
    left = torch.stack((-(b1 - b0)[..., 1], (b1 - b0)[..., 0]), -1)
    shift = tol * left / left.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    area = _clipped_edge_area((b0 + shift)[:, :, None], (b1 + shift)[:, :, None], gc[None, None, :, None],
                              ga[None, None, :, None], half[None, None, :, None]).sum((1, 2, 3))
    # goal edges inside block rectangle i shrunk by tol: (N, i, j, e)
    area = area + _clipped_edge_area(g0[None, None], g1[None, None], bc[:, :, None, None], ba[:, :, None, None],
                                     (half - tol)[None, :, None, None]).sum((1, 2, 3))
    goal_area = 4 * (BAR[2] * BAR[3] + STEM[2] * STEM[3])
    return (area / goal_area).clamp(0.0, 1.0).to(block_pose.dtype)


@dataclass(kw_only=True)
class PushTCfg(EnvCfg):
    """Push-T: push the T block onto the goal T with a disc pusher (gym-pusht figures; see the module docstring)."""

    num_envs: int = 64
    sim_dt: float = 0.01
    """Physics step [s] (gym-pusht: pymunk at 0.01 s)."""
    decimation: int = 10
    """Physics steps per policy step: 10 Hz control, as gym-pusht."""
    episode_length_s: float = 30.0
    """300 policy steps (gym-pusht's max_episode_steps)."""
    backend: Literal["mujoco_cpu", "mjwarp"] = "mujoco_cpu"
    """Physics backend: MuJoCo on the CPU, or MuJoCo Warp (GPU, or warp's CPU device when device is 'cpu')."""
    fallback_to_cpu: bool = False
    """mjwarp on device 'cuda' without CUDA: run on warp's CPU device instead of failing."""
    observation: Literal["state", "keypoints"] = "state"
    """Policy state without a camera: state = gym-pusht's 5-D (agent, block position, angle in [0, 2π));
    keypoints = agent position + the T's 8 corners (18-D; gym-pusht's environment_state_agent_pos)."""
    cameras: tuple[str, ...] = ()
    """("top",): obs["policy"] = {"state": agent position, "rgb_top": image} (gym-pusht's pixels_agent_pos);
    empty: obs["policy"] is gym-pusht's 5-D state."""
    image_size: tuple[int, int] = (96, 96)
    """Camera image (height, width) [px] (gym-pusht: 96 × 96)."""
    success_threshold: float = SUCCESS_COVERAGE
    """Success when the coverage exceeds this (gym-pusht: 0.95); the reward is clip(coverage / this, 0, 1)."""
    terminate_on_success: bool = True
    """End the episode at success (gym-pusht does); off: run all 300 steps (Diffusion Policy's evaluation)."""
    randomize: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Per-episode scale ranges (nominal × U(low, high)): "damping" (the block's quasi-static damping), "mass"
    (the block's mass and inertia), "kp" (the pusher's PD gains). Empty (default): gym-pusht's fixed physics."""
    reward_scales: dict[str, float] = field(default_factory=lambda: {"coverage": 1.0})
    """coverage: clip(coverage / success_threshold, 0, 1) per step, as gym-pusht's reward."""


class PushTEnv(BatchedEnv[PushTCfg]):
    """push-t: N copies of gym-pusht's Push-T in MuJoCo (see the module docstring)."""

    task_name = "push-t"
    description = "Planar pusher (MuJoCo): push a T-shaped block onto a fixed goal pose (Diffusion Policy's Push-T)"
    termination_terms: tuple[str, ...] = ()
    RAND_KEYS = ("damping", "mass", "kp")

    def __init__(self, cfg: PushTCfg, seed: int = 0) -> None:
        self.spec = self.make_spec(cfg)
        unknown = set(cfg.randomize) - set(self.RAND_KEYS)
        if unknown:
            raise ConfigError(f"{self.task_name}: unknown randomize keys {sorted(unknown)}; known: {self.RAND_KEYS}")
        if cfg.backend == "mjwarp":  # a missing CUDA is an error unless the config allows warp's CPU device
            from robolearn.sim.mjwarp import resolve_device

            device = resolve_device(cfg.device, cfg.fallback_to_cpu, self.task_name)
            if device != torch.device(cfg.device):
                cfg = replace(cfg, device=str(device))
        super().__init__(cfg, seed)
        self.model = load_model(ASSETS / "pusht.xml", self.task_name)
        self.model.opt.timestep = cfg.sim_dt
        if cfg.cameras:
            self.model.vis.global_.offheight = max(self.model.vis.global_.offheight, cfg.image_size[0])
            self.model.vis.global_.offwidth = max(self.model.vis.global_.offwidth, cfg.image_size[1])
        self.sim: Backend = make_backend(cfg.backend, self.model, cfg.num_envs, cfg.device, self.task_name,
                                         fallback_to_cpu=cfg.fallback_to_cpu)
        mujoco, m, n, dev = import_mujoco(), self.model, self.num_envs, self.device
        jnt = {name: int(m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, name)])
               for name in ("block_x", "block_y", "block_yaw", "agent_x", "agent_y")}
        self.block_q = [jnt["block_x"], jnt["block_y"], jnt["block_yaw"]]
        self.agent_q = [jnt["agent_x"], jnt["agent_y"]]
        self.block_body = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "block")
        self.goal_pose = torch.tensor(GOAL_POSE, device=dev)
        self.cog = torch.tensor(COG, device=dev)
        self.target = torch.zeros(n, 2, device=dev)
        self.coverage = torch.zeros(n, device=dev)
        self.max_coverage = torch.zeros(n, device=dev)
        self.succeeded = torch.zeros(n, dtype=torch.bool, device=dev)
        self.ever_succeeded = torch.zeros(n, dtype=torch.bool, device=dev)
        self.rand_scale = torch.ones(n, len(self.RAND_KEYS), device=dev)
        self._renderers: dict[tuple[int, int], Any] = {}
        self._viz_renderer: Any = None
        self._substeps_pending = False
        # what `viz_state` shows for an env that has just finished (its last state, not the reset one)
        self._viz_frames = 0
        self._just_finished = torch.zeros(n, dtype=torch.bool, device=dev)
        self._final_coverage = torch.zeros(n, device=dev)
        self._final_frames: dict[int, Tensor] = {}

    # ---- specification -------------------------------------------------------------------------
    @classmethod
    def reward_term_names(cls) -> list[str]:
        """Named reward terms."""
        return ["coverage"]

    @classmethod
    def make_spec(cls, cfg: PushTCfg) -> TaskSpec:
        """Observation and action specification for a config (no simulator needed)."""
        for cam in cfg.cameras:
            if cam != "top":
                raise ConfigError(f"{cls.task_name}: unknown camera '{cam}' (top)")
        agent = ObsTerm("agent_pos", 2, "m", "pusher position (x, y), workspace centre at 0, y up")
        state = (
            agent,
            ObsTerm("block_pos", 2, "m", "T reference point (middle of the bar's top edge), as gym-pusht's"),
            ObsTerm("block_angle", 1, "rad", "T angle in [0, 2π) (0: bar on top, stem pointing down)"),
        )
        policy = (agent,) if cfg.cameras else state
        if cfg.observation == "keypoints" and not cfg.cameras:
            policy = (agent, ObsTerm("keypoints", 16, "m", "corners (x, y) of the T's bar, then its stem "
                                                           "(counter-clockwise from bottom-left in the T's frame)"))
        elif cfg.observation not in ("state", "keypoints"):
            raise ConfigError(f"{cls.task_name}: observation must be 'state' or 'keypoints', got {cfg.observation!r}")
        critic = state + (
            ObsTerm("agent_vel", 2, "m/s", "pusher velocity"),
            ObsTerm("block_vel", 3, "m/s, rad/s", "T velocity at its centre of gravity, angular velocity"),
            ObsTerm("coverage", 1, "", "area(block ∩ goal) / area(goal)"),
            ObsTerm("params", len(cls.RAND_KEYS), "", "randomized block damping, block mass, pusher gains / nominal"),
        )
        action = ActionTerm("agent_target", 2, "m", (HALF_WORKSPACE,) * 2, (0.0, 0.0),
                            "absolute pusher target (x, y), world frame (gym-pusht's action in [0, 512] px)")
        return TaskSpec(
            name=cls.task_name,
            obs_terms={"policy": policy, "critic": critic},
            action=ActionSpec((action,), rate_hz=1.0 / cfg.step_dt, mode="position"),
            robot=ROBOT,
            description=cls.description,
            reward_scales=dict(cfg.reward_scales),
        )

    def image_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes (without the env dimension) of the image terms in obs["policy"]."""
        h, w = self.cfg.image_size
        return {f"rgb_{cam}": (h, w, 3) for cam in self.cfg.cameras}

    # ---- state ---------------------------------------------------------------------------------
    @property
    def agent_pos(self) -> Tensor:
        """(N, 2) pusher position [m]."""
        return self.sim.qpos[:, self.agent_q]

    @property
    def block_cog_pose(self) -> Tensor:
        """(N, 3) the T's centre of gravity (x, y) [m] and angle [rad] (unwrapped)."""
        return self.sim.qpos[:, self.block_q]

    @property
    def block_pose(self) -> Tensor:
        """(N, 3) the T's reference point (middle of the bar's top edge) [m] and angle [rad] (unwrapped)."""
        cog = self.block_cog_pose
        ref = cog[:, :2] - (_rot(cog[:, 2]) @ self.cog)  # reference point = cog − R(θ) cog_local
        return torch.cat((ref, cog[:, 2:]), -1)

    def block_pose_from_ref(self, ref_pose: Tensor) -> Tensor:
        """(K, 3) centre-of-gravity pose for T reference poses (K, 3)."""
        cog = ref_pose[:, :2] + _rot(ref_pose[:, 2]) @ self.cog
        return torch.cat((cog, ref_pose[:, 2:]), -1)

    # ---- hooks ---------------------------------------------------------------------------------
    def _apply_action(self, action: Tensor) -> None:
        self._just_finished[:] = False
        self.target = HALF_WORKSPACE * action
        self._substeps_pending = True

    def _physics_step(self) -> None:
        # BatchedEnv calls this `decimation` times per policy step; the backend runs all substeps in one call
        if self._substeps_pending:
            self.sim.step(self.target, self.cfg.decimation)
            self._substeps_pending = False

    def _policy_state(self) -> Tensor:
        pose = self.block_pose
        return torch.cat((self.agent_pos, pose[:, :2], torch.remainder(pose[:, 2:], 2 * math.pi)), -1)

    def _observe(self) -> Obs:
        state = self._policy_state()
        qvel = self.sim.qvel
        critic = torch.cat((state, qvel[:, self.agent_q], qvel[:, self.block_q], self.coverage[:, None],
                            self.rand_scale), -1)
        if not self.cfg.cameras:
            if self.cfg.observation == "keypoints":
                return {"policy": torch.cat((self.agent_pos, keypoints(self.block_pose)), -1), "critic": critic}
            return {"policy": state, "critic": critic}
        return {"policy": {"state": self.agent_pos, **self.render_images()}, "critic": critic}

    def render_images(self) -> dict[str, Tensor]:
        """Camera terms of obs["policy"] for every env (see `image_shapes`)."""
        return {f"rgb_{cam}": self.render(camera=cam) for cam in self.cfg.cameras}

    def render(self, env_ids: Tensor | list[int] | None = None, camera: str = "top",
               size: tuple[int, int] | None = None) -> Tensor:
        """(K, H, W, 3) uint8 top views of envs `env_ids` (default: all).

        MuJoCo's OpenGL on mujoco_cpu, MuJoCo Warp's ray tracer on mjwarp (which traces every world, then selects).
        One renderer per image size. (Evaluation videos draw a few envs through `_viz_render` instead.)
        """
        if camera != "top":
            raise ConfigError(f"{self.task_name}: unknown camera '{camera}' (top)")
        h, w = size or self.cfg.image_size
        if (h, w) not in self._renderers:
            self._renderers[(h, w)] = make_renderer(self.sim, h, w, self.task_name)
        return self._renderers[(h, w)].render(camera, env_ids=env_ids)[0]

    def _reward_terms(self) -> dict[str, Tensor]:
        self.coverage = coverage(self.block_pose, self.goal_pose)
        self.max_coverage = torch.maximum(self.max_coverage, self.coverage)
        self.succeeded = self.coverage > self.cfg.success_threshold
        self.ever_succeeded |= self.succeeded
        reward = (self.coverage / self.cfg.success_threshold).clamp(0.0, 1.0)
        return {"coverage": reward / self.step_dt}  # per step: reward = clip(coverage / 0.95, 0, 1)

    def _terminated(self) -> Tensor:
        if not self.cfg.terminate_on_success:
            return torch.zeros_like(self.succeeded)
        return self.succeeded.clone()  # a copy: resetting the finished envs clears `succeeded` in place

    def _task_metrics(self, done_ids: Tensor) -> dict[str, Tensor]:
        self._just_finished[done_ids] = True
        self._final_coverage[done_ids] = self.coverage[done_ids]
        shown = [i for i in done_ids.tolist() if i < self._viz_frames]
        if shown:
            for i, frame in zip(shown, self._viz_render(shown), strict=True):
                self._final_frames[i] = frame
        return {"success": self.ever_succeeded[done_ids].float(), "coverage": self.coverage[done_ids],
                "max_coverage": self.max_coverage[done_ids]}

    def sample_initial_states(self, k: int) -> Tensor:
        """(K, 5) initial states in px/rad drawn as gym-pusht's `reset` draws them.

        Agent ∈ randint(50, 450)², block reference point ∈ randint(100, 400)², angle = N(0, 1) · 2π − π
        (gym-pusht draws a normal here, not a uniform).
        """
        agent = torch.floor(self.uniform(50.0, 450.0, k, 2))
        block = torch.floor(self.uniform(100.0, 400.0, k, 2))
        angle = self.randn(k, 1) * 2 * math.pi - math.pi
        return torch.cat((agent, block, angle), -1)

    def _reset_idx(self, env_ids: Tensor) -> None:
        k = len(env_ids)
        self._randomize(env_ids)
        state = px_to_world(self.sample_initial_states(k))
        self.set_states(env_ids, state)

    def set_states(self, env_ids: Tensor, state: Tensor) -> None:
        """Put envs `env_ids` in states (K, 5) (agent x, y, block reference x, y, angle; metres/radians), at rest.

        As gym-pusht's `_set_state`: the block's reference point is placed at angle 0 and the T is then turned
        about its centre of gravity, so the reference point of the result differs from the one given unless the
        angle is 0. The pusher's target is its position.
        """
        k = len(env_ids)
        qpos = torch.zeros(k, self.model.nq, device=self.device)
        qvel = torch.zeros(k, self.model.nv, device=self.device)
        cog = state[:, 2:4] + self.cog  # the reference point placed at angle 0, then turned about the cog
        qpos[:, self.block_q] = torch.cat((cog, state[:, 4:5]), -1)
        qpos[:, self.agent_q] = state[:, :2]
        self.sim.reset_idx(env_ids, qpos, qvel, state[:, :2])
        self.target[env_ids] = state[:, :2]
        self.action[env_ids] = state[:, :2] / HALF_WORKSPACE
        ids = env_ids.to(self.device)
        self.coverage[ids] = coverage(self.block_pose[ids], self.goal_pose)
        self.max_coverage[ids] = self.coverage[ids]
        self.succeeded[ids] = False
        self.ever_succeeded[ids] = False

    def _randomize(self, env_ids: Tensor) -> None:
        k = len(env_ids)
        for j, name in enumerate(self.RAND_KEYS):
            low, high = self.cfg.randomize.get(name, (1.0, 1.0))
            self.rand_scale[env_ids, j] = self.uniform(low, high, k)
        self._apply_params(env_ids)

    def _apply_params(self, env_ids: Tensor) -> None:
        s = self.rand_scale[env_ids]
        self.sim.set_params(env_ids, "dof_damping", self.block_q, s[:, 0:1].expand(-1, 3))
        self.sim.set_params(env_ids, "body_mass", [self.block_body], s[:, 1:2])
        self.sim.set_params(env_ids, "actuator_kp", [0, 1], s[:, 2:3].expand(-1, 2))

    # ---- exact resume: the physics state lives in the backend ----------------------------------
    def state_dict(self) -> dict[str, Tensor]:
        """Env tensors, RNG and the backend's full physics state."""
        state = super().state_dict()
        state["_physics"] = self.sim.get_state()
        return {k: v for k, v in state.items() if not k.startswith("sim.")}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore env tensors, re-apply the randomized parameters, restore the physics state."""
        state = dict(state)
        physics = state.pop("_physics")
        super().load_state_dict(state)
        self._apply_params(torch.arange(self.num_envs, device=self.device))
        self.sim.set_state(physics)

    # ---- expert, visualization -----------------------------------------------------------------
    def expert_action(self, obs: Obs) -> Tensor:
        """The scripted pushing expert (`robolearn.envs.manipulation.pusht_expert`) on the true state."""
        from robolearn.envs.manipulation.pusht_expert import expert_action

        # the expert reads the true 5-D state: the critic's first terms (the policy group may hold pixels or keypoints)
        state = obs["critic"][:, :5] if "critic" in obs else obs["policy"]
        if state.shape != (self.num_envs, 5):
            raise RobolearnError(f"{self.task_name}: expert needs the (N, 5) state, got {tuple(state.shape)}")
        return expert_action(state)

    def _viz_render(self, env_ids: list[int]) -> Tensor:
        """(K, *VIZ_SIZE, 3) uint8 top views of envs `env_ids` for videos, on the CPU.

        MuJoCo's OpenGL from a host copy of each env on either backend (`robolearn.envs.viz.EpisodeRenderer`): a
        few envs, so `mjwarp` copies them off the device rather than ray tracing every world.
        """
        if self._viz_renderer is None:
            from robolearn.envs.viz import EpisodeRenderer

            self._viz_renderer = EpisodeRenderer(self, VIZ_SIZE, camera="top")
        return self._viz_renderer.render(env_ids)

    def viz_state(self, frames: int = 4) -> dict[str, Tensor]:
        """What evaluation records each step: coverage and top-view frames of the first `frames` envs.

        An env that finished in the last step shows its final state (coverage, frame), not the reset one.
        """
        cov = torch.where(self._just_finished, self._final_coverage, self.coverage)
        out = {"coverage": cov, "block_pose": self.block_pose, "agent_pos": self.agent_pos.clone()}
        if frames > 0:
            self._viz_frames = min(frames, self.num_envs)
            ids = list(range(self._viz_frames))
            imgs = self._viz_render(ids)
            for i in ids:
                if bool(self._just_finished[i]) and i in self._final_frames:
                    imgs[i] = self._final_frames[i]
            out["frame"] = imgs
        return out
