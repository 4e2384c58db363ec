"""MuJoCo Warp: N worlds of one model stepped by warp kernels, exchanged with torch without copies.

On a CUDA device the substeps of one policy step (`substeps` × `mjw.step` plus one `mjw.forward`) are captured
once into a CUDA graph and replayed with a single launch. On warp's CPU device (no CUDA here) the same kernels
run compiled for the CPU — slowly, and the first use compiles every kernel (minutes; warp caches them in
~/.cache/warp) — which is how the tests cover this backend.

State, controls, sensors and the randomizable model fields are `wp.to_torch` views of the warp arrays, so reads
and writes go straight to simulator memory. Model fields that are randomized per env are allocated with one row
per world (`put_model(batch_sizes=...)`). Cameras of this backend are ray traced by MuJoCo Warp's renderer
(`robolearn/sim/warp_render.py`, `WarpRenderer`), every world in one launch. For the few envs of an evaluation
video, `data(env)` copies one world to the host instead (state, mocap poses and its per-world model rows into a
host `MjData` / `render_model`, then `mj_forward`), the interface `mujoco_cpu` has, so MuJoCo's OpenGL
(`robolearn/envs/viz.py`, `EpisodeRenderer`) draws either backend alike.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
from torch import Tensor

from robolearn.core.errors import RobolearnError, require
from robolearn.sim.backend import check_params, scale_params

# model fields that get one row per world, so `set_params` can randomize them per env
_BATCHED = (
    "geom_friction", "body_mass", "body_inertia", "dof_damping", "actuator_gainprm", "actuator_biasprm",
    "geom_size", "geom_rbound", "geom_aabb", "actuator_forcerange",
)


def resolve_device(device: str | torch.device, fallback_to_cpu: bool, task: str) -> torch.device:
    """The torch device mjwarp runs on: CUDA if asked and present; CPU if asked, or as an allowed fallback."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        if not fallback_to_cpu:
            raise RobolearnError(
                f"{task}: backend 'mjwarp' on device '{device}' but CUDA is not available "
                "(set fallback_to_cpu: true to run on warp's CPU device, or device: cpu)"
            )
        warnings.warn(f"{task}: CUDA not available; mjwarp falls back to warp's CPU device (slow)", stacklevel=2)
        dev = torch.device("cpu")
    return dev


class MjWarpBackend:
    """N worlds of one MuJoCo model in MuJoCo Warp (see the module docstring)."""

    name = "mjwarp"

    def __init__(
        self,
        model: Any,
        num_envs: int,
        device: str | torch.device = "cpu",
        task: str = "mjwarp",
        fallback_to_cpu: bool = False,
        nconmax: int = 48,
        njmax: int = 192,
    ) -> None:
        self._mj = mujoco = require("mujoco", "sim")
        self._wp = wp = require("warp", "gpu")
        # no init banner or per-module load timings on stdout (`robolearn bench --json` prints one JSON object)
        wp.config.quiet = True
        if hasattr(wp, "LOG_WARNING"):
            wp.config.log_level = wp.LOG_WARNING
        self._mjw = mjw = require("mujoco_warp", "gpu")
        self.task = task
        self.model = model
        self.num_envs = num_envs
        self.device = resolve_device(device, fallback_to_cpu, task)
        self.wp_device = f"cuda:{self.device.index or 0}" if self.device.type == "cuda" else "cpu"
        data = mujoco.MjData(model)
        mujoco.mj_forward(model, data)
        with wp.ScopedDevice(self.wp_device):
            self.m = mjw.put_model(model, batch_sizes={f: num_envs for f in _BATCHED})
            self.d = mjw.put_data(model, data, nworld=num_envs, nconmax=nconmax, njmax=njmax)
        t = wp.to_torch
        self._qpos, self._qvel, self._ctrl = t(self.d.qpos), t(self.d.qvel), t(self.d.ctrl)
        self._fields = {f: t(getattr(self.m, f)) for f in _BATCHED}
        self._nominal = {f: v.clone() for f, v in self._fields.items()}
        self._graphs: dict[int, Any] = {}
        self._render_model: Any = None
        self._render_data: Any = None

    # ---- stepping ------------------------------------------------------------------------------
    def _advance(self, substeps: int) -> None:
        for _ in range(substeps):
            self._mjw.step(self.m, self.d)
        self._mjw.forward(self.m, self.d)  # quantities of the current state, as mujoco_cpu exposes them

    def step(self, ctrl: Tensor, substeps: int = 1) -> None:
        """Set the controls (N, nu) and advance every world by `substeps` physics steps (one graph launch on CUDA)."""
        self._ctrl.copy_(ctrl.detach().to(self._ctrl.device, self._ctrl.dtype))
        wp = self._wp
        with wp.ScopedDevice(self.wp_device):
            if self.device.type != "cuda":
                self._advance(substeps)
                return
            if substeps not in self._graphs:
                self._advance(substeps)  # warm up: compile and load every kernel before capture
                with wp.ScopedCapture() as capture:
                    self._advance(substeps)
                self._graphs[substeps] = capture.graph
            wp.capture_launch(self._graphs[substeps])

    def forward(self) -> None:
        """Recompute kinematics and sensors of every world from its state."""
        with self._wp.ScopedDevice(self.wp_device):
            self._mjw.forward(self.m, self.d)

    def reset_idx(self, env_ids: Tensor, qpos: Tensor, qvel: Tensor, ctrl: Tensor | None = None) -> None:
        """Reset worlds `env_ids` (warm starts, forces, time) and set their (qpos, qvel, ctrl)."""
        wp = self._wp
        mask = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        mask[env_ids.to(self.device)] = True
        with wp.ScopedDevice(self.wp_device):
            self._mjw.reset_data(self.m, self.d, reset=wp.from_torch(mask))
        ids = env_ids.to(self.device)
        self._qpos[ids] = qpos.to(self.device, self._qpos.dtype)
        self._qvel[ids] = qvel.to(self.device, self._qvel.dtype)
        if ctrl is not None:
            self._ctrl[ids] = ctrl.to(self.device, self._ctrl.dtype)
        self.forward()

    def set_body_wrench(self, body: int, wrench: Tensor) -> None:
        """World-frame force then torque (N, 6) on `body` in every world, held until changed (xfrc_applied)."""
        self._view("xfrc_applied")[:, body] = wrench.detach().to(self.device, torch.float32)

    @property
    def time(self) -> Tensor:
        """(N,) simulation time of every world [s]."""
        return self._view("time")

    # ---- exact resume --------------------------------------------------------------------------
    _STATE = ("time", "qpos", "qvel", "act", "ctrl", "qacc_warmstart")

    def get_state(self) -> Tensor:
        """(N, nstate) float64: time, qpos, qvel, act, ctrl, qacc warm start."""
        parts = [self._wp.to_torch(getattr(self.d, k)).reshape(self.num_envs, -1) for k in self._STATE]
        return torch.cat([p.double().cpu() for p in parts], -1)

    def set_state(self, state: Tensor) -> None:
        """Restore what `get_state` returned."""
        start = 0
        for k in self._STATE:
            view = self._wp.to_torch(getattr(self.d, k))
            n = view.reshape(self.num_envs, -1).shape[1]
            view.copy_(state[:, start : start + n].reshape(view.shape).to(view.device, view.dtype))
            start += n
        self.forward()

    # ---- randomization -------------------------------------------------------------------------
    def set_params(self, env_ids: Tensor, field: str, ids: list[int], scale: Tensor) -> Tensor:
        """Set `field` of elements `ids` in worlds `env_ids` to nominal × scale; returns the values (K, len(ids))."""
        check_params(field, ids, scale, len(env_ids), self.task)
        w = env_ids.to(self.device)[:, None]
        el = torch.as_tensor(ids, device=self.device)[None, :]
        s = scale.to(self.device, torch.float32)
        scale_params(self._fields, self._nominal, field, w, el, s)
        return self.get_params(field, ids)[env_ids.to(self.device)]

    def get_params(self, field: str, ids: list[int]) -> Tensor:
        """Current values of `field` for elements `ids` in every world (N, len(ids))."""
        el = torch.as_tensor(ids, device=self.device)
        f = self._fields
        if field == "geom_friction":
            return f["geom_friction"][:, el, 0].clone()
        if field == "body_mass":
            return f["body_mass"][:, el].clone()
        if field == "body_inertia":  # first principal moment
            return f["body_inertia"][:, el, 0].clone()
        if field == "geom_size":  # first size parameter (box: half x-extent)
            return f["geom_size"][:, el, 0].clone()
        if field == "dof_damping":
            return f["dof_damping"][:, el].clone()
        if field == "actuator_kp":
            return f["actuator_gainprm"][:, el, 0].clone()
        if field == "actuator_kv":
            return -f["actuator_biasprm"][:, el, 2].clone()
        if field == "actuator_forcerange":  # upper limit
            return f["actuator_forcerange"][:, el, 1].clone()
        raise RobolearnError(f"{self.task}: unknown parameter field '{field}'")

    # ---- one world's full data on the host (videos) -------------------------------------------
    @property
    def render_model(self) -> Any:
        """A host model that `data(env)` fills with world `env`'s randomized fields (sizes, masses) before rendering."""
        if self._render_model is None:
            self._render_model = copy.copy(self.model)
        return self._render_model

    def data(self, env: int) -> Any:
        """A host `MjData` with world `env`'s state and derived quantities; `render_model` holds that world's model.

        One device-to-host copy of the world's rows (time, qpos, qvel, act, ctrl, applied wrenches, mocap poses and
        the per-world model fields), then `mj_forward` in float64 on the host.
        """
        if not 0 <= env < self.num_envs:
            raise RobolearnError(f"{self.task}: env {env} out of range (num_envs {self.num_envs})")
        mujoco, m = self._mj, self.model
        model = self.render_model
        if self._render_data is None:
            self._render_data = mujoco.MjData(model)
        d = self._render_data
        names = ["qpos", "qvel", "ctrl", "xfrc_applied"]
        if m.na:
            names.append("act")
        if m.nmocap:
            names += ["mocap_pos", "mocap_quat"]
        targets = [getattr(model, f) for f in _BATCHED] + [getattr(d, k) for k in names]
        rows = [self._fields[f][env] for f in _BATCHED] + [self._view(k)[env] for k in names] + [self.time[env]]
        flat = torch.cat([r.reshape(-1).double() for r in rows]).cpu().numpy()  # one copy (a sync on CUDA)
        start = 0
        for target in targets:  # warp's layouts are the host's with a world axis in front (geom_aabb: (2, 3) = 6)
            target[...] = flat[start : start + target.size].reshape(target.shape)
            start += target.size
        d.time = float(flat[start])
        mujoco.mj_forward(model, d)
        return d

    # ---- state as tensors (views of simulator memory) ------------------------------------------
    def _view(self, name: str) -> Tensor:
        return self._wp.to_torch(getattr(self.d, name))

    @property
    def qpos(self) -> Tensor:
        """(N, nq)."""
        return self._qpos

    @property
    def qvel(self) -> Tensor:
        """(N, nv)."""
        return self._qvel

    @property
    def ctrl(self) -> Tensor:
        """(N, nu)."""
        return self._ctrl

    @property
    def sensordata(self) -> Tensor:
        """(N, nsensordata)."""
        return self._view("sensordata")

    @property
    def site_xpos(self) -> Tensor:
        """(N, nsite, 3)."""
        return self._view("site_xpos")

    @property
    def site_xmat(self) -> Tensor:
        """(N, nsite, 3, 3)."""
        return self._view("site_xmat")

    @property
    def xanchor(self) -> Tensor:
        """(N, njnt, 3)."""
        return self._view("xanchor")

    @property
    def xaxis(self) -> Tensor:
        """(N, njnt, 3)."""
        return self._view("xaxis")
