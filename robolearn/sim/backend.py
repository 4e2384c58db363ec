"""The physics-backend interface shared by `mujoco_cpu` (MuJoCo on the CPU) and `mjwarp` (MuJoCo Warp).

A backend holds N copies ("worlds") of one MJCF model and exchanges everything as torch tensors on its
device, batched over worlds. Tasks only talk to this interface, so one task definition runs on either
backend (`make_backend(cfg.backend, ...)`).

Per-env domain randomization works on named model fields; the task samples scale factors with its own
generator and the backend applies `value = nominal * scale` to the selected elements:

    "geom_friction"  sliding friction of the given geoms              (ids: geom ids)
    "body_mass"      mass of the given bodies (inertia scaled alike)  (ids: body ids)
    "body_inertia"   rotational inertia of the given bodies only      (ids: body ids; after body_mass)
    "geom_size"      size of the given geoms, all dimensions alike    (ids: geom ids; bounding volumes follow)
    "dof_damping"    joint damping of the given dofs                  (ids: dof ids)
    "actuator_kp"    position-servo stiffness of the given actuators  (ids: actuator ids)
    "actuator_kv"    position-servo damping (kv) of the given actuators (ids: actuator ids)
    "actuator_forcerange"  force/torque limits of the given actuators (ids: actuator ids)

External wrenches (pushes, an adversarial disturber) go through `set_body_wrench`, MuJoCo's `xfrc_applied`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from robolearn.core.errors import ConfigError, RobolearnError, require

RANDOMIZABLE = ("geom_friction", "body_mass", "body_inertia", "dof_damping", "actuator_kp", "geom_size",
                "actuator_kv", "actuator_forcerange")
BACKENDS = ("mujoco_cpu", "mjwarp")


@runtime_checkable
class Backend(Protocol):
    """N worlds of one MuJoCo model; every tensor is (num_envs, ...) on `device`."""

    name: str
    num_envs: int
    device: torch.device
    model: Any
    """The nominal host `mujoco.MjModel` (names, sizes, ids)."""

    def step(self, ctrl: Tensor, substeps: int = 1) -> None:
        """Set the controls (N, nu) and advance every world by `substeps` physics steps."""
        ...

    def reset_idx(self, env_ids: Tensor, qpos: Tensor, qvel: Tensor, ctrl: Tensor | None = None) -> None:
        """Set the state of worlds `env_ids` to (qpos, qvel) (K, nq)/(K, nv), zero warm starts, recompute kinematics."""
        ...

    def set_params(self, env_ids: Tensor, field: str, ids: list[int], scale: Tensor) -> Tensor:
        """Set model `field` of elements `ids` in worlds `env_ids` to nominal × scale (K, len(ids)); returns values."""
        ...

    def forward(self) -> None:
        """Recompute derived quantities (kinematics, sensors) from the current state."""
        ...

    def set_body_wrench(self, body: int, wrench: Tensor) -> None:
        """Apply world-frame force (3) then torque (3) (N, 6) on `body` in every world until changed (xfrc_applied)."""
        ...

    def get_state(self) -> Tensor:
        """Full integration state of every world (N, nstate) float64, for exact resume."""
        ...

    def set_state(self, state: Tensor) -> None:
        """Restore what `get_state` returned."""
        ...

    @property
    def qpos(self) -> Tensor:
        """(N, nq) joint positions."""
        ...

    @property
    def qvel(self) -> Tensor:
        """(N, nv) joint velocities."""
        ...

    @property
    def ctrl(self) -> Tensor:
        """(N, nu) controls."""
        ...

    @property
    def sensordata(self) -> Tensor:
        """(N, nsensordata) sensor readings."""
        ...

    @property
    def site_xpos(self) -> Tensor:
        """(N, nsite, 3) site positions, world frame."""
        ...

    @property
    def site_xmat(self) -> Tensor:
        """(N, nsite, 3, 3) site orientations (site-to-world)."""
        ...

    @property
    def xanchor(self) -> Tensor:
        """(N, njnt, 3) joint anchors, world frame."""
        ...

    @property
    def xaxis(self) -> Tensor:
        """(N, njnt, 3) joint axes, world frame."""
        ...


def import_mujoco() -> Any:
    """Import mujoco; on a Linux machine without a display, pick EGL offscreen rendering unless MUJOCO_GL is set.

    MuJoCo reads MUJOCO_GL once, when it is first imported, so this must run before anything imports it.
    """
    if sys.platform.startswith("linux") and "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["MUJOCO_GL"] = "egl"
    return require("mujoco", "sim")


def load_model(path: str | Path, task: str) -> Any:
    """Compile an MJCF file into a `mujoco.MjModel`, or fail with one line naming the task and the file."""
    mujoco = import_mujoco()
    path = Path(path)
    if not path.is_file():
        raise RobolearnError(f"{task}: MJCF file not found: {path}")
    try:
        return mujoco.MjModel.from_xml_path(str(path))
    except ValueError as e:  # mujoco reports parse/compile errors as ValueError
        msg = " ".join(str(e).split())
        raise RobolearnError(f"{task}: malformed MJCF {path}: {msg}") from None


def make_backend(
    name: str, model: Any, num_envs: int, device: str | torch.device, task: str, fallback_to_cpu: bool = False,
    **mjwarp_kwargs: Any,
) -> Backend:
    """Build backend `name` ("mujoco_cpu" | "mjwarp") with `num_envs` worlds of `model`.

    `mjwarp_kwargs` (nconmax, njmax) size MuJoCo Warp's contact and constraint buffers per world.
    """
    if name == "mujoco_cpu":
        from robolearn.sim.mujoco_cpu import MujocoCpuBackend

        return MujocoCpuBackend(model, num_envs, device=device, task=task)
    if name == "mjwarp":
        from robolearn.sim.mjwarp import MjWarpBackend

        return MjWarpBackend(model, num_envs, device=device, task=task, fallback_to_cpu=fallback_to_cpu,
                             **mjwarp_kwargs)
    raise ConfigError(f"{task}: unknown backend '{name}'; choose one of {', '.join(BACKENDS)}")


def make_renderer(sim: Backend, height: int, width: int, task: str) -> Any:
    """The camera renderer that matches backend `sim` (`height` × `width` images).

    mujoco_cpu: MuJoCo's offscreen OpenGL (`BatchRenderer`, env by env); mjwarp: MuJoCo Warp's batched ray tracer
    (`WarpRenderer`, all worlds in one launch). Both give `render(camera, depth=False, env_ids=None)` ->
    ((K, H, W, 3) uint8 RGB, (K, H, W) float32 depth [m] or None).
    """
    if sim.name == "mujoco_cpu":
        from robolearn.sim.mujoco_cpu import BatchRenderer

        return BatchRenderer(sim, height, width, task)  # type: ignore[arg-type]
    if sim.name == "mjwarp":
        from robolearn.sim.warp_render import WarpRenderer

        return WarpRenderer(sim, height, width, task)
    raise RobolearnError(f"{task}: no camera renderer for backend '{sim.name}' ({', '.join(BACKENDS)} have one)")


def check_params(field: str, ids: list[int], scale: Tensor, k: int, task: str = "backend") -> None:
    """Validate a `set_params` call (shared by the backends)."""
    if field not in RANDOMIZABLE:
        raise ConfigError(f"{task}: cannot randomize '{field}'; randomizable fields: {', '.join(RANDOMIZABLE)}")
    if tuple(scale.shape) != (k, len(ids)):
        raise RobolearnError(f"{task}: {field} scale shape {tuple(scale.shape)}, expected {(k, len(ids))}")


def scale_params(f: dict[str, Any], nom: dict[str, Any], field: str, w: Any, el: Any, s: Any) -> None:
    """Write nominal × `s` into the model arrays behind `field` for worlds `w` (K, 1) and elements `el` (1, L).

    Shared by the backends: `f`/`nom` hold numpy arrays (mujoco_cpu) or torch tensors (mjwarp), which index and
    broadcast alike; `s` (K, L) is broadcast over each array's trailing dimensions.
    """

    def put(name: str, *idx: int) -> None:
        target = nom[name][(w, el, *idx)]
        f[name][(w, el, *idx)] = target * s.reshape(tuple(s.shape) + (1,) * (target.ndim - s.ndim))

    if field == "geom_friction":
        put("geom_friction", 0)
    elif field == "body_mass":
        put("body_mass")
        put("body_inertia")
    elif field == "body_inertia":
        put("body_inertia")
    elif field == "geom_size":  # bounding sphere and box scale with it (broad/mid-phase culling)
        put("geom_size")
        put("geom_rbound")
        put("geom_aabb")
    elif field == "dof_damping":
        put("dof_damping")
    elif field == "actuator_kp":  # a position servo: bias −kp·q keeps it one
        put("actuator_gainprm", 0)
        f["actuator_biasprm"][(w, el, 1)] = -f["actuator_gainprm"][(w, el, 0)]
    elif field == "actuator_kv":  # a position servo's damping: bias −kv·q̇
        put("actuator_biasprm", 2)
    elif field == "actuator_forcerange":
        put("actuator_forcerange")
