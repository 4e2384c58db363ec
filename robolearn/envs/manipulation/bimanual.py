"""ALOHA-class bimanual tasks on a MuJoCo backend: `bimanual-transfer-cube` and `bimanual-insertion`.

In the spirit of the simulated tasks of ACT (Zhao et al. 2023, "Learning Fine-Grained Bimanual Manipulation with
Low-Cost Hardware"): two ViperX-300-class 6-DoF arms facing each other across a table (`sim_assets/aloha_bimanual/`,
written by this project; figures and sources in its README), 50 Hz control, 400-step (8 s) episodes.

transfer-cube  the right arm picks up a randomly placed 4 cm cube and hands it to the left arm in mid-air.
               Success: the left gripper holds the cube lifted off the table and the right gripper has let go.
insertion      the left arm picks up a socket (a square tube closed at one end), the right arm a peg; the peg
               goes into the socket in mid-air. Success: the peg's tip `insert_depth` inside the socket, centred,
               both objects off the table.

Actions (normalized to [-1, 1]; left arm first, as ACT orders them):
    "joint_pos"  per arm: 6 absolute joint targets (a = −1 … 1 spans each joint's range) and the gripper opening
                 (a = −1 closed … 1 open, i.e. ACT's normalized gripper 0 … 1) — 14 in all
    "ee_delta"   per arm: TCP translation (3, ≤ `ee_pos_step` m) and rotation (3, axis-angle in the world frame,
                 ≤ `ee_rot_step` rad) per step, and the gripper — 14 in all. The deltas move a TCP goal (kept
                 within 5 cm of the measured TCP), which damped-least-squares IK tracks: servo lag does not
                 accumulate into drift, as it would if each delta were taken from the measured pose

Observations: "policy" is what ALOHA reports, in ACT's order: qpos (14: per arm, left first, 6 joint angles and
the normalized gripper opening; terms `left_joint_pos`, `left_gripper`, `right_joint_pos`, `right_gripper`) then
qvel (14, alike), with observation noise; with `cameras` set also the images (`rgb_top`, `rgb_left_wrist`,
`rgb_right_wrist`; obs["policy"] then becomes {"state": (N, 28), "rgb_<camera>": (N, H, W, 3) uint8, ...}).
"critic" adds the objects' exact poses and velocities, both TCP poses, the finger-pad contact forces, ACT's task
stage (0–4) and the randomized physical parameters (scale factors of their nominal values).

Rewards: dense shaping terms, `stage` (ACT's staged 0–4 reward divided by 4: the sparse signal), action_rate,
joint_vel, and one-off `success` / `failure` (an object off the table) terms that end the episode.
`render()` returns the `render_camera` image of every env, which `robolearn collect` records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from robolearn.core.errors import ConfigError
from robolearn.core.kinematics import dls_step, hinge_jacobian
from robolearn.core.math import quat_conjugate, quat_from_axis_angle, quat_mul, quat_normalize, quat_to_rotmat
from robolearn.core.types import ActionSpec, ActionTerm, Obs, ObsTerm, TaskSpec, VizCurve
from robolearn.envs.manipulation.mujoco_task import MujocoTaskCfg, MujocoTaskEnv
from robolearn.sim.backend import import_mujoco

ROBOT = "aloha-bimanual"
ASSETS = Path(__file__).resolve().parents[3] / "sim_assets" / "aloha_bimanual"
ARMS = ("left", "right")
ARM_JOINTS = 6
JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")
HOME = (0.0, -0.96, 1.16, 0.0, -0.3, 0.0)
"""ACT's start pose of each arm [rad] (`START_ARM_POSE`): gripper in front of the shoulder, above the table."""
FINGER_CLOSED, FINGER_OPEN = 0.002, 0.037
"""Half opening between the pads [m] at gripper 0 (closed) and 1 (open)."""
CAMERAS = {"top": "top", "left_wrist": "left/wrist", "right_wrist": "right/wrist"}
EE_GOAL_LEAD = 0.05
"""ee_delta: the commanded TCP goal stays within this distance of the measured TCP [m] (no wind-up when blocked)."""


def rotation_error(q_des: Tensor, q: Tensor) -> Tensor:
    """Axis × angle (world frame) of the rotation taking orientation `q` to `q_des` (..., 4) -> (..., 3)."""
    e = quat_mul(q_des, quat_conjugate(q))
    e = torch.where(e[..., :1] < 0, -e, e)
    v = e[..., 1:]
    norm = v.norm(dim=-1, keepdim=True)
    return v / norm.clamp_min(1e-9) * 2 * torch.atan2(norm, e[..., :1])


@dataclass(kw_only=True)
class BimanualCfg(MujocoTaskCfg):
    """Shared settings of the bimanual tasks: action mode, randomization, noise, cameras."""

    num_envs: int = 64
    sim_dt: float = 0.004
    """Physics step [s] (overrides the MJCF timestep)."""
    decimation: int = 5
    """Physics steps per policy step: 50 Hz policy, as ALOHA."""
    episode_length_s: float = 8.0
    """400 policy steps, as ACT's simulated episodes."""
    action_mode: Literal["joint_pos", "ee_delta"] = "joint_pos"
    """"joint_pos": absolute joint targets (ACT's action space); "ee_delta": TCP deltas through differential IK."""
    ee_pos_step: float = 0.03
    """ee_delta: TCP translation per policy step at |a| = 1 [m]."""
    ee_rot_step: float = 0.1
    """ee_delta: TCP rotation per policy step at |a| = 1 [rad]."""
    ik_damping: float = 0.05
    """Damping λ of the least-squares IK: dq = Jᵀ (J Jᵀ + λ² I)⁻¹ e."""
    init_joint_noise: float = 0.02
    """Initial joint positions: ACT's start pose + U(± this) [rad]."""
    randomize: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {"friction": (0.8, 1.2), "mass": (0.8, 1.2), "damping": (0.8, 1.25), "kp": (0.8, 1.2)}
    )
    """Per-episode scale ranges (nominal × U(low, high)) of the finger-pad friction (one per env), link masses,
    arm joint damping and arm servo stiffness (each per link/joint, 12); empty: off."""
    object_mass: tuple[float, float] = (0.8, 1.25)
    """Scale range of each object's mass."""
    object_friction: tuple[float, float] = (0.8, 1.2)
    """Scale range of each object's sliding friction."""
    obs_noise: dict[str, float] = field(default_factory=lambda: {"joint_pos": 0.001, "joint_vel": 0.01})
    """Standard deviation of Gaussian noise on the policy terms (joint_pos [rad], joint_vel [rad/s])."""
    cameras: tuple[str, ...] = ()
    """Cameras rendered into obs["policy"] ("top", "left_wrist", "right_wrist"); empty: obs["policy"] is a tensor."""
    object_state: bool = False
    """Append each object's exact pose (position, quaternion w-first) to the policy state: a state-based policy that
    is told what a camera would show (for training on a CPU); a real ALOHA has no such sensor."""
    image_size: tuple[int, int] = (120, 160)
    """Camera image (height, width) [px] (ACT: 480 × 640; a quarter of each side by default)."""
    render_camera: str = "top"
    """Camera that `render()` returns (what `robolearn collect` records as observation.images.camera)."""
    end_on_success: bool = True
    """Success ends the episode (False: episodes run the full time limit, as ACT's do)."""


class BimanualEnv(MujocoTaskEnv[BimanualCfg]):
    """Base class of the bimanual tasks; subclasses define the objects, stages and rewards."""

    task_name = "bimanual"
    description = ""
    assets = ASSETS
    scene = ""
    camera_names = CAMERAS
    viz_camera = "top"
    """MJCF camera of the evaluation video (episodes.mp4)."""
    termination_terms = ("success", "failure")
    objects: tuple[str, ...] = ()
    """MJCF names of the objects' bodies, free joints and geoms (sensors `<name>_pos`, `<name>_quat`)."""
    object_rest_z: tuple[float, ...] = ()
    """Height of each object's centre resting on the table [m]."""

    def __init__(self, cfg: BimanualCfg, seed: int = 0) -> None:
        self.spec = self.make_spec(cfg)
        if cfg.render_camera not in CAMERAS:
            raise ConfigError(f"{self.task_name}: unknown render_camera '{cfg.render_camera}' ({', '.join(CAMERAS)})")
        super().__init__(cfg, seed)
        self._ids(self.model)
        n, dev = self.num_envs, self.device
        self.home = torch.tensor(HOME * 2, device=dev)
        self.joint_low = torch.tensor(self.model.jnt_range[self.arm_jnt, 0], dtype=torch.float32, device=dev)
        self.joint_high = torch.tensor(self.model.jnt_range[self.arm_jnt, 1], dtype=torch.float32, device=dev)
        self.prev_action = torch.zeros(n, self.spec.action.dim, device=dev)
        self.failed = torch.zeros(n, dtype=torch.bool, device=dev)
        self.succeeded = torch.zeros(n, dtype=torch.bool, device=dev)
        self.ever_succeeded = torch.zeros(n, dtype=torch.bool, device=dev)
        self.stage = torch.zeros(n, device=dev)
        self.max_stage = torch.zeros(n, device=dev)
        self.object_init = torch.zeros(n, len(self.objects), 7, device=dev)
        """Each object's pose at reset (position, quaternion w, x, y, z): what the scripted expert plans from."""
        self.object_params = torch.ones(n, 2 * len(self.objects), device=dev)
        """Per object: mass and sliding-friction scale factors."""
        self.rand_scale = {k: torch.ones(n, len(ids), device=dev) for k, (_, ids) in self._rand_fields().items()}
        self.ee_goal_pos = self.tcp_pos.clone()
        self.ee_goal_quat = self.tcp_quat()
        """ee_delta: the TCP goals (N, 2, 3) and (N, 2, 4) the deltas move."""

    # ---- model ids -----------------------------------------------------------------------------
    def _ids(self, m: Any) -> None:
        mujoco = import_mujoco()

        def nid(kind: Any, name: str) -> int:
            return mujoco.mj_name2id(m, kind, name)

        jnt, body, geom, site = (mujoco.mjtObj.mjOBJ_JOINT, mujoco.mjtObj.mjOBJ_BODY, mujoco.mjtObj.mjOBJ_GEOM,
                                 mujoco.mjtObj.mjOBJ_SITE)
        self.arm_jnt = [nid(jnt, f"{a}/{j}") for a in ARMS for j in JOINTS]  # (12,) left then right
        self.arm_qpos = [int(m.jnt_qposadr[j]) for j in self.arm_jnt]
        self.arm_dof = [int(m.jnt_dofadr[j]) for j in self.arm_jnt]
        self.finger_qpos = [int(m.jnt_qposadr[nid(jnt, f"{a}/finger_{s}")]) for a in ARMS for s in ("left", "right")]
        self.finger_dof = [int(m.jnt_dofadr[nid(jnt, f"{a}/finger_left")]) for a in ARMS]
        self.tcp_site = [nid(site, f"{a}/tcp") for a in ARMS]
        self.pad_geoms = [nid(geom, f"{a}/{s}_pad") for a in ARMS for s in ("left", "right")]
        links = ("shoulder", "upper_arm", "upper_forearm", "lower_forearm", "wrist", "gripper")
        self.link_bodies = [nid(body, f"{a}/{b}") for a in ARMS for b in links]
        self.arm_actuators = [a * 7 + j for a in range(2) for j in range(ARM_JOINTS)]
        self.obj_qpos = [int(m.jnt_qposadr[nid(jnt, o)]) for o in self.objects]
        self.obj_dof = [int(m.jnt_dofadr[nid(jnt, o)]) for o in self.objects]
        self.obj_body = [nid(body, o) for o in self.objects]
        self.obj_geoms = [[g for g in range(m.ngeom) if int(m.geom_bodyid[g]) == b] for b in self.obj_body]
        if min(self.arm_jnt + self.tcp_site + self.obj_body) < 0:
            raise ConfigError(f"{self.task_name}: {self.assets / self.scene} lacks a joint, site or body of the task")

    def _rand_fields(self) -> dict[str, tuple[str, list[int]]]:
        """Randomization name -> (backend field, element ids)."""
        return {
            "friction": ("geom_friction", list(self.pad_geoms)),
            "mass": ("body_mass", list(self.link_bodies)),
            "damping": ("dof_damping", list(self.arm_dof)),
            "kp": ("actuator_kp", list(self.arm_actuators)),
        }

    # ---- specification -------------------------------------------------------------------------
    @classmethod
    def reward_term_names(cls) -> list[str]:
        """Named reward terms (see `_reward_terms`)."""
        raise NotImplementedError

    @classmethod
    def make_spec(cls, cfg: BimanualCfg) -> TaskSpec:
        """Observation and action specification for a config (no simulator needed)."""
        terms: list[ActionTerm] = []
        for arm in ARMS:
            if cfg.action_mode == "joint_pos":
                low, high = _JOINT_RANGE
                terms.append(ActionTerm(f"{arm}_joint_pos", ARM_JOINTS, "rad",
                                        tuple((h - lo) / 2 for lo, h in zip(low, high, strict=True)),
                                        tuple((h + lo) / 2 for lo, h in zip(low, high, strict=True)),
                                        f"{arm} arm joint targets ({', '.join(JOINTS)}), a = ±1 at the joint limits"))
            elif cfg.action_mode == "ee_delta":
                terms.append(ActionTerm(f"{arm}_ee_pos_delta", 3, "m", (cfg.ee_pos_step,) * 3, (0.0,) * 3,
                                        f"{arm} TCP translation per step, world frame"))
                terms.append(ActionTerm(f"{arm}_ee_rot_delta", 3, "rad", (cfg.ee_rot_step,) * 3, (0.0,) * 3,
                                        f"{arm} TCP rotation per step (axis-angle), world frame"))
            else:
                raise ConfigError(f"{cls.task_name}: unknown action_mode '{cfg.action_mode}' (joint_pos or ee_delta)")
            terms.append(ActionTerm(f"{arm}_gripper", 1, "", (0.5,), (0.5,),
                                    f"{arm} gripper opening, normalized: 0 closed … 1 open"))
        for cam in cfg.cameras:
            if cam not in CAMERAS:
                raise ConfigError(f"{cls.task_name}: unknown camera '{cam}' ({', '.join(CAMERAS)})")
        # ACT's qpos (14) then qvel (14): per arm 6 joints and the normalized gripper, left arm first
        proprio = tuple(ObsTerm(f"{arm}_{name}", dim, unit, f"{arm} arm: {what}")
                        for kind in ("pos", "vel") for arm in ARMS for name, dim, unit, what in (
                            (("joint_pos", 6, "rad", "joint angles (encoders)"),
                             ("gripper", 1, "", "gripper opening, normalized 0 closed … 1 open"))
                            if kind == "pos" else
                            (("joint_vel", 6, "rad/s", "joint velocities"),
                             ("gripper_vel", 1, "1/s", "rate of the normalized gripper opening"))))
        objects: list[ObsTerm] = []
        for o in cls.objects:
            objects += [ObsTerm(f"{o}_pos", 3, "m", f"exact {o} position"),
                        ObsTerm(f"{o}_quat", 4, "", f"exact {o} orientation (w, x, y, z)"),
                        ObsTerm(f"{o}_lin_vel", 3, "m/s", f"{o} linear velocity"),
                        ObsTerm(f"{o}_ang_vel", 3, "rad/s", f"{o} angular velocity")]
        for arm in ARMS:
            objects += [ObsTerm(f"{arm}_tcp_pos", 3, "m", f"{arm} TCP position"),
                        ObsTerm(f"{arm}_tcp_quat", 4, "", f"{arm} TCP orientation (w, x, y, z)")]
        nobj = len(cls.objects)
        poses = tuple(t for t in objects[:4 * nobj] if t.name.endswith(("_pos", "_quat")))  # per object: pos, quat
        policy = proprio + poses if cfg.object_state else proprio
        critic = proprio + (
            *objects,
            ObsTerm("finger_force", 4, "N", "normal contact force on the pads (left arm l/r, right arm l/r)"),
            ObsTerm("stage", 1, "", "ACT's task stage 0…4"),
            ObsTerm("params", 1 + 12 + 12 + 12 + 2 * nobj, "",
                    "randomized pad friction, link masses (12), joint damping (12), servo kp (12), object masses "
                    "and frictions, each / nominal"),
        )
        return TaskSpec(
            name=cls.task_name,
            obs_terms={"policy": policy, "critic": critic},
            action=ActionSpec(tuple(terms), rate_hz=1.0 / cfg.step_dt, mode=cfg.action_mode),
            robot=ROBOT,
            description=cls.description,
            reward_scales=dict(cfg.reward_scales),
        )

    # ---- robot and object state ----------------------------------------------------------------
    @property
    def joint_pos(self) -> Tensor:
        """(N, 12) arm joint angles, left then right [rad]."""
        return self.sim.qpos[:, self.arm_qpos]

    @property
    def joint_vel(self) -> Tensor:
        """(N, 12) [rad/s]."""
        return self.sim.qvel[:, self.arm_dof]

    @property
    def gripper(self) -> Tensor:
        """(N, 2) normalized gripper opening of the left and right arm (0 closed … 1 open)."""
        q = self.sim.qpos[:, self.finger_qpos[0::2]]
        return (q - FINGER_CLOSED) / (FINGER_OPEN - FINGER_CLOSED)

    @property
    def tcp_pos(self) -> Tensor:
        """(N, 2, 3) left and right TCP positions [m]."""
        return self.sim.site_xpos[:, self.tcp_site]

    @property
    def tcp_rot(self) -> Tensor:
        """(N, 2, 3, 3) left and right TCP orientations (TCP-to-world; x approach, y finger opening)."""
        return self.sim.site_xmat[:, self.tcp_site]

    def tcp_quat(self) -> Tensor:
        """(N, 2, 4) (w, x, y, z)."""
        return torch.stack([quat_normalize(self.sensor(f"{a}_tcp_quat")) for a in ARMS], 1)

    def object_pos(self, i: int) -> Tensor:
        """(N, 3) position of object `i` [m]."""
        return self.sensor(f"{self.objects[i]}_pos")

    def object_quat(self, i: int) -> Tensor:
        """(N, 4) orientation of object `i` (w, x, y, z)."""
        return quat_normalize(self.sensor(f"{self.objects[i]}_quat"))

    def object_rot(self, i: int) -> Tensor:
        """(N, 3, 3) orientation of object `i` (object-to-world)."""
        return quat_to_rotmat(self.object_quat(i))

    def pad_force(self) -> Tensor:
        """(N, 2, 2) normal force on the pads [N]: [arm, (left pad, right pad)]."""
        f = [self.sensor(f"{a}/{s}_touch") for a in ARMS for s in ("left", "right")]
        return torch.cat(f, -1).view(-1, 2, 2)

    def holds(self, arm: int, point: Tensor, radius: float = 0.04, force: float = 0.2) -> Tensor:
        """(N,) both pads of `arm` press on something and `point` (N, 3) is within `radius` of the TCP."""
        pressed = (self.pad_force()[:, arm] > force).all(-1)
        return pressed & ((point - self.tcp_pos[:, arm]).norm(dim=-1) < radius)

    def touches(self, arm: int, point: Tensor, radius: float = 0.05, force: float = 0.05) -> Tensor:
        """(N,) a pad of `arm` presses on something and `point` is within `radius` of the TCP."""
        pressed = (self.pad_force()[:, arm] > force).any(-1)
        return pressed & ((point - self.tcp_pos[:, arm]).norm(dim=-1) < radius)

    def jacobian(self, arm: int) -> Tensor:
        """(N, 6, 6) TCP Jacobian [linear; angular] of `arm` w.r.t. its six hinges."""
        jnt = self.arm_jnt[arm * ARM_JOINTS : (arm + 1) * ARM_JOINTS]
        return hinge_jacobian(self.sim.xaxis[:, jnt], self.sim.xanchor[:, jnt], self.tcp_pos[:, arm])

    def ik_step(self, arm: int, dpos: Tensor, drot: Tensor) -> Tensor:
        """(N, 6) joint targets moving `arm`'s TCP by (dpos, drot) (N, 3) each, damped least squares."""
        # dq = Jᵀ (J Jᵀ + λ² I)⁻¹ [Δp; Δθ]
        dq = dls_step(self.jacobian(arm), torch.cat((dpos, drot), -1), self.cfg.ik_damping)
        q = self.joint_pos[:, arm * ARM_JOINTS : (arm + 1) * ARM_JOINTS]
        return q + dq

    def joints_to_action(self, q: Tensor, gripper: Tensor) -> Tensor:
        """Normalized joint_pos action (N, 14) for joint targets (N, 12) and gripper openings (N, 2) in 0…1."""
        mid, half = (self.joint_high + self.joint_low) / 2, (self.joint_high - self.joint_low) / 2
        a = ((q - mid) / half).clamp(-1.0, 1.0)
        g = (2 * gripper - 1).clamp(-1.0, 1.0)
        return torch.cat((a[:, :6], g[:, :1], a[:, 6:], g[:, 1:]), -1)

    # ---- hooks ---------------------------------------------------------------------------------
    def _apply_action(self, action: Tensor) -> None:
        cfg = self.cfg
        targets, grips = [], []
        for arm in range(2):
            a = action[:, 7 * arm : 7 * arm + 7]
            if cfg.action_mode == "joint_pos":
                sl = slice(arm * ARM_JOINTS, (arm + 1) * ARM_JOINTS)
                mid = (self.joint_high[sl] + self.joint_low[sl]) / 2
                targets.append(mid + (self.joint_high[sl] - self.joint_low[sl]) / 2 * a[:, :6])
            else:
                targets.append(self._track_ee_goal(arm, cfg.ee_pos_step * a[:, :3], cfg.ee_rot_step * a[:, 3:6]))
            grips.append(FINGER_CLOSED + (FINGER_OPEN - FINGER_CLOSED) * (a[:, 6:7] + 1) / 2)
        q = torch.cat(targets, -1)
        q = torch.minimum(torch.maximum(q, self.joint_low), self.joint_high)
        self._ctrl = torch.cat((q[:, :6], grips[0], q[:, 6:], grips[1]), -1)
        self._substeps_pending = True

    def _track_ee_goal(self, arm: int, dpos: Tensor, drot: Tensor) -> Tensor:
        """ee_delta: move `arm`'s TCP goal by (dpos, drot) and return the IK joint targets towards it (N, 6)."""
        tcp = self.tcp_pos[:, arm]
        goal = self.ee_goal_pos[:, arm] + dpos
        lead = goal - tcp
        goal = tcp + lead * (EE_GOAL_LEAD / lead.norm(dim=-1, keepdim=True).clamp_min(EE_GOAL_LEAD))
        angle = drot.norm(dim=-1)
        turn = quat_from_axis_angle(drot / angle.clamp_min(1e-9)[:, None], angle)
        goal_q = quat_normalize(quat_mul(turn, self.ee_goal_quat[:, arm]))
        self.ee_goal_pos[:, arm], self.ee_goal_quat[:, arm] = goal, goal_q
        return self.ik_step(arm, goal - tcp, rotation_error(goal_q, self.tcp_quat()[:, arm]))

    def _policy_state(self) -> Tensor:
        noise, n = self.cfg.obs_noise, self.num_envs
        q = self.joint_pos + noise.get("joint_pos", 0.0) * self.randn(n, 12)
        dq = self.joint_vel + noise.get("joint_vel", 0.0) * self.randn(n, 12)
        g = self.gripper
        gv = self.sim.qvel[:, self.finger_dof] / (FINGER_OPEN - FINGER_CLOSED)
        return torch.cat((q[:, :6], g[:, :1], q[:, 6:], g[:, 1:], dq[:, :6], gv[:, :1], dq[:, 6:], gv[:, 1:]), -1)

    def _observe(self) -> Obs:
        state = self._policy_state()
        qvel, tcp_q = self.sim.qvel, self.tcp_quat()
        objects = [torch.cat((self.object_pos(i), self.object_quat(i), qvel[:, d : d + 6]), -1)
                   for i, d in enumerate(self.obj_dof)]
        tcp = torch.cat((self.tcp_pos[:, 0], tcp_q[:, 0], self.tcp_pos[:, 1], tcp_q[:, 1]), -1)
        r = self.rand_scale
        params = torch.cat((r["friction"][:, :1], r["mass"], r["damping"], r["kp"], self.object_params), -1)
        critic = torch.cat((state, *objects, tcp, self.pad_force().flatten(1), self.stage[:, None], params), -1)
        if self.cfg.object_state:  # the objects' exact poses, as in the critic: position then quaternion
            state = torch.cat((state, *(o[:, :7] for o in objects)), -1)
        if not self.cfg.cameras:
            return {"policy": state, "critic": critic}
        return {"policy": {"state": state, **self.render_images()}, "critic": critic}

    def render(self) -> Tensor:
        """(N, H, W, 3) uint8 image of every env from `cfg.render_camera` at `cfg.image_size`."""
        return self.render_camera(self.cfg.render_camera)[0]

    def _reset_idx(self, env_ids: Tensor) -> None:
        cfg, k = self.cfg, len(env_ids)
        self._randomize(env_ids)
        qpos = torch.zeros(k, self.model.nq, device=self.device)
        qvel = torch.zeros(k, self.model.nv, device=self.device)
        noise = cfg.init_joint_noise
        qpos[:, self.arm_qpos] = self.home + self.uniform(-noise, noise, k, 12)
        qpos[:, self.finger_qpos] = FINGER_OPEN
        self._reset_objects(env_ids, qpos)
        for i, a in enumerate(self.obj_qpos):
            self.object_init[env_ids, i] = qpos[:, a : a + 7]
        q = qpos[:, self.arm_qpos]
        g = torch.full((k, 1), FINGER_OPEN, device=self.device)
        ctrl = torch.cat((q[:, :6], g, q[:, 6:], g), -1)
        self.sim.reset_idx(env_ids, qpos, qvel, ctrl)
        self._ctrl = self.sim.ctrl.clone()
        self.ee_goal_pos[env_ids] = self.tcp_pos[env_ids]
        self.ee_goal_quat[env_ids] = self.tcp_quat()[env_ids]
        if cfg.action_mode == "joint_pos":  # the action that holds the start pose, grippers open
            self.action[env_ids] = self.joints_to_action(q, torch.ones(k, 2, device=self.device))
        else:
            self.action[env_ids] = torch.tensor([0.0] * 6 + [1.0], device=self.device).repeat(k, 2)
        self.prev_action[env_ids] = self.action[env_ids]
        self.failed[env_ids] = False
        self.succeeded[env_ids] = False
        self.ever_succeeded[env_ids] = False
        self.stage[env_ids] = 0.0
        self.max_stage[env_ids] = 0.0

    def _reset_objects(self, env_ids: Tensor, qpos: Tensor) -> None:
        """Sample the objects' start poses into `qpos` (K, nq)."""
        raise NotImplementedError

    def _randomize(self, env_ids: Tensor) -> None:
        k = len(env_ids)
        for name, (fld, ids) in self._rand_fields().items():
            low, high = self.cfg.randomize.get(name, (1.0, 1.0))
            scale = self.uniform(low, high, k, len(ids))
            if name == "friction":  # one friction coefficient for all pads
                scale = scale[:, :1].expand(-1, len(ids))
            self.rand_scale[name][env_ids] = scale
            self.sim.set_params(env_ids, fld, ids, scale)
        n_obj = len(self.objects)
        mass = self.uniform(*self.cfg.object_mass, k, n_obj)
        friction = self.uniform(*self.cfg.object_friction, k, n_obj)
        self.object_params[env_ids] = torch.cat((mass, friction), -1)
        self._apply_object_params(env_ids)

    def _apply_object_params(self, env_ids: Tensor) -> None:
        n_obj = len(self.objects)
        p = self.object_params[env_ids]
        self.sim.set_params(env_ids, "body_mass", list(self.obj_body), p[:, :n_obj])
        for i, geoms in enumerate(self.obj_geoms):
            self.sim.set_params(env_ids, "geom_friction", geoms, p[:, n_obj + i : n_obj + i + 1].expand(-1, len(geoms)))

    def _randomize_all_task_params(self) -> None:
        self._apply_object_params(torch.arange(self.num_envs, device=self.device))

    def _common_terms(self) -> dict[str, Tensor]:
        terms = {
            "action_rate": (self.action - self.prev_action).square().sum(-1),
            "joint_vel": self.joint_vel.square().sum(-1),
        }
        self.prev_action = self.action.clone()
        return terms

    def _off_table(self) -> Tensor:
        """(N,) an object left the table (fell off or was thrown), or the state is not finite."""
        bad = ~torch.isfinite(self.sim.qpos).all(-1)
        for i in range(len(self.objects)):
            p = self.object_pos(i)
            bad |= (p[:, 0].abs() > 0.75) | (p[:, 1].abs() > 0.55) | (p[:, 2] < -0.05)
        return bad

    def _terminated(self) -> Tensor:
        done = self.failed
        return done | self.succeeded if self.cfg.end_on_success else done

    def _task_metrics(self, done_ids: Tensor) -> dict[str, Tensor]:
        return {"success": self.ever_succeeded[done_ids].float(), "failure": self.failed[done_ids].float(),
                "max_stage": self.max_stage[done_ids]}

    def viz_curves(self) -> tuple[VizCurve, ...]:
        """What `robolearn eval` plots per episode: ACT's stage, object heights, gripper openings, success."""
        heights = tuple(
            VizCurve(f"{name} height", "cm", lambda env, i=i: env.object_pos(i)[:, 2] - env.object_rest_z[i],
                     scale=100.0)
            for i, name in enumerate(self.objects)
        )
        return (
            VizCurve("task stage", "", lambda env: env.stage, kind="step"),
            *heights,
            *self._task_viz_curves(),
            VizCurve("gripper opening", "%", lambda env: env.gripper, labels=ARMS, scale=100.0),
            VizCurve("success", "", lambda env: env.ever_succeeded, kind="success"),
        )

    def _task_viz_curves(self) -> tuple[VizCurve, ...]:
        return ()

    def _update_stage(self, stage: Tensor, success: Tensor) -> None:
        self.stage = stage
        self.max_stage = torch.maximum(self.max_stage, stage)
        self.succeeded = success
        self.ever_succeeded |= success
        self.failed = self._off_table()

    def expert_action(self, obs: Obs) -> Tensor:
        """The task's scripted expert (joint_pos mode); see `robolearn.envs.manipulation.bimanual_expert`."""
        from robolearn.envs.manipulation import bimanual_expert

        if self.cfg.action_mode != "joint_pos":
            raise ConfigError(f"{self.spec.name}: the scripted expert commands joint targets; set action_mode: "
                              "joint_pos")
        return bimanual_expert.expert_action(self, obs)


_JOINT_RANGE = (
    (-3.14158, -1.85005, -1.76278, -3.14158, -1.8675, -3.14158),
    (3.14158, 1.25664, 1.6057, 3.14158, 2.23402, 3.14158),
)
"""ViperX 300 6DOF joint limits [rad] (as in vx300.xml), for the action scaling of the spec (no simulator)."""


# ---------------------------------------------------------------------------------------------------
CUBE_HALF = 0.02


@dataclass(kw_only=True)
class TransferCubeCfg(BimanualCfg):
    """The right arm picks up a cube and hands it to the left arm in mid-air."""

    cube_x: tuple[float, float] = (0.0, 0.2)
    """Cube start x range [m] (ACT: 0 … 0.2 m, on the right arm's side)."""
    cube_y: tuple[float, float] = (-0.1, 0.1)
    """Cube start y range [m] (ACT: a 0.2 m band)."""
    reward_scales: dict[str, float] = field(
        default_factory=lambda: {"reach": 0.5, "lift": 1.0, "handover": 1.0, "stage": 2.0, "action_rate": -0.01,
                                 "joint_vel": -0.001, "success": 20.0, "failure": -10.0}
    )
    """reach 1 − tanh(‖right TCP − cube‖ / 0.1); lift min(Δz, 0.1) / 0.1 while the right holds it;
    handover 1 − tanh(‖left TCP − cube‖ / 0.1) while lifted; stage = ACT's stage / 4; action_rate; joint_vel;
    success 1 once; failure 1 once (cube off the table)."""


class TransferCubeEnv(BimanualEnv):
    """bimanual-transfer-cube (ACT's "transfer cube")."""

    task_name = "bimanual-transfer-cube"
    description = "ALOHA-class bimanual arms: the right arm picks up a cube and hands it to the left arm"
    scene = "scene_transfer_cube.xml"
    objects = ("cube",)
    object_rest_z = (CUBE_HALF,)

    @classmethod
    def reward_term_names(cls) -> list[str]:
        """Named reward terms."""
        return ["reach", "lift", "handover", "stage", "action_rate", "joint_vel", "success", "failure"]

    def _reset_objects(self, env_ids: Tensor, qpos: Tensor) -> None:
        cfg, k, a = self.cfg, len(env_ids), self.obj_qpos[0]
        qpos[:, a] = self.uniform(*cfg.cube_x, k)
        qpos[:, a + 1] = self.uniform(*cfg.cube_y, k)
        qpos[:, a + 2] = CUBE_HALF
        qpos[:, a + 3] = 1.0

    def _reward_terms(self) -> dict[str, Tensor]:
        cube = self.object_pos(0)
        tcp = self.tcp_pos
        left_touch, right_touch = self.touches(0, cube), self.touches(1, cube)
        on_table = cube[:, 2] < CUBE_HALF + 0.003
        # ACT's stages: 1 right touches, 2 right lifted it, 3 left touches, 4 left holds it alone in the air
        stage = torch.zeros(self.num_envs, device=self.device)
        stage = torch.where(right_touch, 1.0, stage)
        stage = torch.where(right_touch & ~on_table, 2.0, stage)
        stage = torch.where(left_touch, 3.0, stage)
        success = self.holds(0, cube) & ~right_touch & (cube[:, 2] > CUBE_HALF + 0.01)
        stage = torch.where(success, 4.0, stage)
        self._update_stage(stage, success)
        lifted = (cube[:, 2] - CUBE_HALF).clamp(0.0, 0.1) / 0.1
        return {
            "reach": 1 - torch.tanh((cube - tcp[:, 1]).norm(dim=-1) / 0.1),
            "lift": lifted * (self.holds(1, cube) | self.holds(0, cube)).float(),
            "handover": (1 - torch.tanh((cube - tcp[:, 0]).norm(dim=-1) / 0.1)) * (~on_table).float(),
            "stage": stage / 4,
            **self._common_terms(),
            "success": success.float() / self.step_dt,
            "failure": self.failed.float() / self.step_dt,
        }


# ---------------------------------------------------------------------------------------------------
PEG_HALF = (0.07, 0.01, 0.01)
"""Peg half extents [m]: 14 cm long, 2 cm square, lying along x."""
SOCKET_HALF = (0.05, 0.017, 0.017)
"""Socket outer half extents [m]: a 10 cm square tube along x, open towards +x, closed at −x."""
SOCKET_INNER = 0.0125
"""Half width of the socket's bore [m] (2.5 mm clearance per side around the peg)."""
SOCKET_WALL = 0.005
"""Thickness of the socket's closed end [m]."""


@dataclass(kw_only=True)
class InsertionCfg(BimanualCfg):
    """The left arm picks up a socket, the right arm a peg; the peg goes into the socket in mid-air."""

    peg_x: tuple[float, float] = (0.1, 0.2)
    """Peg start x range [m] (ACT: 0.1 … 0.2 m)."""
    socket_x: tuple[float, float] = (-0.2, -0.1)
    """Socket start x range [m] (ACT: −0.2 … −0.1 m)."""
    object_y: tuple[float, float] = (-0.1, 0.1)
    """Start y range of both [m] (ACT: a 0.2 m band)."""
    insert_depth: float = 0.04
    """Success: the peg's tip this far inside the socket's mouth, centred in the bore [m]."""
    reward_scales: dict[str, float] = field(
        default_factory=lambda: {"reach": 0.5, "lift": 1.0, "align": 1.0, "insert": 2.0, "stage": 2.0,
                                 "action_rate": -0.01, "joint_vel": -0.001, "success": 20.0, "failure": -10.0}
    )
    """reach: mean of 1 − tanh(‖TCP − object‖ / 0.1) over both arms; lift: mean lifted height of the held objects
    (≤ 0.1 m) / 0.1; align 1 − tanh(‖peg tip − socket mouth‖ / 0.1) while both are lifted; insert: depth /
    insert_depth (≤ 1); stage = ACT's stage / 4; action_rate; joint_vel; success 1 once; failure 1 once."""


class InsertionEnv(BimanualEnv):
    """bimanual-insertion (ACT's "insertion")."""

    task_name = "bimanual-insertion"
    description = "ALOHA-class bimanual arms: pick up a peg and a socket and insert the peg in mid-air"
    scene = "scene_insertion.xml"
    objects = ("peg", "socket")
    object_rest_z = (PEG_HALF[2], SOCKET_HALF[2])

    @classmethod
    def reward_term_names(cls) -> list[str]:
        """Named reward terms."""
        return ["reach", "lift", "align", "insert", "stage", "action_rate", "joint_vel", "success", "failure"]

    def _reset_objects(self, env_ids: Tensor, qpos: Tensor) -> None:
        cfg, k = self.cfg, len(env_ids)
        for a, xr, z in ((self.obj_qpos[0], cfg.peg_x, PEG_HALF[2]), (self.obj_qpos[1], cfg.socket_x, SOCKET_HALF[2])):
            qpos[:, a] = self.uniform(*xr, k)
            qpos[:, a + 1] = self.uniform(*cfg.object_y, k)
            qpos[:, a + 2] = z
            qpos[:, a + 3] = 1.0

    def peg_tip(self) -> Tensor:
        """(N, 3) centre of the peg's −x end face [m]."""
        return self.object_pos(0) - PEG_HALF[0] * self.object_rot(0)[:, :, 0]

    def socket_mouth(self) -> Tensor:
        """(N, 3) centre of the socket's open (+x) end [m]."""
        return self.object_pos(1) + SOCKET_HALF[0] * self.object_rot(1)[:, :, 0]

    def insertion(self) -> tuple[Tensor, Tensor]:
        """(depth, radial): how far the peg's tip is inside the socket's mouth along its bore, and off its axis [m]."""
        rot = self.object_rot(1)
        rel = (rot.transpose(1, 2) @ (self.peg_tip() - self.socket_mouth()).unsqueeze(-1)).squeeze(-1)
        return -rel[:, 0], rel[:, 1:].norm(dim=-1)

    def _reward_terms(self) -> dict[str, Tensor]:
        peg, socket = self.object_pos(0), self.object_pos(1)
        tcp = self.tcp_pos
        grasp_peg = self.holds(1, peg, radius=PEG_HALF[0] + 0.01)
        grasp_socket = self.holds(0, socket, radius=SOCKET_HALF[0] + 0.01)
        peg_up = peg[:, 2] > PEG_HALF[2] + 0.01
        socket_up = socket[:, 2] > SOCKET_HALF[2] + 0.01
        depth, radial = self.insertion()
        in_mouth = (depth > 0.0) & (radial < SOCKET_INNER)
        # ACT's stages: 1 both grasp, 2 both lifted, 3 peg in the socket's mouth, 4 inserted
        both = grasp_peg & grasp_socket
        success = (depth > self.cfg.insert_depth) & (radial < SOCKET_INNER - PEG_HALF[1] + 0.001) & peg_up & socket_up
        stage = torch.zeros(self.num_envs, device=self.device)
        stage = torch.where(both, 1.0, stage)
        stage = torch.where(both & peg_up & socket_up, 2.0, stage)
        stage = torch.where(in_mouth & peg_up & socket_up, 3.0, stage)
        stage = torch.where(success, 4.0, stage)
        self._update_stage(stage, success)
        lift = ((peg[:, 2] - PEG_HALF[2]).clamp(0.0, 0.1) * grasp_peg
                + (socket[:, 2] - SOCKET_HALF[2]).clamp(0.0, 0.1) * grasp_socket) / 0.2
        return {
            "reach": 1 - 0.5 * (torch.tanh((peg - tcp[:, 1]).norm(dim=-1) / 0.1)
                                + torch.tanh((socket - tcp[:, 0]).norm(dim=-1) / 0.1)),
            "lift": lift,
            "align": (1 - torch.tanh((self.peg_tip() - self.socket_mouth()).norm(dim=-1) / 0.1)) * (peg_up & socket_up),
            "insert": (depth.clamp(0.0, self.cfg.insert_depth) / self.cfg.insert_depth) * (radial < SOCKET_INNER),
            "stage": stage / 4,
            **self._common_terms(),
            "success": success.float() / self.step_dt,
            "failure": self.failed.float() / self.step_dt,
        }

    def _task_metrics(self, done_ids: Tensor) -> dict[str, Tensor]:
        m = super()._task_metrics(done_ids)
        m["final_depth"] = self.insertion()[0][done_ids]
        return m

    def _task_viz_curves(self) -> tuple[VizCurve, ...]:
        return (VizCurve("insertion depth", "cm", lambda env: env.insertion()[0], scale=100.0,
                         threshold=100.0 * self.cfg.insert_depth),)

