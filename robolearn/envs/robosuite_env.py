"""robosuite tasks as batched robolearn envs (`robosuite-lift`), stepped in robosuite's own virtualenv.

robosuite 1.5 works only with MuJoCo <= 3.9 and robolearn runs MuJoCo 4, so the two never share a process: this
env starts `python -m robolearn.envs.robosuite_worker` with `.venv-robosuite/bin/python` (`make ext-envs`; or the
python named by the config field `python`), which holds N robosuite envs and exchanges numpy arrays with this
process over pipes (see the worker's docstring). Everything here is the ordinary batched-env contract: torch tensors
in and out, auto-reset, reward terms, success metrics.

Tasks: `robosuite-lift`, `robosuite-stack`, `robosuite-door`, `robosuite-pick-place-can` (robomimic's "can") and
`robosuite-nut-assembly-square` (robomimic's "square"), all with a Panda; below for Lift, the others differ only
in their object observations (the "critic" group) and episode length (Lift 200 steps, Door 300, the others 400).

`robosuite-lift`: robosuite's Lift with a Panda and its default controller (OSC_POSE on the arm, 20 Hz):
actions are robosuite's own normalized ones — end-effector translation (±0.05 m) and rotation (±0.5 rad,
axis-angle) per step, gripper −1 open … 1 closed. "policy" is the robot's proprioception (joint cos/sin and
velocities, end-effector pose, gripper), "critic" adds robosuite's object-state (cube pose, gripper-to-cube).
Reward: robosuite's shaped Lift reward (≤ 1 per step); success (robosuite's `_check_success`, cube lifted) ends the
episode. `state_dict` / `load_state_dict` carry each robosuite env's whole state (from and to the worker, as
bytes): MuJoCo's integration state (warm start included) and the controllers' and grippers' Python-side state (OSC
goal and reference, the gripper's rate-limited command), so a resumed rollout in an env built with the same seed is
bit-equal with the original. `cameras` (robosuite's camera names) adds
rgb_<camera> images to the policy group, rendered offscreen in the worker (EGL) and turned top row first. Limits:
one worker process steps the N envs one after the other (~12 ms per env step on a 2-core CPU without cameras).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from robolearn.core.env import BatchedEnv, EnvCfg
from robolearn.core.errors import MissingExtraError, RobolearnError
from robolearn.core.types import ActionSpec, ActionTerm, Obs, ObsTerm, TaskSpec
from robolearn.envs.robosuite_worker import recv, send

VENV = "robosuite"
"""External venv name: .venv-robosuite (built by `make ext-envs`)."""

PANDA_PROPRIO = (("robot0_joint_pos_cos", 7, "", "cos of the arm joint angles"),
                 ("robot0_joint_pos_sin", 7, "", "sin of the arm joint angles"),
                 ("robot0_joint_vel", 7, "rad/s", "arm joint velocities"),
                 ("robot0_eef_pos", 3, "m", "end-effector position"),
                 ("robot0_eef_quat", 4, "", "end-effector orientation (x, y, z, w), robosuite's order"),
                 ("robot0_gripper_qpos", 2, "m", "finger positions"),
                 ("robot0_gripper_qvel", 2, "m/s", "finger velocities"))
LIFT_OBJECT = (("cube_pos", 3, "m", "cube position"),
               ("cube_quat", 4, "", "cube orientation (x, y, z, w)"),
               ("gripper_to_cube_pos", 3, "m", "cube position relative to the gripper"))
STACK_OBJECT = (("cubeA_pos", 3, "m", "cube A (to pick up) position"),
                ("cubeA_quat", 4, "", "cube A orientation (x, y, z, w)"),
                ("cubeB_pos", 3, "m", "cube B (to stack on) position"),
                ("cubeB_quat", 4, "", "cube B orientation (x, y, z, w)"),
                ("gripper_to_cubeA", 3, "m", "cube A relative to the gripper"),
                ("gripper_to_cubeB", 3, "m", "cube B relative to the gripper"),
                ("cubeA_to_cubeB", 3, "m", "cube B relative to cube A"))
DOOR_OBJECT = (("door_pos", 3, "m", "door position"),
               ("handle_pos", 3, "m", "handle position"),
               ("door_to_eef_pos", 3, "m", "door relative to the end effector"),
               ("handle_to_eef_pos", 3, "m", "handle relative to the end effector"),
               ("hinge_qpos", 1, "rad", "door hinge angle"),
               ("handle_qpos", 1, "rad", "handle angle"))


def _pick_object(name: str, what: str) -> tuple[tuple[str, int, str, str], ...]:
    """The observations of one object of robosuite PickPlace / NutAssembly (its `<name>_*` keys)."""
    return ((f"{name}_pos", 3, "m", f"{what} position"),
            (f"{name}_quat", 4, "", f"{what} orientation (x, y, z, w)"),
            (f"{name}_to_robot0_eef_pos", 3, "m", f"{what} position in the end-effector frame"),
            (f"{name}_to_robot0_eef_quat", 4, "", f"{what} orientation in the end-effector frame"))


class RobosuiteWorkerError(RobolearnError):
    """The robosuite worker process failed (its message, one line) or died."""


@dataclass(kw_only=True)
class RobosuiteCfg(EnvCfg):
    """A robosuite environment driven from robolearn (state observations only)."""

    num_envs: int = 4
    sim_dt: float = 0.05
    """Policy step [s]: robosuite's control_freq = 1 / sim_dt (20 Hz); robosuite substeps its physics itself."""
    decimation: int = 1
    episode_length_s: float = 10.0
    """200 steps at 20 Hz."""
    python: str = ""
    """The robosuite venv's python; empty: $ROBOLEARN_EXT_VENVS or the repository root, then .venv-robosuite."""
    reward_scales: dict[str, float] = field(default_factory=lambda: {"task": 1.0})
    """task: robosuite's shaped reward per step."""
    cameras: tuple[str, ...] = ()
    """robosuite cameras rendered into obs["policy"] as rgb_<camera> (e.g. agentview, robot0_eye_in_hand)."""
    image_size: tuple[int, int] = (84, 84)
    """(height, width) of the camera images (robomimic's 84 x 84)."""


@dataclass(kw_only=True)
class RobosuiteLongCfg(RobosuiteCfg):
    """Stack, pick-place and nut assembly: 400 steps at 20 Hz, robomimic's horizon for its robosuite tasks."""

    episode_length_s: float = 20.0


@dataclass(kw_only=True)
class RobosuiteDoorCfg(RobosuiteCfg):
    """Door: 300 steps at 20 Hz."""

    episode_length_s: float = 15.0


class RobosuiteEnv(BatchedEnv[RobosuiteCfg]):
    """N robosuite envs in a worker process of the robosuite venv (see the module docstring)."""

    task_name = "robosuite-lift"
    description = "robosuite 1.5 Lift with a Panda (own venv, MuJoCo <= 3.9): lift the cube"
    env_name, robot = "Lift", "Panda"
    policy_terms, object_terms = PANDA_PROPRIO, LIFT_OBJECT

    @classmethod
    def reward_term_names(cls) -> list[str]:
        """Named reward terms."""
        return ["task"]

    @classmethod
    def make_spec(cls, cfg: RobosuiteCfg) -> TaskSpec:
        """Observation and action specification (no robosuite needed)."""
        policy = tuple(ObsTerm(k, d, u, w) for k, d, u, w in cls.policy_terms)
        critic = policy + tuple(ObsTerm(k, d, u, w) for k, d, u, w in cls.object_terms)
        action = (ActionTerm("eef_pos_delta", 3, "m", (0.05,) * 3, (0.0,) * 3, "end-effector translation per step"),
                  ActionTerm("eef_rot_delta", 3, "rad", (0.5,) * 3, (0.0,) * 3, "end-effector rotation per step"),
                  ActionTerm("gripper", 1, "", (1.0,), (0.0,), "gripper: -1 open … 1 closed"))
        return TaskSpec(name=cls.task_name, obs_terms={"policy": policy, "critic": critic},
                        action=ActionSpec(action, rate_hz=1.0 / cfg.step_dt, mode="ee_delta"),
                        robot=f"robosuite-{cls.robot.lower()}", description=cls.description,
                        reward_scales=dict(cfg.reward_scales))

    def __init__(self, cfg: RobosuiteCfg, seed: int = 0) -> None:
        self.spec = self.make_spec(cfg)
        if cfg.decimation != 1:
            raise RobolearnError(f"{self.task_name}: decimation must be 1 (robosuite substeps itself), "
                                 f"got {cfg.decimation}")
        super().__init__(cfg, seed)
        if self.device.type != "cpu":
            raise RobolearnError(f"{self.task_name}: robosuite runs on the CPU; device '{cfg.device}' is not supported")
        from robolearn.eval.external import ROOT, external_python

        python = Path(cfg.python) if cfg.python else external_python(VENV)
        if not python.exists():
            raise MissingExtraError(f"{self.task_name}: robosuite 1.5 needs MuJoCo <= 3.9, so it runs in its own "
                                    f"virtualenv; none at {python.parent.parent} (create it with `make ext-envs`)")
        self._log = tempfile.TemporaryFile()
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        env |= {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1",
                "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
        self._proc = subprocess.Popen([str(python), "-m", "robolearn.envs.robosuite_worker"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=self._log, env=env)
        self._finalizer = weakref.finalize(self, _stop, self._proc)  # also runs at interpreter exit
        dims = self._call("init", {"env_name": self.env_name, "robot": self.robot,
                                   "control_freq": round(1.0 / cfg.step_dt), "num_envs": cfg.num_envs,
                                   "seed": seed, "policy_keys": [t[0] for t in self.policy_terms],
                                   "critic_keys": [t[0] for t in self.policy_terms + self.object_terms],
                                   "cameras": list(cfg.cameras), "image_size": list(cfg.image_size)})[0]
        want = {"policy_dim": self.spec.obs_dims["policy"], "critic_dim": self.spec.obs_dims["critic"],
                "action_dim": self.spec.action.dim}
        got = {k: dims[k] for k in want}
        if got != want:
            raise RobosuiteWorkerError(f"{self.task_name}: robosuite gives {got}, the task declares {want} "
                                       "(another robosuite version?)")
        n = self.num_envs
        self.obs_policy = torch.zeros(n, want["policy_dim"])
        self.obs_critic = torch.zeros(n, want["critic_dim"])
        self.images = {f"rgb_{c}": torch.zeros(n, *cfg.image_size, 3, dtype=torch.uint8) for c in cfg.cameras}
        self.task_reward = torch.zeros(n)
        self.succeeded = torch.zeros(n, dtype=torch.bool)
        self.ever_succeeded = torch.zeros(n, dtype=torch.bool)

    def _call(self, cmd: str, header: dict[str, Any] | None = None,
              arrays: dict[str, np.ndarray] | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """One request/reply with the worker; its error or death becomes a one-line RobosuiteWorkerError."""
        try:
            send(self._proc.stdin, {"cmd": cmd, **(header or {})}, arrays)
            reply, out = recv(self._proc.stdout)
        except (BrokenPipeError, EOFError, ValueError):
            self._log.seek(0)
            lines = [ln for ln in self._log.read().decode(errors="replace").splitlines() if ln.strip()]
            status = self._proc.poll()
            raise RobosuiteWorkerError(f"{self.task_name}: the robosuite worker died (exit status {status}): "
                                       f"{lines[-1] if lines else 'no output'}") from None
        if "error" in reply:
            raise RobosuiteWorkerError(f"{self.task_name}: robosuite worker: {reply['error']}")
        return reply, out

    def state_dict(self) -> dict[str, Tensor]:
        """The env's tensors plus every robosuite env's whole state (fetched from the worker as bytes)."""
        state = super().state_dict()
        out = self._call("get_state")[1]
        state["_robosuite_sim"] = torch.from_numpy(out["state"])
        state["_robosuite_sim_lengths"] = torch.from_numpy(out["lengths"])
        return state

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore `state_dict`: robolearn's tensors here, the physics in the worker."""
        state = dict(state)
        sim = state.pop("_robosuite_sim", None)
        lengths = state.pop("_robosuite_sim_lengths", None)  # absent in states saved before it was carried
        super().load_state_dict(state)
        if sim is not None:
            arrays = {"state": sim.cpu().numpy()}
            if lengths is not None:
                arrays["lengths"] = lengths.cpu().numpy()
            self._call("set_state", arrays=arrays)

    def close(self) -> None:
        """Stop the worker process (also done when the env is garbage-collected or at exit)."""
        self._finalizer()

    # ---- hooks

    def _apply_action(self, action: Tensor) -> None:
        self._pending_action = action.cpu().numpy().astype(np.float32)

    def _physics_step(self) -> None:
        out = self._call("step", arrays={"action": self._pending_action})[1]
        self._store(torch.arange(self.num_envs), out)
        self.task_reward = torch.from_numpy(out["reward"].astype(np.float32))
        self.succeeded = torch.from_numpy(out["success"].astype(np.bool_))
        self.ever_succeeded |= self.succeeded

    def _store(self, ids: Tensor, out: dict[str, np.ndarray]) -> None:
        self.obs_policy[ids] = torch.from_numpy(out["policy"])
        self.obs_critic[ids] = torch.from_numpy(out["critic"])
        for k, img in self.images.items():
            img[ids] = torch.from_numpy(out[k])

    def image_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes (without the env dimension) of the image terms in obs["policy"]."""
        return {k: tuple(v.shape[1:]) for k, v in self.images.items()}

    def _observe(self) -> Obs:
        if not self.images:
            return {"policy": self.obs_policy.clone(), "critic": self.obs_critic.clone()}
        return {"policy": {"state": self.obs_policy.clone(), **{k: v.clone() for k, v in self.images.items()}},
                "critic": self.obs_critic.clone()}

    def _reward_terms(self) -> dict[str, Tensor]:
        return {"task": self.task_reward}

    def _terminated(self) -> Tensor:
        return self.succeeded.clone()

    def _task_metrics(self, done_ids: Tensor) -> dict[str, Tensor]:
        return {"success": self.ever_succeeded[done_ids].float()}

    def _reset_idx(self, env_ids: Tensor) -> None:
        out = self._call("reset", arrays={"ids": env_ids.cpu().numpy().astype(np.int64)})[1]
        self._store(env_ids.cpu(), out)
        self.succeeded[env_ids] = False
        self.ever_succeeded[env_ids] = False


class RobosuiteStackEnv(RobosuiteEnv):
    """robosuite Stack: put the red cube on the green one."""

    task_name, env_name, object_terms = "robosuite-stack", "Stack", STACK_OBJECT
    description = "robosuite 1.5 Stack with a Panda (own venv, MuJoCo <= 3.9): put cube A on cube B"


class RobosuiteDoorEnv(RobosuiteEnv):
    """robosuite Door: turn the handle and open the door."""

    task_name, env_name, object_terms = "robosuite-door", "Door", DOOR_OBJECT
    description = "robosuite 1.5 Door with a Panda (own venv, MuJoCo <= 3.9): turn the handle, open the door"


class RobosuitePickPlaceCanEnv(RobosuiteEnv):
    """robosuite PickPlaceCan (robomimic's "can"): move the can into its bin."""

    task_name, env_name, object_terms = "robosuite-pick-place-can", "PickPlaceCan", _pick_object("Can", "can")
    description = "robosuite 1.5 PickPlaceCan with a Panda (own venv, MuJoCo <= 3.9): put the can in its bin"


class RobosuiteNutAssemblySquareEnv(RobosuiteEnv):
    """robosuite NutAssemblySquare (robomimic's "square"): fit the square nut on its peg."""

    task_name, env_name = "robosuite-nut-assembly-square", "NutAssemblySquare"
    object_terms = _pick_object("SquareNut", "square nut")
    description = "robosuite 1.5 NutAssemblySquare with a Panda (own venv, MuJoCo <= 3.9): nut onto its peg"


def _stop(proc: subprocess.Popen) -> None:
    """Ask the worker to exit, then make sure it has."""
    if proc.poll() is None:
        try:
            send(proc.stdin, {"cmd": "close"})
            proc.wait(timeout=5)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
