"""What every MuJoCo manipulation task shares: backend plumbing, cameras, per-env parameters, exact resume.

A task names its MJCF scene; `MujocoTaskEnv.__init__` compiles it, sizes the offscreen buffer for the requested
cameras and builds the backend (`mujoco_cpu` or `mjwarp`, config field `backend`). Subclasses (the Franka-class
arm tasks in `arm.py`, the bimanual ALOHA-class tasks in `bimanual.py`) add the robot, the task and the rewards;
they fill `self._ctrl` in `_apply_action`, declare their randomized model fields in `_rand_fields` and keep the
drawn scale factors in `self.rand_scale` (name -> (N, len(ids))), which `load_state_dict` re-applies.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from robolearn.core.env import BatchedEnv, CfgT, EnvCfg
from robolearn.core.errors import ConfigError
from robolearn.sim.backend import Backend, load_model, make_backend, make_renderer


@dataclass(kw_only=True)
class MujocoTaskCfg(EnvCfg):
    """Backend and camera settings of a MuJoCo task."""

    backend: Literal["mujoco_cpu", "mjwarp"] = "mujoco_cpu"
    """Physics backend: MuJoCo on the CPU, or MuJoCo Warp (GPU, or warp's CPU device when device is 'cpu')."""
    fallback_to_cpu: bool = False
    """mjwarp on device 'cuda' without CUDA: run on warp's CPU device instead of failing."""
    cameras: tuple[str, ...] = ()
    """Cameras rendered into obs["policy"] (task-specific names); empty: state-only, obs["policy"] is a tensor."""
    image_size: tuple[int, int] = (84, 84)
    """Camera image (height, width) [px]."""
    depth: bool = False
    """Also render depth images (depth_<camera>, metres)."""


class MujocoTaskEnv(BatchedEnv[CfgT]):
    """Base class of the MuJoCo tasks (see the module docstring)."""

    task_name = "mujoco"
    assets: Path = Path()
    """Folder of the task's MJCF files."""
    scene = ""
    """MJCF file of the task's scene, in `assets`."""
    camera_names: dict[str, str] = {}
    """Camera name in the config/observation -> camera name in the MJCF."""

    def __init__(self, cfg: CfgT, seed: int = 0) -> None:
        for cam in cfg.cameras:
            if cam not in self.camera_names:
                raise ConfigError(f"{self.task_name}: unknown camera '{cam}' ({', '.join(self.camera_names)})")
        if cfg.backend == "mjwarp":  # a missing CUDA is an error unless the config allows warp's CPU device
            from robolearn.sim.mjwarp import resolve_device

            device = resolve_device(cfg.device, cfg.fallback_to_cpu, self.task_name)
            if device != torch.device(cfg.device):
                cfg = replace(cfg, device=str(device))
        super().__init__(cfg, seed)
        self.model = load_model(self.assets / self.scene, self.task_name)
        self.model.opt.timestep = cfg.sim_dt
        if cfg.cameras:  # offscreen buffer must fit the requested images
            self.model.vis.global_.offheight = max(self.model.vis.global_.offheight, cfg.image_size[0])
            self.model.vis.global_.offwidth = max(self.model.vis.global_.offwidth, cfg.image_size[1])
        self.sim: Backend = make_backend(cfg.backend, self.model, cfg.num_envs, cfg.device, self.task_name,
                                         fallback_to_cpu=cfg.fallback_to_cpu)
        m = self.model
        self.sensor_adr = {m.sensor(i).name: (int(m.sensor_adr[i]), int(m.sensor_dim[i])) for i in range(m.nsensor)}
        self.rand_scale: dict[str, Tensor] = {}
        self._renderer: Any = None
        self._ctrl = self.sim.ctrl.clone()
        self._substeps_pending = False

    def sensor(self, name: str) -> Tensor:
        """Sensor `name` of every env (N, dim)."""
        adr, dim = self.sensor_adr[name]
        return self.sim.sensordata[:, adr : adr + dim]

    def _rand_fields(self) -> dict[str, tuple[str, list[int]]]:
        """Randomization name -> (backend field, element ids)."""
        return {}

    def _physics_step(self) -> None:
        # BatchedEnv calls this `decimation` times per policy step; the backend runs all substeps in one call
        # (one C call per env on the CPU, one graph launch on the GPU), so only the first call steps.
        if self._substeps_pending:
            self.sim.step(self._ctrl, self.cfg.decimation)
            self._substeps_pending = False

    # ---- cameras -------------------------------------------------------------------------------
    def image_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes (without the env dimension) of the image terms in obs["policy"]."""
        h, w = self.cfg.image_size
        shapes: dict[str, tuple[int, ...]] = {}
        for cam in self.cfg.cameras:
            shapes[f"rgb_{cam}"] = (h, w, 3)
            if self.cfg.depth:
                shapes[f"depth_{cam}"] = (h, w)
        return shapes

    def render_images(self) -> dict[str, Tensor]:
        """Camera terms of obs["policy"] for every env (see `image_shapes`)."""
        out: dict[str, Tensor] = {}
        for cam in self.cfg.cameras:
            rgb, depth = self.render_camera(cam, self.cfg.depth)
            out[f"rgb_{cam}"] = rgb
            if depth is not None:
                out[f"depth_{cam}"] = depth
        return out

    def render_camera(self, camera: str, depth: bool = False) -> tuple[Tensor, Tensor | None]:
        """(N, H, W, 3) uint8 RGB (and (N, H, W) depth [m]) of every env from `camera` at `cfg.image_size`."""
        if camera not in self.camera_names:
            raise ConfigError(f"{self.task_name}: unknown camera '{camera}' ({', '.join(self.camera_names)})")
        if self._renderer is None:  # MuJoCo's OpenGL on mujoco_cpu, MuJoCo Warp's ray tracer on mjwarp
            self._renderer = make_renderer(self.sim, *self.cfg.image_size, self.task_name)
        return self._renderer.render(self.camera_names[camera], depth=depth)

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
        ids = torch.arange(self.num_envs, device=self.device)
        for name, (fld, el) in self._rand_fields().items():
            self.sim.set_params(ids, fld, el, self.rand_scale[name])
        self._randomize_all_task_params()
        self.sim.set_state(physics)
        self._ctrl = self.sim.ctrl.clone()

    def _randomize_all_task_params(self) -> None:
        """Re-apply the task's stored parameters to every env after a state load."""

