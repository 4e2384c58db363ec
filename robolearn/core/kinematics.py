"""Differential inverse kinematics: hinge-chain Jacobians and damped-least-squares steps (numpy or torch).

One implementation for the arm tasks (`envs/manipulation`: batched torch on the simulator's state) and the robot
side (`robolearn_ros` arm adapter, `ee_delta` policies: numpy on measured joint positions, with the robot's
forward kinematics from its MJCF model through `MjArmKinematics`, MuJoCo imported only there).

    dq = Jᵀ (J Jᵀ + λ² I)⁻¹ e          (damped least squares; e = [Δp; Δθ], Δθ axis-angle, world frame)

Arrays may be numpy or torch, batched over leading dimensions: `jac` (..., 6, n), `err` (..., 6).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from robolearn.core.errors import ConfigError, require


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def hinge_jacobian(axis: Any, anchor: Any, point: Any) -> Any:
    """(..., 6, n) Jacobian [linear; angular] of `point` (..., 3) w.r.t. n hinges, world `axis`/`anchor` (..., n, 3).

    Column j is [a_j × (p − o_j); a_j]: every hinge must be an ancestor of the point's body.
    """
    if _is_torch(axis):
        import torch

        lever = point.unsqueeze(-2) - anchor
        return torch.cat((torch.linalg.cross(axis, lever, dim=-1), axis), -1).transpose(-1, -2)
    lever = np.asarray(point)[..., None, :] - np.asarray(anchor)
    return np.swapaxes(np.concatenate((np.cross(axis, lever), axis), -1), -1, -2)


def dls_step(jac: Any, err: Any, damping: float) -> Any:
    """Joint step dq (..., n) moving the point by `err` (..., 6): dq = Jᵀ (J Jᵀ + λ² I)⁻¹ e, λ = `damping`."""
    if _is_torch(jac):
        import torch

        jjt = jac @ jac.transpose(-1, -2) + damping**2 * torch.eye(jac.shape[-2], dtype=jac.dtype, device=jac.device)
        return (jac.transpose(-1, -2) @ torch.linalg.solve(jjt, err.unsqueeze(-1))).squeeze(-1)
    jac, err = np.asarray(jac, dtype=np.float64), np.asarray(err, dtype=np.float64)
    jjt = jac @ np.swapaxes(jac, -1, -2) + damping**2 * np.eye(jac.shape[-2])
    return (np.swapaxes(jac, -1, -2) @ np.linalg.solve(jjt, err[..., None]))[..., 0]


class MjArmKinematics:
    """Forward kinematics and the TCP Jacobian of an arm from its MJCF model (MuJoCo, CPU, one configuration).

    `joints`: the arm's hinge joint names in command order (each an ancestor of `site`); the other joints of the
    model stay at their reference positions.
    """

    def __init__(self, model_path: str | Path, joints: list[str], site: str = "tcp") -> None:
        mujoco = require("mujoco", "sim")
        path = Path(model_path)
        try:
            self.model = mujoco.MjModel.from_xml_path(str(path))
        except Exception as e:
            raise ConfigError(f"{path}: not a loadable MJCF model ({e})") from None
        self.data = mujoco.MjData(self.model)
        self._mj = mujoco
        m = self.model
        self.site = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, site)
        if self.site < 0:
            raise ConfigError(f"{path}: no site '{site}'")
        ids = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j) for j in joints]
        missing = [j for j, i in zip(joints, ids, strict=True) if i < 0]
        if missing:
            raise ConfigError(f"{path}: no joint(s) {missing}")
        if any(m.jnt_type[i] != mujoco.mjtJoint.mjJNT_HINGE for i in ids):
            raise ConfigError(f"{path}: joints {joints} must all be hinges")
        self.joints = ids
        self.qpos = np.array([m.jnt_qposadr[i] for i in ids])

    def _set(self, q: np.ndarray) -> None:
        q = np.asarray(q, dtype=np.float64)
        if q.shape != (len(self.joints),):
            raise ValueError(f"joint positions have shape {q.shape}; the arm has {len(self.joints)} joints")
        self.data.qpos[self.qpos] = q
        self._mj.mj_kinematics(self.model, self.data)

    def tcp(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """TCP position (3,) [m] and rotation matrix (3, 3) (TCP-to-base) at joint positions `q`."""
        self._set(q)
        return self.data.site_xpos[self.site].copy(), self.data.site_xmat[self.site].reshape(3, 3).copy()

    def jacobian(self, q: np.ndarray) -> np.ndarray:
        """(6, n) TCP Jacobian [linear; angular] at `q`, base frame."""
        self._set(q)
        d = self.data
        return hinge_jacobian(d.xaxis[self.joints], d.xanchor[self.joints], d.site_xpos[self.site])

    def ik_step(self, q: np.ndarray, dpos: np.ndarray, drot: np.ndarray, damping: float = 0.05) -> np.ndarray:
        """Joint targets q + dq moving the TCP by `dpos` [m] and `drot` (axis-angle [rad]), damped least squares."""
        return np.asarray(q, dtype=np.float64) + dls_step(self.jacobian(q), np.concatenate([dpos, drot]), damping)
