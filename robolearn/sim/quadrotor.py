"""Batched quadrotor rigid-body simulator (Crazyflie 2.1 by default): motor lag, thrust curve, RK4.

Model (as in "Learning to Fly in Seconds", Eschmann et al. 2023):

    ṗ = v                                        world frame [m/s]
    q̇ = ½ q ⊗ (0, ω)                             q body->world (w, x, y, z), ω body frame
    v̇ = (R(q) Σ f_i ẑ + f_ext) / m − g ẑ         f_i = s_T (c0 + c1 n_i + c2 n_i²) per rotor [N]
    ω̇ = J⁻¹ (τ_rotors + τ_ext − ω × Jω)          τ_rotors = Σ r_i × f_i ẑ + ẑ Σ d_i k_m f_i
    ṅ = (n_cmd − n) / τ_m                         n: rotor speed [rev/min]

State tensor (N, 17): pos(3) | quat(4) | lin_vel(3) | ang_vel(3) | rpm(4). `QuadrotorSim` keeps it
component-major in memory (a transposed (17, N) buffer) so that a compiled step reads and writes each
component contiguously; every function here accepts either layout and returns the layout it was given.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor

from robolearn.core.errors import ConfigError

STATE_DIM = 17
POS, QUAT, LIN_VEL, ANG_VEL, RPM = slice(0, 3), slice(3, 7), slice(7, 10), slice(10, 13), slice(13, 17)
NUM_ROTORS = 4

YAML_PATH = Path(__file__).resolve().parents[2] / "sim_assets" / "crazyflie" / "crazyflie21.yaml"


@dataclass(frozen=True)
class QuadrotorParams:
    """Nominal quadrotor parameters in SI units (rotor speeds in rev/min); body frame x forward, y left, z up."""

    mass: float  # [kg]
    inertia: tuple[float, float, float]  # [kg m^2] diagonal
    rotor_positions: tuple[tuple[float, float, float], ...]  # [m] body frame, one per rotor
    rotor_directions: tuple[float, ...]  # +1/-1: sign of the body-z reaction torque per unit thrust
    thrust_poly: tuple[float, float, float]  # thrust per rotor [N] = c0 + c1*rpm + c2*rpm^2
    torque_coef: float  # [N m / N] yaw torque per unit thrust
    motor_tau: float  # [s] first-order motor time constant
    rpm_min: float  # [rev/min]
    rpm_max: float  # [rev/min]
    gravity: float = 9.81  # [m/s^2]

    def __post_init__(self) -> None:
        if len(self.rotor_positions) != NUM_ROTORS or len(self.rotor_directions) != NUM_ROTORS:
            raise ConfigError(
                f"a quadrotor has {NUM_ROTORS} rotors: got {len(self.rotor_positions)} positions "
                f"and {len(self.rotor_directions)} directions"
            )
        if any(len(r) != 3 for r in self.rotor_positions) or len(self.inertia) != 3 or len(self.thrust_poly) != 3:
            raise ConfigError("rotor positions and inertia take 3 numbers each, thrust_poly takes (c0, c1, c2)")
        if self.mass <= 0 or min(self.inertia) <= 0 or self.motor_tau <= 0 or not self.rpm_min < self.rpm_max:
            raise ConfigError("mass, inertia and motor_tau must be positive and rpm_min < rpm_max")

    @property
    def hover_rpm(self) -> float:
        """Rotor speed [rev/min] at which the four rotors together carry the weight."""
        c0, c1, c2 = self.thrust_poly
        target = self.mass * self.gravity / NUM_ROTORS - c0  # c2 n² + c1 n = target
        if c2 == 0.0:
            return target / c1
        return (-c1 + math.sqrt(c1 * c1 + 4.0 * c2 * target)) / (2.0 * c2)

    def thrust(self, rpm: float) -> float:
        """Thrust of one rotor [N] at `rpm`."""
        c0, c1, c2 = self.thrust_poly
        return c0 + c1 * rpm + c2 * rpm * rpm


# The same numbers as sim_assets/crazyflie/crazyflie21.yaml (a test keeps them equal), for installs without it.
CRAZYFLIE21 = QuadrotorParams(
    mass=0.027,
    inertia=(3.85e-6, 3.85e-6, 5.9675e-6),
    rotor_positions=((0.028, -0.028, 0.0), (-0.028, -0.028, 0.0), (-0.028, 0.028, 0.0), (0.028, 0.028, 0.0)),
    rotor_directions=(-1.0, 1.0, -1.0, 1.0),
    thrust_poly=(0.0, 0.0, 3.16e-10),
    torque_coef=0.005964552,
    motor_tau=0.15,
    rpm_min=0.0,
    rpm_max=21702.0,
    gravity=9.81,
)


def params_from_yaml(path: str | Path) -> QuadrotorParams:
    """Read a quadrotor parameter file (the keys are the `QuadrotorParams` fields; unknown keys are errors)."""
    import yaml

    with open(path) as f:
        data = yaml.safe_load(f)
    names = {f.name for f in fields(QuadrotorParams)}
    if not isinstance(data, dict) or set(data) - names:
        raise ConfigError(f"{path}: unknown keys {sorted(set(data or {}) - names)}; expected {sorted(names)}")

    def tup(x: object) -> object:
        return tuple(tup(v) for v in x) if isinstance(x, list) else float(x)

    try:
        return QuadrotorParams(**{k: tup(v) for k, v in data.items()})
    except TypeError as e:
        raise ConfigError(f"{path}: {e}") from None


@functools.cache
def load_crazyflie21() -> QuadrotorParams:
    """Crazyflie 2.1 nominal parameters from sim_assets/, or the embedded copy when the repo is not there."""
    return params_from_yaml(YAML_PATH) if YAML_PATH.is_file() else CRAZYFLIE21


def _component_major(n: int, k: int, device: torch.device | str | None, dtype: torch.dtype) -> Tensor:
    """Zeros of shape (n, k) stored component-major: column j is contiguous (stride (1, n + pad)).

    On CPU a large batch pads each column by 4 KiB + 1 cache line, so that the 17+ columns a step streams
    through do not all map to the same cache sets (columns exactly 2^k floats apart do, and thrash L1/L2).
    """
    pad = 1040 if n >= 16384 and torch.device(device or "cpu").type == "cpu" else 0
    return torch.zeros(k, n + pad, device=device, dtype=dtype)[:, :n].T


@dataclass
class BatchParams:
    """Per-env physical parameters (domain randomization); `ref` is the nominal set used for normalization."""

    mass: Tensor  # (N,) [kg]
    inertia: Tensor  # (N, 3) [kg m^2]
    thrust_scale: Tensor  # (N,) multiplies the thrust polynomial
    torque_coef: Tensor  # (N,) [N m / N]
    motor_tau: Tensor  # (N,) [s]
    ref: QuadrotorParams = field(default_factory=load_crazyflie21, repr=False)

    RANDOMIZABLE: ClassVar[tuple[str, ...]] = ("mass", "inertia", "thrust", "torque", "motor_tau")

    @classmethod
    def nominal(
        cls, p: QuadrotorParams, n: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> BatchParams:
        """All `n` envs at the nominal parameters of `p`."""
        buf = _component_major(n, 7, device, dtype)  # one allocation, 7 contiguous columns
        buf.copy_(torch.tensor((p.mass, *p.inertia, 1.0, p.torque_coef, p.motor_tau), dtype=dtype, device=device))
        return cls(buf[:, 0], buf[:, 1:4], buf[:, 4], buf[:, 5], buf[:, 6], ref=p)

    def randomize_(
        self, p: QuadrotorParams, env_ids: Tensor, rel: dict[str, float], rand: Callable[[int, int], Tensor]
    ) -> None:
        """Draw the named parameters of `env_ids` uniformly in nominal * (1 ± rel[name]); the others stay."""
        unknown = set(rel) - set(self.RANDOMIZABLE)
        if unknown:
            raise ConfigError(f"unknown randomization keys {sorted(unknown)}; expected a subset of {self.RANDOMIZABLE}")
        n = env_ids.numel()
        if n == 0:
            return
        # fixed order, not dict order, so that the same generator gives the same draws whatever the key order
        for name in self.RANDOMIZABLE:
            if name not in rel:
                continue
            k = 3 if name == "inertia" else 1
            factor = 1.0 + rel[name] * (2.0 * rand(n, k).to(self.mass) - 1.0)  # (n, k) in [1 - rel, 1 + rel)
            if name == "inertia":
                self.inertia[env_ids] = torch.tensor(p.inertia, dtype=factor.dtype, device=factor.device) * factor
            elif name == "mass":
                self.mass[env_ids] = p.mass * factor[:, 0]
            elif name == "thrust":
                self.thrust_scale[env_ids] = factor[:, 0]
            elif name == "torque":
                self.torque_coef[env_ids] = p.torque_coef * factor[:, 0]
            else:
                self.motor_tau[env_ids] = p.motor_tau * factor[:, 0]

    def as_tensor(self) -> Tensor:
        """(N, 7): mass, inertia(3), thrust_scale, torque_coef, motor_tau, each divided by its nominal value."""
        r = self.ref
        return torch.cat(
            (
                (self.mass / r.mass).unsqueeze(-1),
                self.inertia / self.inertia.new_tensor(r.inertia),
                self.thrust_scale.unsqueeze(-1),
                (self.torque_coef / r.torque_coef).unsqueeze(-1),
                (self.motor_tau / r.motor_tau).unsqueeze(-1),
            ),
            -1,
        )


# ---------------------------------------------------------------------------------------------------------------
# Dynamics, written component by component on (N,) tensors: torch.compile fuses the whole RK4 step into one loop,
# and eager mode runs no stack/cat/cross temporaries.


class _Coef(NamedTuple):
    """Per-env quantities constant over one step (each (N,) tensor); static factors are folded in once here."""

    acc2: Tensor  # 2 s_T c_lead / m: Σ g(n_i) -> twice the specific thrust [m/s^2]
    ax: Tensor  # external + gravity acceleration, world [m/s^2]
    ay: Tensor
    az: Tensor
    tx: Tensor  # s_T c_lead k_axis / J: signed Σ g(n_i) -> angular acceleration [rad/s^2]
    ty: Tensor
    tz: Tensor
    ex: Tensor  # external torque / J
    ey: Tensor
    ez: Tensor
    gx: Tensor  # (Jz - Jy) / Jx etc.: gyroscopic coefficients
    gy: Tensor
    gz: Tensor
    inv_tau: Tensor  # 1 / motor_tau
    cmd: tuple[Tensor, ...]  # 4 commanded rotor speeds (clamped)


class _Inputs(NamedTuple):
    """Everything a step reads besides the state, as (N,) components (views of the batched tensors)."""

    cmd: tuple[Tensor, ...]  # 4 [rev/min]
    mass: Tensor
    inertia: tuple[Tensor, ...]  # 3
    thrust_scale: Tensor
    torque_coef: Tensor
    motor_tau: Tensor
    force: tuple[Tensor, ...]  # 3, world
    torque: tuple[Tensor, ...]  # 3, body


def _inputs(rpm_cmd: Tensor, bp: BatchParams, force_ext: Tensor, torque_ext: Tensor) -> _Inputs:
    return _Inputs(
        rpm_cmd.unbind(-1), bp.mass, bp.inertia.unbind(-1), bp.thrust_scale, bp.torque_coef, bp.motor_tau,
        force_ext.unbind(-1), torque_ext.unbind(-1),
    )  # fmt: skip


# The thrust of rotor i is f_i = s_T c_lead g(n_i) with g monic (c_lead = c2, or c1 for a linear curve), and each
# torque axis is a lever k times a signed sum of the g(n_i); s_T c_lead k / J is then one per-env factor.


def _thrust_lead(p: QuadrotorParams) -> float:
    c0, c1, c2 = p.thrust_poly
    return c2 if c2 != 0.0 else (c1 if c1 != 0.0 else c0)


def _thrust_shape(p: QuadrotorParams, n: Tensor) -> Tensor:
    """g(n) = thrust polynomial / c_lead."""
    c0, c1, c2 = p.thrust_poly
    if c2 != 0.0:
        g = n * (n + c1 / c2) if c1 != 0.0 else n * n
        return g + c0 / c2 if c0 != 0.0 else g
    if c1 != 0.0:
        return n + c0 / c1 if c0 != 0.0 else n
    return torch.ones_like(n)


def _axis_weights(p: QuadrotorParams) -> tuple[tuple[float, tuple[float, ...]], ...]:
    """Roll, pitch, yaw: (k, r) with torque = k Σ r_i f_i; k is the common |lever| (0.028 m for an X frame)."""
    out = []
    levers = ([r[1] for r in p.rotor_positions], [-r[0] for r in p.rotor_positions], list(p.rotor_directions))
    for ws in levers:  # r × f ẑ = (y f, -x f, 0); yaw: d_i k_m f_i (k_m per env)
        nonzero = {abs(w) for w in ws if w != 0.0}
        k = nonzero.pop() if len(nonzero) == 1 else 1.0
        out.append((k, tuple(w / k for w in ws)))
    return tuple(out)


def _weighted_sum(ratios: Sequence[float], xs: Sequence[Tensor]) -> Tensor:
    """Σ r_i x_i with ±1 ratios as additions and subtractions (positive terms first)."""
    terms = sorted(((r, x) for r, x in zip(ratios, xs, strict=True) if r != 0.0), key=lambda t: t[0] < 0)
    acc: Tensor | None = None
    for r, x in terms:
        t = x if abs(r) == 1.0 else abs(r) * x
        acc = (t if r > 0 else -t) if acc is None else (acc + t if r > 0 else acc - t)
    return acc if acc is not None else torch.zeros_like(xs[0])


def _coef(p: QuadrotorParams, u: _Inputs) -> _Coef:
    inv_m = 1.0 / u.mass
    jx, jy, jz = u.inertia
    ijx, ijy, ijz = 1.0 / jx, 1.0 / jy, 1.0 / jz
    fx, fy, fz = u.force
    mx, my, mz = u.torque
    (kx, _), (ky, _), (kz, _) = _axis_weights(p)
    s = u.thrust_scale * _thrust_lead(p)
    return _Coef(
        (2.0 * s) * inv_m, fx * inv_m, fy * inv_m, fz * inv_m - p.gravity,
        (kx * s) * ijx, (ky * s) * ijy, (kz * s) * u.torque_coef * ijz,
        mx * ijx, my * ijy, mz * ijz,
        (jz - jy) * ijx, (jx - jz) * ijy, (jy - jx) * ijz,
        1.0 / u.motor_tau, tuple(c.clamp(p.rpm_min, p.rpm_max) for c in u.cmd),
    )  # fmt: skip


_Groups = tuple[tuple[Tensor, ...], tuple[Tensor, ...], tuple[Tensor, ...], tuple[Tensor, ...]]


def _deriv(p: QuadrotorParams, c: _Coef, q: Sequence[Tensor], w: Sequence[Tensor], n: Sequence[Tensor]) -> _Groups:
    """(q̇, v̇, ω̇, ṅ) at attitude q, body rate w, rotor speeds n; ṗ = v needs nothing computed."""
    qw, qx, qy, qz = q
    wx, wy, wz = w
    g = [_thrust_shape(p, ni) for ni in n]
    (_, rx), (_, ry), (_, rz) = _axis_weights(p)
    # v̇ = R(q) ẑ T/m + a_ext, with R ẑ = (2(xz + wy), 2(yz − wx), 1 − 2(x² + y²)) and a2 = 2 T/m
    a2 = _weighted_sum((1.0,) * NUM_ROTORS, g) * c.acc2
    dv = (
        (qx * qz + qw * qy) * a2 + c.ax,
        (qy * qz - qw * qx) * a2 + c.ay,
        (0.5 - (qx * qx + qy * qy)) * a2 + c.az,
    )
    # ω̇ = J⁻¹(τ − ω × Jω); (ω × Jω)_x = (Jz − Jy) ω_y ω_z, cyclic
    dw = (
        _weighted_sum(rx, g) * c.tx + (c.ex - c.gx * wy * wz),
        _weighted_sum(ry, g) * c.ty + (c.ey - c.gy * wz * wx),
        _weighted_sum(rz, g) * c.tz + (c.ez - c.gz * wx * wy),
    )
    # q̇ = ½ q ⊗ (0, ω)
    hx, hy, hz = 0.5 * wx, 0.5 * wy, 0.5 * wz
    dq = (
        -(qx * hx + qy * hy + qz * hz),
        qw * hx + qy * hz - qz * hy,
        qw * hy - qx * hz + qz * hx,
        qw * hz + qx * hy - qy * hx,
    )
    dn = tuple((ci - ni) * c.inv_tau for ci, ni in zip(c.cmd, n, strict=True))
    return dq, dv, dw, dn


def _rk4(p: QuadrotorParams, s: Sequence[Tensor], u: _Inputs, dt: float) -> tuple[Tensor, ...]:
    """The 17 components after one RK4 step from components `s` (renormalized quaternion, clamped rpm)."""
    p0, q0, v0, w0, n0 = s[POS], s[QUAT], s[LIN_VEL], s[ANG_VEL], s[RPM]
    c = _coef(p, u)
    h2, h6 = 0.5 * dt, dt / 6.0

    def stage(h: float, k: _Groups) -> tuple[tuple[Tensor, ...], ...]:  # (q, v, w, n) + h k
        return tuple(
            tuple(x + h * d for x, d in zip(xs, ds, strict=True)) for xs, ds in zip((q0, v0, w0, n0), k, strict=True)
        )

    k1 = _deriv(p, c, q0, w0, n0)
    q2, v2, w2, n2 = stage(h2, k1)
    k2 = _deriv(p, c, q2, w2, n2)
    q3, v3, w3, n3 = stage(h2, k2)
    k3 = _deriv(p, c, q3, w3, n3)
    q4, v4, w4, n4 = stage(dt, k3)
    k4 = _deriv(p, c, q4, w4, n4)

    def combine(x0: Sequence[Tensor], a, b, cc, d) -> tuple[Tensor, ...]:  # x0 + dt/6 (a + 2b + 2c + d)
        return tuple(x + h6 * (ai + 2.0 * (bi + ci) + di) for x, ai, bi, ci, di in zip(x0, a, b, cc, d, strict=True))

    pos = combine(p0, v0, v2, v3, v4)  # ṗ = v at each stage
    quat = combine(q0, k1[0], k2[0], k3[0], k4[0])
    vel = combine(v0, k1[1], k2[1], k3[1], k4[1])
    ang = combine(w0, k1[2], k2[2], k3[2], k4[2])
    rpm = combine(n0, k1[3], k2[3], k3[3], k4[3])
    qw, qx, qy, qz = quat
    inv = torch.rsqrt(qw * qw + qx * qx + qy * qy + qz * qz)
    inv = torch.where(qw < 0, -inv, inv)  # one representative of ±q, as robolearn.core.math.quat_normalize
    quat = (qw * inv, qx * inv, qy * inv, qz * inv)
    rpm = tuple(r.clamp(p.rpm_min, p.rpm_max) for r in rpm)
    return (*pos, *quat, *vel, *ang, *rpm)


def _pack(comps: Sequence[Tensor], like: Tensor) -> Tensor:
    """Stack (N,) components into (N, 17) in the memory layout of `like` (row- or component-major)."""
    if like.dim() == 2 and like.stride(0) == 1 and like.shape[0] > 1:
        return torch.stack(tuple(comps), 0).T
    return torch.stack(tuple(comps), -1)


def state_derivative(
    state: Tensor, rpm_cmd: Tensor, params: QuadrotorParams, bp: BatchParams, force_ext: Tensor, torque_ext: Tensor
) -> Tensor:
    """Time derivative of the state (N, 17) for rotor commands `rpm_cmd` (N, 4) [rev/min] and external wrench."""
    s = state.unbind(-1)
    c = _coef(params, _inputs(rpm_cmd, bp, force_ext, torque_ext))
    dq, dv, dw, dn = _deriv(params, c, s[QUAT], s[ANG_VEL], s[RPM])
    return _pack((*s[LIN_VEL], *dq, *dv, *dw, *dn), state)


def rk4_step(
    state: Tensor,
    rpm_cmd: Tensor,
    params: QuadrotorParams,
    bp: BatchParams,
    force_ext: Tensor,
    torque_ext: Tensor,
    dt: float,
) -> Tensor:
    """One classic RK4 step of `dt` [s]; the quaternion is renormalized (w ≥ 0) and rpm clamped afterwards."""
    new = _rk4(params, state.unbind(-1), _inputs(rpm_cmd, bp, force_ext, torque_ext), dt)
    return _pack(new, state)


def _rk4_inplace(p: QuadrotorParams, s: tuple[Tensor, ...], u: _Inputs, dt: float) -> None:
    """`_rk4` written back into the 17 component views `s`; compiled, this is one loop with in-place stores."""
    for x, y in zip(s, _rk4(p, s, u, dt), strict=True):
        x.copy_(y)


def compile_options() -> dict[str, object]:
    """Inductor options for the fused step (each measured on a 2-core CPU at 1M envs).

    No cap on fusion size: one loop instead of ~15 with 4 MB intermediates (~4x); FMA contraction (~1.2x);
    vectorize despite the strided loads of a row-major (N, 4) command instead of a scalar loop (~3x).
    """
    from torch._inductor import config

    wanted = {
        "max_fusion_size": 1 << 20,
        "cpp.enable_floating_point_contract_flag": "fast",
        "cpp.enable_tiling_heuristics": False,
    }
    known = config.get_config_copy()
    return {k: v for k, v in wanted.items() if k in known}  # keys this torch version does not have are skipped


class QuadrotorSim:
    """N quadrotors stepped together with RK4; state, parameters and external wrench are batched tensors.

    `state`, `force_ext`, `torque_ext` and `bp.inertia` are (N, k) views of component-major (k, N) buffers, so
    that every component is contiguous and a compiled step is one vectorized loop that updates `state` in place.
    Index and assign them as usual (`sim.state[ids] = ...`, `sim.force_ext = f`); `.view()` on them does not
    work, `.reshape()` does. `rpm_cmd` may have any layout (a policy's row-major (N, 4) output is read in place).
    """

    def __init__(
        self,
        params: QuadrotorParams,
        num_envs: int,
        device: torch.device | str = "cpu",
        dt: float = 0.01,
        compile: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.params = params
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.dt = dt
        self.dtype = dtype
        self._state = _component_major(num_envs, STATE_DIM, self.device, dtype)
        self._state[:, 3] = 1.0  # identity attitude
        self._state[:, RPM] = params.hover_rpm
        self.bp = BatchParams.nominal(params, num_envs, self.device, dtype)
        wrench = _component_major(num_envs, 6, self.device, dtype)
        self._force_ext, self._torque_ext = wrench[:, :3], wrench[:, 3:]
        self.compiled = compile
        self._step = (
            torch.compile(_rk4_inplace, fullgraph=True, dynamic=False, options=compile_options())
            if compile
            else _rk4_inplace
        )

    def step(self, rpm_cmd: Tensor) -> None:
        """Advance all envs by `dt` with rotor commands `rpm_cmd` (N, 4) [rev/min] and the current external wrench.

        When `rpm_cmd` or the state carries an autograd graph, the step is differentiable (see `BatchedEnv.step_grad`).
        """
        u = _inputs(rpm_cmd, self.bp, self._force_ext, self._torque_ext)
        if torch.is_grad_enabled() and (rpm_cmd.requires_grad or self._state.requires_grad):
            # differentiable: a new state tensor instead of an in-place update, so autograd keeps the history
            self._state = _pack(_rk4(self.params, self._state.unbind(-1), u, self.dt), self._state)
        else:
            self._step(self.params, self._state.unbind(-1), u, self.dt)

    @property
    def state(self) -> Tensor:
        """(N, 17) pos(3) world [m] | quat(4) body->world (w, x, y, z) | lin_vel(3) world | ang_vel(3) body | rpm(4)."""
        return self._state

    @state.setter
    def state(self, value: Tensor) -> None:
        self._state.copy_(value)

    @property
    def force_ext(self) -> Tensor:
        """(N, 3) external force on the centre of mass, world frame [N]; assigning copies into the buffer."""
        return self._force_ext

    @force_ext.setter
    def force_ext(self, value: Tensor) -> None:
        self._force_ext.copy_(value)

    @property
    def torque_ext(self) -> Tensor:
        """(N, 3) external torque, body frame [N m]; assigning copies into the buffer."""
        return self._torque_ext

    @torque_ext.setter
    def torque_ext(self, value: Tensor) -> None:
        self._torque_ext.copy_(value)

    @property
    def pos(self) -> Tensor:
        """(N, 3) position, world [m] (a view)."""
        return self.state[:, POS]

    @property
    def quat(self) -> Tensor:
        """(N, 4) attitude body->world (w, x, y, z) (a view)."""
        return self.state[:, QUAT]

    @property
    def lin_vel(self) -> Tensor:
        """(N, 3) linear velocity, world [m/s] (a view)."""
        return self.state[:, LIN_VEL]

    @property
    def ang_vel(self) -> Tensor:
        """(N, 3) angular velocity, body [rad/s] (a view)."""
        return self.state[:, ANG_VEL]

    @property
    def rpm(self) -> Tensor:
        """(N, 4) actual rotor speeds [rev/min] (a view)."""
        return self.state[:, RPM]
