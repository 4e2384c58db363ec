"""MuJoCo on the CPU: N simulations of one model in MuJoCo's native batch (`mujoco.batch.Batch`, MuJoCo ≥ 4.0).

Why the native batch: it steps all simulations on a C thread pool and exposes the bound fields (qpos, ctrl,
sensors, site poses, ...) as live (N, ...) arrays, so a policy step is one Python call and the arrays become
torch tensors without a per-env loop. On the project's 2-core machine (shared with other jobs) the Franka lift
scene (64 envs, 5 substeps + one forward pass per policy step) ran at 1.6k env-steps/s with a Python loop over
per-env `MjData` (`mj_step` + `mj_forward` + gathering the fields), and 4.8k / 5.2k with the batch on 1 / 2
threads; `mujoco.rollout` (5–7k, without the forward pass) returns only states and sensors, so site poses and
Jacobian inputs would have to be recomputed per env in Python afterwards.

Per-env randomization writes the batch's expanded (per-simulation) model fields; everything is float64 inside
MuJoCo and float32 torch tensors outside.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import numpy as np
import torch
from torch import Tensor

from robolearn.core.errors import RobolearnError, require
from robolearn.sim.backend import check_params, scale_params

_BOUND = ("qpos", "qvel", "ctrl", "sensordata", "site_xpos", "site_xmat", "xanchor", "xaxis", "xfrc_applied", "time")
_EXPANDED = (
    "geom_friction", "body_mass", "body_inertia", "dof_damping", "actuator_gainprm", "actuator_biasprm",
    "geom_size", "geom_rbound", "geom_aabb", "actuator_forcerange",
)


class MujocoCpuBackend:
    """N simulations of one MuJoCo model on the CPU (see the module docstring)."""

    name = "mujoco_cpu"

    def __init__(self, model: Any, num_envs: int, device: str | torch.device = "cpu", nthread: int = 0,
                 task: str = "mujoco_cpu") -> None:
        self._mj = mujoco = require("mujoco", "sim")
        batch = require("mujoco.batch", "sim")
        self.task = task
        self.model = model
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.batch = batch.Batch(model, num_envs, nthread=nthread)
        self._acc = int(mujoco.mjtStage.mjSTAGE_ACC)
        self._none = int(mujoco.mjtStage.mjSTAGE_NONE)
        self._arrays = {k: self.batch.bind(k) for k in _BOUND}
        self._fields = {k: self.batch.expand(k) for k in _EXPANDED}
        self._nominal = {k: v.copy() for k, v in self._fields.items()}
        self._cache: dict[str, Tensor] = {}
        self._render_data: Any = None
        self._render_model: Any = None
        self._call(self.batch.forward)

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except RuntimeError as e:  # mujoco.batch.SimulationError: the failing sims kept their previous state
            raise RobolearnError(f"{self.task}: {' '.join(str(e).split())}") from None
        self._cache.clear()

    # ---- stepping ------------------------------------------------------------------------------
    def step(self, ctrl: Tensor, substeps: int = 1) -> None:
        """Set the controls (N, nu), advance every env by `substeps` physics steps, then run one forward pass.

        mj_step leaves kinematics and sensors at the state *before* its last integration; the forward pass makes
        every exposed quantity (site poses, Jacobian inputs, touch sensors) belong to the current state.
        """
        self._arrays["ctrl"][:] = ctrl.detach().to("cpu", torch.float64).numpy()
        self._call(self.batch.step, nstep=substeps, stage=self._acc)

    def forward(self) -> None:
        """Recompute kinematics and sensors of every env from its state."""
        self._call(self.batch.forward)

    def reset_idx(self, env_ids: Tensor, qpos: Tensor, qvel: Tensor, ctrl: Tensor | None = None) -> None:
        """Reset envs `env_ids` (warm starts, forces, time) and set their (qpos, qvel, ctrl)."""
        ids = env_ids.detach().cpu().numpy().astype(np.int64)
        self._call(self.batch.reset, ids, stage=self._none)
        self._arrays["qpos"][ids] = qpos.detach().to("cpu", torch.float64).numpy()
        self._arrays["qvel"][ids] = qvel.detach().to("cpu", torch.float64).numpy()
        if ctrl is not None:
            self._arrays["ctrl"][ids] = ctrl.detach().to("cpu", torch.float64).numpy()
        self._call(self.batch.forward, ids)

    def set_body_wrench(self, body: int, wrench: Tensor) -> None:
        """World-frame force then torque (N, 6) on `body` in every env, held until changed (xfrc_applied)."""
        self._arrays["xfrc_applied"][:, body] = wrench.detach().to("cpu", torch.float64).numpy()

    @property
    def time(self) -> Tensor:
        """(N,) simulation time of every env [s]; MuJoCo resets an env that went unstable, which sets it to 0."""
        return self._get("time")

    def get_state(self) -> Tensor:
        """Integration state of every env (N, nstate) float64: time, qpos, qvel, act, warm start, ctrl, ..."""
        return torch.from_numpy(np.array(self.batch.state, copy=True))

    def set_state(self, state: Tensor) -> None:
        """Restore what `get_state` returned and recompute derived quantities."""
        self.batch.state[:] = state.detach().to("cpu", torch.float64).numpy()
        self._call(self.batch.forward)

    # ---- randomization -------------------------------------------------------------------------
    def set_params(self, env_ids: Tensor, field: str, ids: list[int], scale: Tensor) -> Tensor:
        """Set `field` of elements `ids` in envs `env_ids` to nominal × scale; returns the values (K, len(ids))."""
        check_params(field, ids, scale, len(env_ids), self.task)
        w = env_ids.detach().cpu().numpy().astype(np.int64)[:, None]
        el = np.asarray(ids, dtype=np.int64)[None, :]
        s = scale.detach().to("cpu", torch.float64).numpy()
        scale_params(self._fields, self._nominal, field, w, el, s)
        return self.get_params(field, ids)[env_ids.cpu()].to(self.device)

    def get_params(self, field: str, ids: list[int]) -> Tensor:
        """Current values of `field` for elements `ids` in every env (N, len(ids))."""
        el = np.asarray(ids, dtype=np.int64)
        f = self._fields
        values = {
            "geom_friction": lambda: f["geom_friction"][:, el, 0],
            "body_mass": lambda: f["body_mass"][:, el],
            "body_inertia": lambda: f["body_inertia"][:, el, 0],  # first principal moment
            "geom_size": lambda: f["geom_size"][:, el, 0],  # first size parameter (box: half x-extent)
            "dof_damping": lambda: f["dof_damping"][:, el],
            "actuator_kp": lambda: f["actuator_gainprm"][:, el, 0],
            "actuator_kv": lambda: -f["actuator_biasprm"][:, el, 2],
            "actuator_forcerange": lambda: f["actuator_forcerange"][:, el, 1],  # upper limit
        }.get(field)
        if values is None:
            raise RobolearnError(f"{self.task}: unknown parameter field '{field}'")
        return self._tensor(values())

    # ---- one env's full data (rendering) -------------------------------------------------------
    @property
    def render_model(self) -> Any:
        """A model that `data(env)` fills with env `env`'s randomized fields (sizes, colours) before rendering."""
        if self._render_model is None:
            self._render_model = copy.copy(self.model)
        return self._render_model

    def data(self, env: int) -> Any:
        """An `MjData` with env `env`'s state and derived quantities; `render_model` holds that env's model."""
        mujoco = self._mj
        model = self.batch.get_model(env, self.render_model)
        if self._render_data is None:
            self._render_data = mujoco.MjData(model)
        d = self.batch.get_data(env, self._render_data)
        mujoco.mj_forward(model, d)
        return d

    # ---- state as tensors ----------------------------------------------------------------------
    def _get(self, key: str) -> Tensor:
        if key not in self._cache:
            self._cache[key] = self._tensor(self._arrays[key])
        return self._cache[key]

    def _tensor(self, arr: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).to(self.device)

    @property
    def qpos(self) -> Tensor:
        """(N, nq)."""
        return self._get("qpos")

    @property
    def qvel(self) -> Tensor:
        """(N, nv)."""
        return self._get("qvel")

    @property
    def ctrl(self) -> Tensor:
        """(N, nu)."""
        return self._get("ctrl")

    @property
    def sensordata(self) -> Tensor:
        """(N, nsensordata)."""
        return self._get("sensordata")

    @property
    def site_xpos(self) -> Tensor:
        """(N, nsite, 3)."""
        return self._get("site_xpos")

    @property
    def site_xmat(self) -> Tensor:
        """(N, nsite, 3, 3)."""
        return self._get("site_xmat").reshape(self.num_envs, -1, 3, 3)

    @property
    def xanchor(self) -> Tensor:
        """(N, njnt, 3)."""
        return self._get("xanchor")

    @property
    def xaxis(self) -> Tensor:
        """(N, njnt, 3)."""
        return self._get("xaxis")


class BatchRenderer:
    """RGB (and depth) images of every env from one named camera, through MuJoCo's offscreen renderer.

    Shadows, reflections and the skybox are off (they cost most of a frame on a CPU-only machine and a policy
    does not need them). Images are rendered env by env from the batch's state; EGL (or OSMesa, MUJOCO_GL) is
    chosen when mujoco is first imported (see `robolearn.sim.backend.import_mujoco`).
    """

    holds_env_state = False
    """`BatchedEnv.state_dict` does not walk into a renderer (it only references the backend and GL objects)."""

    def __init__(self, backend: MujocoCpuBackend, height: int, width: int, task: str = "render") -> None:
        if not isinstance(backend, MujocoCpuBackend):
            raise RobolearnError(f"{task}: BatchRenderer renders the mujoco_cpu backend only (got '{backend.name}'); "
                                 "use WarpRenderer for mjwarp (robolearn.sim.backend.make_renderer picks)")
        self._mj = mujoco = require("mujoco", "sim")
        self.sim, self.height, self.width, self.task = backend, height, width, task
        model = backend.render_model
        self.cameras = [model.camera(i).name for i in range(model.ncam)]
        vis = model.vis.global_  # the offscreen buffer must fit the images
        vis.offheight, vis.offwidth = max(vis.offheight, height), max(vis.offwidth, width)
        try:
            self.rgb = mujoco.Renderer(backend.render_model, height, width)
            self.depth = mujoco.Renderer(backend.render_model, height, width)
        except Exception as e:  # no GL context (EGL/OSMesa missing) or an image larger than the offscreen buffer
            raise RobolearnError(f"{task}: cannot create an offscreen renderer: {' '.join(str(e).split())} "
                                 f"(MUJOCO_GL={os.environ.get('MUJOCO_GL', '')!r}; try egl or osmesa)") from None
        self.depth.enable_depth_rendering()
        for r in (self.rgb, self.depth):
            flags = r.scene.flags
            flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
            flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
            flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = False

    def render(self, camera: str, depth: bool = False, env_ids: Tensor | list[int] | None = None
               ) -> tuple[Tensor, Tensor | None]:
        """(K, H, W, 3) uint8 RGB and, with `depth`, (K, H, W) float32 depth [m] from `camera`.

        Rendered in envs `env_ids` (default: every env).
        """
        if camera not in self.cameras:
            raise RobolearnError(f"{self.task}: no camera '{camera}' in the model "
                                 f"(cameras: {', '.join(self.cameras) or 'none'})")
        ids = range(self.sim.num_envs) if env_ids is None else [int(i) for i in env_ids]
        n, h, w = len(ids), self.height, self.width
        rgb = np.empty((n, h, w, 3), dtype=np.uint8)
        dep = np.empty((n, h, w), dtype=np.float32) if depth else None
        for i, env in enumerate(ids):
            data = self.sim.data(env)
            self.rgb.update_scene(data, camera=camera)
            self.rgb.render(out=rgb[i])
            if dep is not None:
                self.depth.update_scene(data, camera=camera)
                dep[i] = self.depth.render()
        device = self.sim.device
        return torch.from_numpy(rgb).to(device), None if dep is None else torch.from_numpy(dep).to(device)
