"""Batched RGB and depth cameras for the `mjwarp` backend, through MuJoCo Warp's ray-traced renderer.

`WarpRenderer` has `BatchRenderer`'s interface (robolearn/sim/mujoco_cpu.py) but renders every world in one kernel
launch (`mujoco_warp.render`) from the state already on the device, and hands the images to torch as views of the
render buffers (`wp.to_torch`): no per-env Python loop and no host round trip on CUDA.

One MuJoCo Warp `RenderContext` per camera, built on first use (its scene BVH over all worlds' geoms included) and
refit before every render (`mujoco_warp.refit_bvh`), since the geoms move between renders. It reads the per-world
model rows, so randomized geom sizes (`set_params(..., "geom_size", ...)`) show in the images; per-world colours
(`geom_rgba`, `mat_rgba`) would too, but robolearn does not randomize colours on either backend.

What differs from MuJoCo's OpenGL images (`BatchRenderer`): colours are ray traced per pixel (Lambert + Blinn-Phong
from the model's lights and headlight) instead of OpenGL's fixed-function lighting. On untextured materials the two
agree within a few 8-bit levels (arm-lift cameras, Push-T: mean |Δ| ~2 of 255). Textured surfaces lit by the
headlight come out brighter: the bimanual tasks' checkered table under the top camera averages ~150 instead of ~115
(measured 2026-12-07; without the headlight, or without the texture, the two agree within ~4 levels again; zeroing
only the headlight's specular or only its diffuse term halves the gap, so the cause is in how the texture combines
with the headlight's terms, not pinned down further). There are no shadows,
reflections, skybox, fog or haze (all off in `BatchRenderer` too); sites, tendons and other decor are not drawn
(only geoms and flexes: arm-lift's wrist view lacks the red TCP site); each pixel is one ray through its centre (no
anti-aliasing), so edges are hard and features thinner than a pixel can drop out (Push-T's 4 mm walls at 96 px).
Depth is planar (distance along the optical axis) in metres as MuJoCo's; pixels that hit nothing read the far plane
(`vis.map.zfar × stat.extent`), as MuJoCo's depth buffer does. Geometry matches: the same camera poses, intrinsics
(perspective or orthographic) and geom shapes, so depth and object masks agree with `BatchRenderer` up to edge
pixels (tests/sim/test_warp_render.py).

On warp's CPU device the render kernels run too (slowly); the first render compiles them (seconds, cached in
~/.cache/warp).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from robolearn.core.errors import RobolearnError


class WarpRenderer:
    """RGB (and depth) images of every world from one named camera, ray traced by MuJoCo Warp (module docstring)."""

    holds_env_state = False
    """`BatchedEnv.state_dict` does not walk into a renderer (it references the backend and render buffers)."""

    def __init__(self, backend: Any, height: int, width: int, task: str = "render") -> None:
        from robolearn.sim.mjwarp import MjWarpBackend

        if not isinstance(backend, MjWarpBackend):
            raise RobolearnError(f"{task}: WarpRenderer renders the mjwarp backend only (got '{backend.name}'); "
                                 "use BatchRenderer for mujoco_cpu")
        if height < 1 or width < 1:
            raise RobolearnError(f"{task}: image size must be positive (got {height}x{width})")
        self.sim, self.height, self.width, self.task = backend, height, width, task
        self._wp, self._mjw = backend._wp, backend._mjw
        self._contexts: dict[str, tuple[Any, Tensor, Tensor]] = {}
        """camera -> (render context, its RGB buffer and depth buffer as torch views)"""
        model = backend.model
        self.cameras = [model.camera(i).name for i in range(model.ncam)]
        # pixels that hit nothing read the far plane, as MuJoCo's OpenGL depth buffer does
        self.zfar = float(model.vis.map.zfar * model.stat.extent)

    def _context(self, camera: str) -> tuple[Any, Tensor, Tensor]:
        """The render context of `camera` (built once: rays, textures, scene BVH over all worlds) and its buffers."""
        ctx = self._contexts.get(camera)
        if ctx is None:
            if camera not in self.cameras:
                raise RobolearnError(f"{self.task}: no camera '{camera}' in the model "
                                     f"(cameras: {', '.join(self.cameras) or 'none'})")
            with self._wp.ScopedDevice(self.sim.wp_device):
                rc = self._mjw.create_render_context(
                    self.sim.model, nworld=self.sim.num_envs, cam_res=(self.width, self.height),
                    render_rgb=True, render_depth=True, render_seg=False, cam_active=[camera],
                    use_shadows=False, render_skybox=False)
            # (N, H*W) uint32 0xAARRGGBB and (N, H*W) float32 planar depth (0 where nothing was hit)
            ctx = self._contexts[camera] = (rc, self._wp.to_torch(rc.rgb_data), self._wp.to_torch(rc.depth_data))
        return ctx

    def render(self, camera: str, depth: bool = False, env_ids: Tensor | list[int] | None = None
               ) -> tuple[Tensor, Tensor | None]:
        """(K, H, W, 3) uint8 RGB and, with `depth`, (K, H, W) float32 depth [m] from `camera`.

        Rendered in worlds `env_ids` (default: every world). The kernel always traces every world; `env_ids`
        selects from the result.
        """
        rc, packed, depth_buf = self._context(camera)
        sim, wp, mjw = self.sim, self._wp, self._mjw
        with wp.ScopedDevice(sim.wp_device):
            mjw.refit_bvh(sim.m, sim.d, rc)  # geoms moved since the last render
            mjw.render(sim.m, sim.d, rc)
        n, h, w = sim.num_envs, self.height, self.width
        # uint32 0xAARRGGBB -> bytes (B, G, R, A) in (little-endian) memory -> (N, H, W, 3) RGB; flip copies the buffer
        rgb = packed.view(torch.uint8).reshape(n, h, w, 4)[..., :3].flip(-1)
        dep = None
        if depth:
            dep = depth_buf.reshape(n, h, w)
            dep = torch.where(dep > 0, dep, self.zfar)  # a new tensor: the buffer is reused by the next render
        if env_ids is not None:
            ids = torch.as_tensor(env_ids, dtype=torch.long, device=rgb.device)
            rgb, dep = rgb[ids], None if dep is None else dep[ids]
        return rgb, dep
