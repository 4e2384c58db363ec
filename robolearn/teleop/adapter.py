"""What collection needs from any registered task, with fallbacks for tasks that offer less.

- `command_to_action`: a task may define `teleop_action(obs, command) -> action` (e.g. an end-effector delta for
  an arm), or have an entry in `ADAPTERS`. The quadrotor tasks are flown through their scripted expert: the
  command moves the goal (hover) or the setpoint (track) the expert holds (a person cannot fly four motor
  commands directly). Any other task gets the command's first entries as its normalized action.
- `get_state` / `set_state`: env 0's simulator state as one float64 vector (every per-env tensor of
  `state_dict()`), recorded per frame so replay can start from the recorded initial state.
- `camera_frame`: the task's `render()` camera image when it offers one, else a drawing of `viz_state()`.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from robolearn.core.env import BatchedEnv
from robolearn.core.types import Obs

QUAD_SETPOINT_M = 0.5
"""Quadrotor teleop: a full command puts the setpoint this far from the drone [m] (track) or moves the goal at
this speed [m/s], keeping it within this distance of the drone (hover)."""


def _quad_hover_state(env: Any, cmd: torch.Tensor) -> None:
    """quadrotor-hover: the person moves the goal (kept within reach of the drone); the expert flies to it.

    The goal is task state, so the recorded observation (taken after the move) sees it, and replay re-applies the
    recorded commands. A zero command changes nothing (expert-driven frames replay as recorded).
    """
    move = cmd[:, 0:3]
    if not bool(move.any()):
        return
    pos = env.sim.pos
    offset = (env.goal + QUAD_SETPOINT_M * env.step_dt * move - pos).clamp(-QUAD_SETPOINT_M, QUAD_SETPOINT_M)
    env.goal[:] = pos + offset


def _quad_expert(env: Any, obs: Obs, cmd: torch.Tensor) -> torch.Tensor:
    return env.expert_action(obs)


def _quad_setpoint(env: Any, obs: Obs, cmd: torch.Tensor) -> torch.Tensor:
    """quadrotor-track (the reference moves by itself): the command offsets the setpoint the expert holds."""
    shifted = obs["policy"].clone()
    shifted[:, 0:3] = shifted[:, 0:3] - QUAD_SETPOINT_M * cmd[:, 0:3]
    return env.expert_action({**obs, "policy": shifted})


StateHook = Callable[[Any, torch.Tensor], None]
ActionHook = Callable[[Any, Obs, torch.Tensor], torch.Tensor]
ADAPTERS: dict[str, tuple[StateHook | None, ActionHook]] = {
    "quadrotor-hover": (_quad_hover_state, _quad_expert),
    "quadrotor-track": (None, _quad_setpoint),
}
"""Task name -> (state hook applied before observing, action hook), for tasks without `teleop_action`."""


def _cmd(env: BatchedEnv, command: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(command, np.float32), device=env.device).reshape(1, -1)


def apply_command_state(env: BatchedEnv, command: np.ndarray) -> bool:
    """Apply the task-state part of a command (e.g. a moved goal); True when the task has one."""
    hook = ADAPTERS.get(env.spec.name, (None, None))[0]
    if hook is None or hasattr(env, "teleop_action"):
        return False
    hook(env, _cmd(env, command))
    return True


def command_to_action(env: BatchedEnv, obs: Obs, command: np.ndarray) -> tuple[torch.Tensor, Obs]:
    """The task action (1, A) for a device command (7,) in [-1, 1], and the observation to record with it.

    The adapter may change task state (a goal) and observe again, hence the returned observation.
    """
    cmd = _cmd(env, command)
    if hasattr(env, "teleop_action"):
        return env.teleop_action(obs, cmd), obs
    if env.spec.name in ADAPTERS:
        if apply_command_state(env, command):
            obs = env._observe()
        return ADAPTERS[env.spec.name][1](env, obs, cmd), obs
    a = torch.zeros(1, env.spec.action.dim, device=env.device)
    n = min(a.shape[1], cmd.shape[1])
    a[:, :n] = cmd[:, :n]
    return a.clamp(env.spec.action.low, env.spec.action.high), obs


# ------------------------------------------------------------------------------------------------ simulator state
PHYSICS = "_physics"  # MuJoCo tasks' state_dict key for the backend's integration state (N, nstate)


def state_layout(env: BatchedEnv) -> list[tuple[str, tuple[int, ...]]]:
    """Per-env tensors of `state_dict()` (first dim = num_envs), sorted by key, with their per-env shape."""
    out = []
    for k, v in sorted(env.state_dict().items()):
        if k == PHYSICS and isinstance(v, torch.Tensor) and v.dim() == 2 and v.shape[0] == env.num_envs:
            out.append((k, tuple(v.shape[1:])))  # a MuJoCo task's integration state (qpos, qvel, act, ...)
            continue
        if k.startswith("_") or not isinstance(v, torch.Tensor) or v.dim() == 0 or v.shape[0] != env.num_envs:
            continue
        if v.is_complex():
            continue
        out.append((k, tuple(v.shape[1:])))
    return out


def state_names(layout: list[tuple[str, tuple[int, ...]]]) -> tuple[str, ...]:
    """One name per entry of the flat state vector ("sim.state.3")."""
    names: list[str] = []
    for k, shape in layout:
        n = int(np.prod(shape, dtype=np.int64))
        names += [k] if n == 1 and not shape else [f"{k}.{i}" for i in range(n)]
    return tuple(names)


def _resolve(env: BatchedEnv, key: str) -> torch.Tensor:
    """The live tensor behind a `state_dict()` key (dotted path through attributes and dicts), without a copy."""
    obj: Any = env
    for part in key.split("."):
        obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
    return obj


def get_state(env: BatchedEnv, layout: list[tuple[str, tuple[int, ...]]], index: int = 0) -> np.ndarray:
    """Env `index`'s state as a float64 vector in `layout` order."""
    parts = [(env.sim.get_state() if k == PHYSICS else _resolve(env, k))[index].detach().reshape(-1).double()
             for k, _ in layout]
    return torch.cat(parts).cpu().numpy()


def set_state(env: BatchedEnv, layout: list[tuple[str, tuple[int, ...]]], vector: np.ndarray, index: int = 0) -> None:
    """Write a vector from `get_state` back into env `index` (other envs and shared tensors untouched).

    A MuJoCo task's physics row goes in through `load_state_dict`, which also re-applies the env's randomized
    model parameters (friction, masses, ...) from the tensors just written, so the physics matches the recording.
    """
    v = torch.as_tensor(np.asarray(vector, np.float64))
    pos = 0
    physics = None
    for k, shape in layout:
        n = int(np.prod(shape, dtype=np.int64))
        if k == PHYSICS:
            physics = v[pos:pos + n]
        else:
            t = _resolve(env, k)
            t[index] = v[pos:pos + n].reshape(shape).to(t.dtype, copy=False).to(t.device)
        pos += n
    if physics is not None:
        state = env.state_dict()
        state[PHYSICS] = state[PHYSICS].clone()
        state[PHYSICS][index] = physics.to(state[PHYSICS].dtype)
        env.load_state_dict(state)


# --------------------------------------------------------------------------------------------------------- camera
def has_camera(env: BatchedEnv) -> bool:
    """True when the task renders a real camera image (recorded as observation.images.camera)."""
    return callable(getattr(env, "render", None))


def camera_frame(env: BatchedEnv, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """(H, W, 3) uint8 view of env 0: the task's camera, else a two-view drawing of `viz_state()`."""
    if has_camera(env):
        img = env.render()
        img = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
        return img[0] if img.ndim == 4 else img
    return _draw_viz(env, size)


def _draw_viz(env: BatchedEnv, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image, ImageDraw

    w, h = size
    img = Image.new("RGB", (w, h), (24, 26, 32))
    d = ImageDraw.Draw(img)
    viz = env.viz_state() if hasattr(env, "viz_state") else {}
    title = env.spec.name
    if "pos" not in viz:
        d.text((8, 8), f"{title}: no camera view", fill=(220, 220, 220))
        return np.asarray(img)
    pos = viz["pos"][0].detach().cpu().numpy()
    goal = viz.get("goal", torch.zeros(1, 3))[0].detach().cpu().numpy()
    half = w // 2
    span = 1.0  # metres shown each side of the goal
    for panel, (i, j, label) in enumerate(((0, 1, "top (x, y)"), (0, 2, "side (x, z)"))):
        x0 = panel * half
        d.rectangle((x0 + 2, 2, x0 + half - 3, h - 3), outline=(70, 74, 84))
        d.text((x0 + 8, 6), label, fill=(160, 160, 170))

        def px(p: np.ndarray, x0: int = x0, i: int = i, j: int = j) -> tuple[float, float]:
            return (x0 + half / 2 + (p[i] - goal[i]) / span * (half / 2 - 8),
                    h / 2 - (p[j] - goal[j]) / span * (h / 2 - 8))

        gx, gy = px(goal)
        d.line((gx - 6, gy, gx + 6, gy), fill=(90, 200, 90), width=2)
        d.line((gx, gy - 6, gx, gy + 6), fill=(90, 200, 90), width=2)
        if "quat" in viz:
            from robolearn.eval.video import quat_to_rotmat_np

            rot = quat_to_rotmat_np(viz["quat"][0].detach().cpu().numpy().astype(np.float64))
            for arm in (np.array([1, 1, 0.0]), np.array([1, -1, 0.0])):
                a = rot @ (arm * 0.08)
                p1, p2 = px(pos + a), px(pos - a)
                d.line((*p1, *p2), fill=(230, 120, 60), width=3)
        cx, cy = px(pos)
        d.ellipse((cx - 4, cy - 4, cx + 4, cy + 4), fill=(240, 200, 80))
    d.text((8, h - 16), f"{title}  |e| = {np.linalg.norm(pos - goal):.3f} m", fill=(220, 220, 220))
    return np.asarray(img)


def jpeg(frame: np.ndarray, quality: int = 80) -> bytes:
    """JPEG bytes of an (H, W, 3) uint8 frame."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def describe(env: BatchedEnv) -> dict[str, Any]:
    """Task facts for provenance and the browser page."""
    return {"task": env.spec.name, "robot": env.spec.robot, "action_dim": env.spec.action.dim,
            "rate_hz": env.spec.action.rate_hz}
