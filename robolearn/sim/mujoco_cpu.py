"""MuJoCo on the CPU: N (MjModel, MjData) pairs stepped in a loop, state exchanged as torch tensors.

Why a loop over per-env `MjData` and not `mujoco.rollout`'s thread pool: on the project's 2-core machine
(shared with other jobs) the Franka lift scene ran at 6.1k env-steps/s (5 substeps) with the loop and
7.3k / 6.6k with `rollout` on 1 / 2 threads, and `rollout` returns only states and sensors, so kinematics
for Jacobians, site poses and cameras would have to be recomputed per env afterwards (mj_setState +
mj_kinematics), eating the difference. `mj_step(m, d, nstep)` runs the substeps in C; the Python cost is
one call per env per policy step. Each env owns a copy of the model so that randomized parameters
(friction, masses, damping, gains) are per env.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import Tensor

from robolearn.core.errors import RobolearnError, require
from robolearn.sim.backend import check_params


class MujocoCpuBackend:
    """N worlds of one MuJoCo model on the CPU (see the module docstring)."""

    name = "mujoco_cpu"

    def __init__(self, model: Any, num_envs: int, device: str | torch.device = "cpu") -> None:
        self._mj = mujoco = require("mujoco", "sim")
        self.model = model
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.models = [copy.copy(model) for _ in range(num_envs)]
        self.datas = [mujoco.MjData(m) for m in self.models]
        for m, d in zip(self.models, self.datas, strict=True):
            mujoco.mj_forward(m, d)
        self._cache: dict[str, Tensor] = {}
        self._ctrl = np.zeros((num_envs, model.nu))

    # ---- stepping ------------------------------------------------------------------------------
    def step(self, ctrl: Tensor, substeps: int = 1) -> None:
        """Set the controls (N, nu) and advance every env by `substeps` physics steps."""
        self._ctrl[:] = ctrl.detach().to("cpu", torch.float64).numpy()
        step, forward = self._mj.mj_step, self._mj.mj_forward
        for m, d, c in zip(self.models, self.datas, self._ctrl, strict=True):
            d.ctrl[:] = c
            step(m, d, substeps)
            # mj_step leaves kinematics and sensors at the state *before* its last integration; one forward pass
            # makes every exposed quantity (site poses, Jacobian inputs, touch sensors) belong to the current state
            forward(m, d)
        self._cache.clear()

    def forward(self) -> None:
        """Recompute kinematics and sensors of every env from its state."""
        for m, d in zip(self.models, self.datas, strict=True):
            self._mj.mj_forward(m, d)
        self._cache.clear()

    def reset_idx(self, env_ids: Tensor, qpos: Tensor, qvel: Tensor, ctrl: Tensor | None = None) -> None:
        """Set the state of `env_ids`, clear forces/warm starts and recompute kinematics and sensors."""
        qp = qpos.detach().to("cpu", torch.float64).numpy()
        qv = qvel.detach().to("cpu", torch.float64).numpy()
        c = None if ctrl is None else ctrl.detach().to("cpu", torch.float64).numpy()
        for k, i in enumerate(env_ids.tolist()):
            m, d = self.models[i], self.datas[i]
            self._mj.mj_resetData(m, d)
            d.qpos[:] = qp[k]
            d.qvel[:] = qv[k]
            if c is not None:
                d.ctrl[:] = c[k]
                self._ctrl[i] = c[k]
            self._mj.mj_forward(m, d)
        self._cache.clear()

    def get_state(self) -> Tensor:
        """Full integration state of every env (N, nstate) float64: time, qpos, qvel, act, warm start, ctrl, ..."""
        spec = self._mj.mjtState.mjSTATE_INTEGRATION
        out = np.zeros((self.num_envs, self._mj.mj_stateSize(self.model, spec)))
        for i, (m, d) in enumerate(zip(self.models, self.datas, strict=True)):
            self._mj.mj_getState(m, d, out[i], spec)
        return torch.from_numpy(out)

    def set_state(self, state: Tensor) -> None:
        """Restore what `get_state` returned and recompute derived quantities."""
        spec = self._mj.mjtState.mjSTATE_INTEGRATION
        arr = state.detach().to("cpu", torch.float64).numpy()
        for i, (m, d) in enumerate(zip(self.models, self.datas, strict=True)):
            self._mj.mj_setState(m, d, arr[i], spec)
            self._mj.mj_forward(m, d)
            self._ctrl[i] = d.ctrl
        self._cache.clear()

    # ---- randomization -------------------------------------------------------------------------
    def set_params(self, env_ids: Tensor, field: str, ids: list[int], scale: Tensor) -> Tensor:
        """Set `field` of elements `ids` in envs `env_ids` to nominal × scale; returns the values (K, len(ids))."""
        check_params(field, ids, scale, len(env_ids))
        nominal = self.model
        s = scale.detach().to("cpu", torch.float64).numpy()
        idx = np.asarray(ids, dtype=np.int64)
        for k, i in enumerate(env_ids.tolist()):
            m = self.models[i]
            if field == "geom_friction":
                m.geom_friction[idx, 0] = nominal.geom_friction[idx, 0] * s[k]
            elif field == "body_mass":
                m.body_mass[idx] = nominal.body_mass[idx] * s[k]
                m.body_inertia[idx] = nominal.body_inertia[idx] * s[k][:, None]
            elif field == "dof_damping":
                m.dof_damping[idx] = nominal.dof_damping[idx] * s[k]
            elif field == "actuator_kp":
                kp = nominal.actuator_gainprm[idx, 0] * s[k]
                m.actuator_gainprm[idx, 0] = kp
                m.actuator_biasprm[idx, 1] = -kp
        return self.get_params(field, ids)[env_ids.cpu()].to(self.device)

    def get_params(self, field: str, ids: list[int]) -> Tensor:
        """Current values of `field` for elements `ids` in every env (N, len(ids))."""
        idx = np.asarray(ids, dtype=np.int64)
        get = {
            "geom_friction": lambda m: m.geom_friction[idx, 0],
            "body_mass": lambda m: m.body_mass[idx],
            "dof_damping": lambda m: m.dof_damping[idx],
            "actuator_kp": lambda m: m.actuator_gainprm[idx, 0],
        }.get(field)
        if get is None:
            raise RobolearnError(f"mujoco_cpu: unknown parameter field '{field}'")
        return self._tensor(np.stack([get(m) for m in self.models]))

    # ---- state as tensors ----------------------------------------------------------------------
    def _gather(self, key: str, shape: tuple[int, ...] = ()) -> Tensor:
        if key not in self._cache:
            arr = np.stack([getattr(d, key) for d in self.datas])
            self._cache[key] = self._tensor(arr.reshape(self.num_envs, *shape) if shape else arr)
        return self._cache[key]

    def _tensor(self, arr: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).to(self.device)

    @property
    def qpos(self) -> Tensor:
        """(N, nq)."""
        return self._gather("qpos")

    @property
    def qvel(self) -> Tensor:
        """(N, nv)."""
        return self._gather("qvel")

    @property
    def ctrl(self) -> Tensor:
        """(N, nu)."""
        return self._gather("ctrl")

    @property
    def sensordata(self) -> Tensor:
        """(N, nsensordata)."""
        return self._gather("sensordata")

    @property
    def site_xpos(self) -> Tensor:
        """(N, nsite, 3)."""
        return self._gather("site_xpos")

    @property
    def site_xmat(self) -> Tensor:
        """(N, nsite, 3, 3)."""
        return self._gather("site_xmat", (-1, 3, 3))

    @property
    def xanchor(self) -> Tensor:
        """(N, njnt, 3)."""
        return self._gather("xanchor")

    @property
    def xaxis(self) -> Tensor:
        """(N, njnt, 3)."""
        return self._gather("xaxis")
