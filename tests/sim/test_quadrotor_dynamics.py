"""Hand-computed checks of the batched quadrotor dynamics (CPU, a few envs, float64 unless stated)."""

from __future__ import annotations

import dataclasses
import math
import shutil

import pytest
import torch

from robolearn.core.errors import ConfigError
from robolearn.core.math import quat_from_axis_angle, quat_rotate, random_quat
from robolearn.sim.quadrotor import (
    ANG_VEL,
    CRAZYFLIE21,
    LIN_VEL,
    POS,
    QUAT,
    RPM,
    YAML_PATH,
    BatchParams,
    QuadrotorParams,
    QuadrotorSim,
    load_crazyflie21,
    params_from_yaml,
    rk4_step,
    state_derivative,
)

F64 = torch.float64
P = CRAZYFLIE21


def make_sim(n: int = 3, params: QuadrotorParams = P, dt: float = 0.01, dtype: torch.dtype = F64) -> QuadrotorSim:
    return QuadrotorSim(params, n, "cpu", dt=dt, dtype=dtype)


def run(sim: QuadrotorSim, cmd: torch.Tensor, seconds: float) -> None:
    for _ in range(round(seconds / sim.dt)):
        sim.step(cmd)


def deriv(sim: QuadrotorSim, cmd: torch.Tensor) -> torch.Tensor:
    return state_derivative(sim.state, cmd, sim.params, sim.bp, sim.force_ext, sim.torque_ext)


# (a) hover --------------------------------------------------------------------------------------------------------


def test_hover_rpm_matches_l2f():
    # L2F: hovering throttle sqrt(m g / 4 / 3.16e-10) = 14475.809 rpm, 0.667 of the 21702 rpm range
    assert P.hover_rpm == pytest.approx(14475.809152959684, rel=1e-9)
    assert P.hover_rpm / P.rpm_max == pytest.approx(0.6670265023020774, rel=1e-9)
    assert 4 * P.thrust(P.hover_rpm) == pytest.approx(P.mass * P.gravity, rel=1e-12)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-9), (torch.float32, 1e-3)])
def test_hover_stays_put_for_one_second(dtype, tol):
    sim = make_sim(dtype=dtype)
    sim.state[:, POS] = torch.tensor([0.5, -1.0, 2.0], dtype=dtype)
    cmd = torch.full((3, 4), P.hover_rpm, dtype=dtype)
    assert deriv(sim, cmd)[:, LIN_VEL.start :].abs().max() < 1e3 * tol  # accelerations, ω̇, ṅ
    run(sim, cmd, 1.0)
    torch.testing.assert_close(sim.pos, torch.tensor([[0.5, -1.0, 2.0]] * 3, dtype=dtype), atol=tol, rtol=0)
    assert sim.lin_vel.abs().max() < tol and sim.ang_vel.abs().max() < tol
    torch.testing.assert_close(sim.quat, torch.tensor([[1.0, 0, 0, 0]] * 3, dtype=dtype))
    torch.testing.assert_close(sim.rpm, cmd)


# (b) rotation -----------------------------------------------------------------------------------------------------


def test_torque_free_rotation_conserves_momentum_and_energy():
    params = dataclasses.replace(P, inertia=(1.0e-5, 2.0e-5, 3.5e-5))
    sim = make_sim(4, params)
    g = torch.Generator().manual_seed(0)
    sim.state[:, QUAT] = random_quat(4, math.pi, generator=g).to(F64)
    w0 = [[3.0, 1.0, -2.0], [0.3, 4.0, 0.5], [-5.0, 0.2, 1.0], [1.0, 1.0, 1.0]]  # [rad/s]
    sim.state[:, ANG_VEL] = torch.tensor(w0, dtype=F64)
    cmd = torch.full((4, 4), P.hover_rpm, dtype=F64)  # equal rotors: no rotor torque (roll, pitch and yaw cancel)
    J = torch.tensor(params.inertia, dtype=F64)

    def momentum_world() -> torch.Tensor:
        return quat_rotate(sim.quat, J * sim.ang_vel)  # L = R J ω

    def energy() -> torch.Tensor:
        return 0.5 * (J * sim.ang_vel**2).sum(-1)

    L0, E0 = momentum_world(), energy()
    run(sim, cmd, 1.0)
    # RK4 at dt = 0.01 s with |ω| up to 5 rad/s: relative drift ~1e-7 over 1 s
    torch.testing.assert_close(momentum_world(), L0, rtol=0, atol=1e-6 * L0.norm(dim=-1).max().item())
    torch.testing.assert_close(momentum_world().norm(dim=-1), L0.norm(dim=-1), rtol=1e-6, atol=0)
    torch.testing.assert_close(energy(), E0, rtol=1e-6, atol=0)
    assert not torch.allclose(sim.ang_vel, torch.zeros_like(sim.ang_vel))  # it did tumble


def test_constant_body_rate_integrates_to_axis_angle():
    # spin about a principal axis is steady: q(t) = q0 ⊗ exp(ω t / 2), here with q0 = identity
    sim = make_sim(3)
    axes = torch.eye(3, dtype=F64)
    sim.state[:, ANG_VEL] = 2.0 * axes
    run(sim, torch.full((3, 4), P.hover_rpm, dtype=F64), 1.0)
    expected = quat_from_axis_angle(axes, torch.full((3,), 2.0, dtype=F64))
    torch.testing.assert_close(sim.quat, expected, atol=1e-8, rtol=0)
    torch.testing.assert_close(sim.ang_vel, 2.0 * axes)


# (c) RK4 against closed forms -----------------------------------------------------------------------------------


def test_free_fall_is_exact():
    sim = make_sim(2)
    sim.state[:, POS] = torch.tensor([[0.0, 0.0, 10.0], [1.0, 2.0, 3.0]], dtype=F64)
    sim.state[:, LIN_VEL] = torch.tensor([[0.0, 0.0, 0.0], [0.5, -1.0, 2.0]], dtype=F64)
    sim.state[:, RPM] = 0.0
    x0, v0 = sim.pos.clone(), sim.lin_vel.clone()
    run(sim, torch.zeros(2, 4, dtype=F64), 1.0)  # rpm 0: no thrust (c0 = 0); RK4 is exact on a quadratic
    gvec = torch.tensor([0.0, 0.0, -P.gravity], dtype=F64)
    torch.testing.assert_close(sim.pos, x0 + v0 * 1.0 + 0.5 * gvec * 1.0**2, atol=1e-10, rtol=0)
    torch.testing.assert_close(sim.lin_vel, v0 + gvec * 1.0, atol=1e-10, rtol=0)


def test_motor_lag_is_first_order_with_rk4_accuracy():
    def error(dt: float) -> float:
        sim = make_sim(2, dt=dt)
        sim.state[:, RPM] = torch.tensor([[0.0] * 4, [P.rpm_max] * 4], dtype=F64)
        cmd = torch.full((2, 4), 12000.0, dtype=F64)
        n0 = sim.rpm.clone()
        run(sim, cmd, 0.3)
        exact = cmd + (n0 - cmd) * math.exp(-0.3 / P.motor_tau)
        return (sim.rpm - exact).abs().max().item()

    e1, e2 = error(0.01), error(0.005)
    assert e1 < 1e-6 * P.rpm_max
    assert 12.0 < e1 / e2 < 20.0  # fourth order: halving dt divides the error by ~16


def test_out_of_range_commands_act_as_the_limits():
    sims = [make_sim(1), make_sim(1)]
    run(sims[0], torch.tensor([[-5e3, 1e6, 1e6, -5e3]], dtype=F64), 0.5)
    run(sims[1], torch.tensor([[P.rpm_min, P.rpm_max, P.rpm_max, P.rpm_min]], dtype=F64), 0.5)
    torch.testing.assert_close(sims[0].state, sims[1].state, rtol=0, atol=0)
    assert sims[0].rpm.min() >= P.rpm_min and sims[0].rpm.max() <= P.rpm_max


# (d) geometry and signs -----------------------------------------------------------------------------------------

# Crazyflie motor order M1..M4: front right, back right, back left, front left (x forward, y left, z up)
ROLL_PITCH_YAW_SIGNS = [(-1, -1, -1), (-1, 1, 1), (1, 1, -1), (1, -1, 1)]


@pytest.mark.parametrize("rotor", range(4))
def test_single_rotor_torque_signs_and_magnitude(rotor):
    sim = make_sim(1)
    n_hover, dn = P.hover_rpm, 500.0
    sim.state[:, RPM] = n_hover
    sim.state[0, RPM.start + rotor] += dn
    d = deriv(sim, sim.rpm.clone())  # at steady motor state
    df = P.thrust(n_hover + dn) - P.thrust(n_hover)
    x, y, _ = P.rotor_positions[rotor]
    jx, jy, jz = P.inertia
    expected = torch.tensor([y * df / jx, -x * df / jy, P.rotor_directions[rotor] * P.torque_coef * df / jz], dtype=F64)
    torch.testing.assert_close(d[0, ANG_VEL], expected, rtol=1e-9, atol=0)
    assert tuple(int(s) for s in torch.sign(d[0, ANG_VEL]).tolist()) == ROLL_PITCH_YAW_SIGNS[rotor]
    assert d[0, LIN_VEL.start + 2] == pytest.approx(df / P.mass, rel=1e-9)  # net upward acceleration


def test_thrust_acts_along_rotated_body_z_and_external_wrench():
    sim = make_sim(2)
    x_axis = torch.tensor([1.0, 0, 0], dtype=F64)
    sim.state[0, QUAT] = quat_from_axis_angle(x_axis, torch.tensor(math.pi / 2, dtype=F64))
    sim.force_ext[1] = torch.tensor([0.01, -0.02, 0.0], dtype=F64)
    sim.torque_ext[1] = torch.tensor([1e-6, 2e-6, -3e-6], dtype=F64)
    d = deriv(sim, sim.rpm.clone())
    a_thrust = 4 * P.thrust(P.hover_rpm) / P.mass  # = g
    # rolled +90° about x: body z points along world -y
    torch.testing.assert_close(d[0, LIN_VEL], torch.tensor([0.0, -a_thrust, -P.gravity], dtype=F64), atol=1e-12, rtol=0)
    torch.testing.assert_close(d[1, LIN_VEL], torch.tensor([0.01, -0.02, 0.0], dtype=F64) / P.mass, atol=1e-12, rtol=0)
    J = torch.tensor(P.inertia, dtype=F64)
    torch.testing.assert_close(d[1, ANG_VEL], torch.tensor([1e-6, 2e-6, -3e-6], dtype=F64) / J, rtol=1e-12, atol=0)


def test_gyroscopic_term():
    params = dataclasses.replace(P, inertia=(1.0e-5, 2.0e-5, 4.0e-5))
    sim = make_sim(1, params)
    w = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    sim.state[0, ANG_VEL] = w
    d = deriv(sim, sim.rpm.clone())
    J = torch.tensor(params.inertia, dtype=F64)
    torch.testing.assert_close(d[0, ANG_VEL], -torch.linalg.cross(w, J * w) / J, rtol=1e-12, atol=0)


def test_step_matches_functional_rk4_in_both_layouts():
    sim = make_sim(5)
    g = torch.Generator().manual_seed(1)
    sim.state[:, QUAT] = random_quat(5, 1.0, generator=g).to(F64)
    sim.state[:, ANG_VEL] = torch.randn(5, 3, generator=g, dtype=F64)
    sim.state[:, LIN_VEL] = torch.randn(5, 3, generator=g, dtype=F64)
    cmd = P.hover_rpm * (1 + 0.1 * torch.randn(5, 4, generator=g, dtype=F64))
    row_major = sim.state.contiguous()
    out = rk4_step(row_major, cmd, P, sim.bp, sim.force_ext, sim.torque_ext, sim.dt)
    assert out.is_contiguous()
    state_ref = sim.state
    sim.step(cmd)
    assert sim.state.data_ptr() == state_ref.data_ptr()  # updated in place
    torch.testing.assert_close(sim.state, out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sim.quat.norm(dim=-1), torch.ones(5, dtype=F64))
    assert (sim.quat[:, 0] >= 0).all()


def test_views_write_through():
    sim = make_sim(2)
    sim.pos[1] = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    sim.force_ext = torch.ones(2, 3, dtype=F64)  # assignment copies into the buffer the step reads
    assert sim.state[1, 0:3].tolist() == [1.0, 2.0, 3.0]
    assert sim.force_ext.sum().item() == 6.0


# (e) parameter file ---------------------------------------------------------------------------------------------


def test_yaml_equals_embedded_fallback():
    assert YAML_PATH.is_file()
    assert params_from_yaml(YAML_PATH) == CRAZYFLIE21
    assert load_crazyflie21() == CRAZYFLIE21


def test_yaml_unknown_key_is_an_error(tmp_path):
    bad = tmp_path / "q.yaml"
    bad.write_text(YAML_PATH.read_text() + "\ndrag: 0.1\n")
    with pytest.raises(ConfigError, match="drag"):
        params_from_yaml(bad)


# (f) domain randomization ---------------------------------------------------------------------------------------


def test_randomize_changes_only_given_envs_within_range():
    n = 8
    bp = BatchParams.nominal(P, n, "cpu", F64)
    before = bp.as_tensor().clone()
    torch.testing.assert_close(before, torch.ones(n, 7, dtype=F64))
    g = torch.Generator().manual_seed(0)
    rel = {"mass": 0.1, "inertia": 0.1, "thrust": 0.1, "torque": 0.1, "motor_tau": 0.2}
    ids = torch.tensor([1, 5])
    bp.randomize_(P, ids, rel, lambda a, b: torch.rand(a, b, generator=g, dtype=F64))
    after = bp.as_tensor()
    others = torch.ones(n, dtype=torch.bool)
    others[ids] = False
    torch.testing.assert_close(after[others], before[others], rtol=0, atol=0)
    limits = torch.tensor([0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2], dtype=F64)
    assert ((after[ids] - 1).abs() <= limits).all()
    assert ((after[ids] - 1).abs() > 0).all()  # every named parameter moved
    with pytest.raises(ConfigError, match="drag"):
        bp.randomize_(P, ids, {"drag": 0.1}, lambda a, b: torch.rand(a, b, dtype=F64))


def test_randomized_params_act_on_dynamics():
    sim = make_sim(2)
    sim.bp.mass[1] = 2 * P.mass
    sim.bp.thrust_scale[1] = 2.0  # twice the mass, twice the thrust: still hovers
    sim.bp.mass[0] = 0.5 * P.mass  # half the mass: accelerates up at g
    d = deriv(sim, sim.rpm.clone())
    torch.testing.assert_close(d[:, LIN_VEL.start + 2], torch.tensor([P.gravity, 0.0], dtype=F64), atol=1e-12, rtol=0)


# (g) compiled == eager ------------------------------------------------------------------------------------------


@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")), reason="torch.compile on CPU needs g++")
def test_compiled_step_matches_eager():
    n = 64
    g = torch.Generator().manual_seed(2)
    sims = [QuadrotorSim(P, n, "cpu", compile=c) for c in (False, True)]
    q = random_quat(n, 0.5, generator=g)
    w = torch.randn(n, 3, generator=g)
    cmd = P.hover_rpm * (1 + 0.1 * torch.randn(n, 4, generator=g))  # row-major, as a policy outputs it
    for sim in sims:
        sim.state[:, QUAT] = q
        sim.state[:, ANG_VEL] = w
        sim.torque_ext[:, 0] = 1e-6
        for _ in range(5):
            sim.step(cmd)
    torch.testing.assert_close(sims[1].state, sims[0].state, rtol=1e-5, atol=1e-5)
