"""Video frames of MuJoCo tasks for evaluation: a few envs rendered offscreen from a task camera or a free camera.

`EpisodeRenderer` draws env i's current state (its own randomized model: object sizes, colours) with MuJoCo's
offscreen renderer, shadows, reflections and the skybox off (they cost most of a frame on a CPU-only machine).
The free camera follows a body (e.g. a quadruped's trunk); arrows (e.g. a push force on the trunk) are drawn as
extra scene geoms.

Both backends render alike: each gives a host copy of one env, `render_model` and `data(env)` (`mujoco_cpu` from its
native batch; `mjwarp` copies the world's state and per-world model rows off the device, then `mj_forward`s on the
host), and the frames come from MuJoCo's OpenGL in either case. For a few envs of a video that costs one small
device-to-host copy per frame; the batched training cameras of `mjwarp` are ray traced on the device instead
(`robolearn/sim/warp_render.py`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from robolearn.core.errors import RobolearnError
from robolearn.sim.backend import import_mujoco

ARROW_RGBA = (0.95, 0.15, 0.1, 1.0)


class EpisodeRenderer:
    """(K, H, W, 3) uint8 frames of envs `ids` of a MuJoCo task (see the module docstring)."""

    holds_env_state = False
    """`BatchedEnv.state_dict` does not walk into a renderer."""

    def __init__(self, env: Any, size: tuple[int, int] = (240, 320), *, camera: str | None = None,
                 track_body: int | None = None, distance: float = 2.0, azimuth: float = 135.0,
                 elevation: float = -20.0) -> None:
        sim = getattr(env, "sim", None)
        name = env.spec.name
        if not (hasattr(sim, "render_model") and callable(getattr(sim, "data", None))):
            label = getattr(sim, "name", None) or type(sim).__name__
            raise RobolearnError(f"{name}: videos draw a MuJoCo backend's host copy of an env (render_model, "
                                 f"data(env)); '{label}' has none")
        h, w = size
        if h % 2 or w % 2 or min(h, w) < 64:
            raise RobolearnError(f"{name}: video size must be even and at least 64 px, got {size}")
        self._mj = mujoco = import_mujoco()
        self.sim, self.height, self.width, self.task = sim, h, w, name
        model = sim.render_model
        model.vis.global_.offheight = max(model.vis.global_.offheight, h)
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, w)
        try:
            self.renderer = mujoco.Renderer(model, h, w, max_geom=20000)
        except Exception as e:  # no GL context (EGL/OSMesa missing)
            raise RobolearnError(f"{name}: cannot create an offscreen renderer: {' '.join(str(e).split())}") from None
        flags = self.renderer.scene.flags
        for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION,
                     mujoco.mjtRndFlag.mjRND_SKYBOX):
            flags[flag] = False
        self.camera: Any = camera
        if camera is not None and mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera) < 0:
            raise RobolearnError(f"{name}: the MJCF has no camera '{camera}'")
        self.track_body = track_body
        if camera is None:
            self.camera = mujoco.MjvCamera()
            self.camera.type = mujoco.mjtCamera.mjCAMERA_FREE
            self.camera.distance, self.camera.azimuth, self.camera.elevation = distance, azimuth, elevation
            self.camera.lookat[:] = model.stat.center

    def render(self, env_ids: list[int], arrows: Tensor | None = None, arrow_width: float = 0.02) -> Tensor:
        """Frames (K, H, W, 3) uint8 of envs `env_ids`.

        `arrows` (K, 2, 3): from/to points [m] of one arrow per frame (rows whose points coincide draw nothing).
        """
        mujoco = self._mj
        out = np.empty((len(env_ids), self.height, self.width, 3), dtype=np.uint8)
        arr = None if arrows is None else arrows.detach().cpu().double().numpy()
        for k, env in enumerate(env_ids):
            data = self.sim.data(int(env))
            if self.track_body is not None:
                self.camera.lookat[:] = data.xpos[self.track_body]
            self.renderer.update_scene(data, camera=self.camera)
            scn = self.renderer.scene
            if arr is not None and np.linalg.norm(arr[k, 1] - arr[k, 0]) > 1e-6 and scn.ngeom < scn.maxgeom:
                g = scn.geoms[scn.ngeom]
                mujoco.mjv_initGeom(g, mujoco.mjtGeom.mjGEOM_ARROW, np.zeros(3), np.zeros(3), np.zeros(9),
                                    np.array(ARROW_RGBA, dtype=np.float32))
                mujoco.mjv_connector(g, mujoco.mjtGeom.mjGEOM_ARROW, arrow_width, arr[k, 0], arr[k, 1])
                scn.ngeom += 1
            self.renderer.render(out=out[k])
        return torch.from_numpy(out)
