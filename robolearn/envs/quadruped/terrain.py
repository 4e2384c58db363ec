"""Terrains for the quadruped tasks: one MuJoCo height field laid out as a grid of tiles (legged_gym style).

Rows are difficulty levels (row 0 easiest), columns are terrain types; every env's robot starts at the centre of
its own tile (its level, its type). A terrain curriculum moves an env one row up when it walked far enough and
one row down when it did not (see `Terrain.update_levels`).

Types (difficulty d = row / (levels - 1) ∈ [0, 1]):
    flat         no relief
    slope        a pyramid rising from a 1 m platform at the tile centre to the tile edge, gradient 0.05 + 0.35 d
    stairs_up    pyramid stairs rising outward from the central platform, steps 0.3 m deep, 0.03 + 0.12 d m high
    stairs_down  the same stairs descending outward (the robot starts on the top platform)
    rough        uniform random bumps of ±(0.01 + 0.05 d) m on a 0.2 m grid, bilinearly interpolated

`terrain: flat` uses a plane instead of a height field (cheapest collisions); `mixed` lays out every type.
Heights are held here as a torch tensor too, so the critic's height scan is a lookup, not a ray cast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from robolearn.core.errors import ConfigError

TERRAIN_TYPES = ("flat", "slope", "stairs_up", "stairs_down", "rough")
TERRAIN_CHOICES = ("flat", "mixed") + TERRAIN_TYPES[1:]
PLATFORM = 1.0
"""Side of the flat platform at the centre of every tile [m] (where robots start)."""


@dataclass(frozen=True)
class TerrainLayout:
    """Sizes of the tile grid."""

    kind: str = "flat"
    levels: int = 5
    tile_size: float = 4.0
    resolution: float = 0.05
    border: float = 2.0


def check_terrain(kind: str, task: str) -> tuple[str, ...]:
    """The terrain types (columns) for config value `kind`, or a one-line error naming the key and the choices."""
    if kind not in TERRAIN_CHOICES:
        raise ConfigError(f"{task}: unknown terrain '{kind}' (config key 'terrain'); choose one of "
                          f"{', '.join(TERRAIN_CHOICES)}")
    return TERRAIN_TYPES if kind == "mixed" else (kind,)


def tile_heights(kind: str, difficulty: float, px: int, resolution: float, gen: torch.Generator) -> Tensor:
    """Heights (px, px) [m] of one tile of type `kind`; index [row, col] = [y, x], the centre at px // 2."""
    c = (torch.arange(px, dtype=torch.float64) - (px - 1) / 2) * resolution  # coordinates from the tile centre
    y, x = torch.meshgrid(c, c, indexing="ij")
    ring = torch.maximum(x.abs(), y.abs()) - PLATFORM / 2  # distance outward from the platform edge
    ring = ring.clamp_min(0.0)
    if kind == "flat":
        return torch.zeros(px, px, dtype=torch.float64)
    if kind == "slope":
        return (0.05 + 0.35 * difficulty) * ring
    if kind in ("stairs_up", "stairs_down"):
        step_h, step_w = 0.03 + 0.12 * difficulty, 0.3
        steps = torch.ceil(ring / step_w) * step_h
        return steps if kind == "stairs_up" else steps.max() - steps
    if kind == "rough":
        amp, coarse = 0.01 + 0.05 * difficulty, max(2, round(px * resolution / 0.2) + 1)
        noise = (torch.rand(1, 1, coarse, coarse, generator=gen, dtype=torch.float64) * 2 - 1) * amp
        h = torch.nn.functional.interpolate(noise, size=(px, px), mode="bilinear", align_corners=True)[0, 0]
        centre = (ring <= 0).to(h.dtype)
        return h * (1 - centre) + h[px // 2, px // 2] * centre  # a flat start platform
    raise ConfigError(f"unknown terrain type '{kind}'; choose one of {', '.join(TERRAIN_TYPES)}")


class Terrain:
    """The tile grid of one task: heights, tile origins, and the height field it adds to the MuJoCo model."""

    def __init__(self, layout: TerrainLayout, seed: int, task: str, device: torch.device) -> None:
        self.layout, self.task, self.device = layout, task, device
        self.types = check_terrain(layout.kind, task)
        if layout.levels < 1 or layout.tile_size <= PLATFORM or layout.resolution <= 0 or layout.border < 0:
            raise ConfigError(f"{task}: terrain needs terrain_levels ≥ 1, tile_size > {PLATFORM} m, "
                              f"resolution > 0 and border ≥ 0 (got {layout})")
        self.is_plane = layout.kind == "flat"
        self.rows, self.cols = layout.levels, len(self.types)
        res = layout.resolution
        self.tile_px = px = int(round(layout.tile_size / res))
        self.border_px = b = int(round(layout.border / res))
        gen = torch.Generator().manual_seed(seed)
        h = torch.zeros(self.rows * px + 2 * b, self.cols * px + 2 * b, dtype=torch.float64)
        for r in range(self.rows):
            d = r / max(self.rows - 1, 1)
            for c, kind in enumerate(self.types):
                h[b + r * px : b + (r + 1) * px, b + c * px : b + (c + 1) * px] = tile_heights(kind, d, px, res, gen)
        self.heights = h  # [row = y index, col = x index], metres
        # the field spans x ∈ [-size_x, size_x], y ∈ [-size_y, size_y] with sample spacing `res`
        self.size_x = (h.shape[1] - 1) * res / 2
        self.size_y = (h.shape[0] - 1) * res / 2
        self.heights_t = h.to(device, torch.float32)
        # tile centres (level, type) -> (x, y, ground height)
        cy = torch.tensor([b + r * px + px // 2 for r in range(self.rows)], dtype=torch.long)
        cx = torch.tensor([b + c * px + px // 2 for c in range(self.cols)], dtype=torch.long)
        xs, ys = cx.double() * res - self.size_x, cy.double() * res - self.size_y
        origins = torch.zeros(self.rows, self.cols, 3, dtype=torch.float64)
        origins[..., 0] = xs[None, :]
        origins[..., 1] = ys[:, None]
        origins[..., 2] = h[cy[:, None], cx[None, :]]
        self.origins = origins.to(device, torch.float32)

    # ---- the MuJoCo model --------------------------------------------------------------------------
    def build(self, spec: Any) -> None:
        """Replace the scene's floor plane (geom "floor") with the height field, unless the terrain is flat."""
        if self.is_plane:
            return
        mujoco = __import__("mujoco")
        floor = spec.geom("floor")
        h = self.heights
        lo, hi = float(h.min()), float(h.max())
        span = max(hi - lo, 1e-3)
        spec.add_hfield(name="terrain", nrow=h.shape[0], ncol=h.shape[1],
                        size=[self.size_x, self.size_y, span, 0.5],
                        userdata=((h - lo) / span).flatten().tolist())
        spec.worldbody.add_geom(name="terrain", type=mujoco.mjtGeom.mjGEOM_HFIELD, hfieldname="terrain",
                                pos=[0.0, 0.0, lo], material=floor.material, contype=1, conaffinity=1,
                                condim=3)
        spec.delete(floor)

    # ---- lookups -----------------------------------------------------------------------------------
    def height_at(self, xy: Tensor) -> Tensor:
        """Ground height [m] under world points `xy` (..., 2), bilinear between samples; 0 beyond the field."""
        if self.is_plane:
            return torch.zeros(xy.shape[:-1], device=xy.device)
        res, h = self.layout.resolution, self.heights_t
        u = (xy[..., 0] + self.size_x) / res  # fractional column
        v = (xy[..., 1] + self.size_y) / res  # fractional row
        inside = (u >= 0) & (v >= 0) & (u <= h.shape[1] - 1) & (v <= h.shape[0] - 1)
        u = u.clamp(0, h.shape[1] - 1.001)
        v = v.clamp(0, h.shape[0] - 1.001)
        c0, r0 = u.floor().long(), v.floor().long()
        fu, fv = u - c0, v - r0
        z = (h[r0, c0] * (1 - fu) * (1 - fv) + h[r0, c0 + 1] * fu * (1 - fv)
             + h[r0 + 1, c0] * (1 - fu) * fv + h[r0 + 1, c0 + 1] * fu * fv)
        return torch.where(inside, z, torch.zeros_like(z))

    def update_levels(self, levels: Tensor, walked: Tensor, required: Tensor) -> Tensor:
        """New levels of finished envs: one row up or down (within [0, levels - 1]).

        Up when they walked more than half a tile, down when they covered less than half the commanded distance.
        """
        up = walked > self.layout.tile_size / 2
        down = (walked < 0.5 * required) & ~up
        return (levels + up.long() - down.long()).clamp(0, self.rows - 1)

    @property
    def max_distance(self) -> float:
        """Distance from a tile centre to its edge [m]."""
        return self.layout.tile_size / 2


def grid_points(nx: int, ny: int, spacing: float) -> Tensor:
    """(nx * ny, 2) points of a centred scan grid in the base's yaw frame [m]."""
    xs = (torch.arange(nx, dtype=torch.float32) - (nx - 1) / 2) * spacing
    ys = (torch.arange(ny, dtype=torch.float32) - (ny - 1) / 2) * spacing
    gx, gy = torch.meshgrid(xs, ys, indexing="ij")
    return torch.stack((gx.flatten(), gy.flatten()), -1)



