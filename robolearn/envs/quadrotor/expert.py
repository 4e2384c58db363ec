"""A cascaded PD controller on the policy observation: the quadrotor tasks' scripted expert.

Position PD → desired acceleration → collective thrust along the body z-axis and a desired z-axis; attitude PD
on the axis error → body torques → per-rotor thrusts through the X-configuration mixer → normalized motor
commands (`rpm` mode). The motors lag the commands by τ = 0.15 s, slower than the attitude dynamics, so the rotor
speeds are estimated from the action history (which the policy observes) and the lag is inverted: the command is
the one that reaches the desired speeds in one control period, clamped to the motor range. Without the inversion
the attitude loop must stay slow (att_p ≈ 20) and 57 % of the default hover starts crash; with it and a thrust
floor that keeps torque authority near 90° tilt, about 1 % (99 % end within 5 cm).
It uses only what the policy observes, so it can run on the drone as a baseline, produce demonstrations, or
warm-start a learner. Randomized mass/thrust and the episode's external force leave a steady-state offset of a
few cm unless the task observes `pos_error_integral` (`pos_error_integral: true`); then the position loop is a PID.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from robolearn.envs.quadrotor.env import rpm_for_thrust
from robolearn.sim.quadrotor import QuadrotorParams


@dataclass(kw_only=True)
class PDGains:
    """Gains of the cascaded controller; the lag inversion lets the attitude loop run far faster than the motors."""

    pos_p: float = 8.0
    """Position error → acceleration [1/s²]."""
    pos_d: float = 5.0
    """Velocity error → acceleration [1/s]."""
    pos_i: float = 4.0
    """Integral of the position error → acceleration [1/s³], used when the observation has `pos_error_integral`
    (the loop s³ + pos_d s² + pos_p s + pos_i is stable for pos_i < pos_d · pos_p)."""
    att_p: float = 400.0
    """Attitude (z-axis) error → angular acceleration [1/s²]."""
    att_d: float = 40.0
    """Angular velocity → angular acceleration [1/s]."""
    yaw_d: float = 5.0
    """Yaw rate damping [1/s]."""
    max_tilt_acc: float = 20.0
    """Clamp of the horizontal acceleration command [m/s²] (keeps the commanded tilt moderate)."""
    min_thrust: float = 0.8
    """Collective thrust floor as a fraction of the weight: near 90° tilt the projected thrust is ~0, and with all
    rotors at their minimum no differential thrust (torque) is left to right the drone."""
    lag_compensation: bool = True
    """Invert the first-order motor lag: estimate the rotor speeds from the action history (the policy observes it)
    and command the step that reaches the desired speeds in one control period, within the motor's range."""
    dt: float = 0.01
    """Control period [s] (for the lag inversion)."""


def pd_rpm_action(policy_obs: Tensor, p: QuadrotorParams, gains: PDGains | None = None,
                  integral: bool = False) -> Tensor:
    """Normalized motor commands (N, 4) for `rpm` mode from the policy observation.

    The observation holds pos_error, rotation_matrix, lin_vel, ang_vel, pos_error_integral (if `integral`),
    action_history.
    """
    g = gains or PDGains()
    e, rot, v, w = policy_obs[:, 0:3], policy_obs[:, 3:12].reshape(-1, 3, 3), policy_obs[:, 12:15], policy_obs[:, 15:18]
    acc = -g.pos_p * e - g.pos_d * v
    if integral:
        acc = acc - g.pos_i * policy_obs[:, 18:21]
    horizontal = acc[:, :2]
    scale = (g.max_tilt_acc / horizontal.norm(dim=-1, keepdim=True).clamp_min(1e-9)).clamp(max=1.0)
    acc = torch.cat((horizontal * scale, acc[:, 2:]), -1)
    acc[:, 2] += p.gravity
    z_body = rot[:, :, 2]  # body z-axis in the world frame
    thrust = p.mass * (acc * z_body).sum(-1).clamp_min(g.min_thrust * p.gravity)
    z_des = acc / acc.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    err_world = torch.linalg.cross(z_body, z_des)
    err_body = torch.einsum("nji,nj->ni", rot, err_world)
    inertia = torch.tensor(p.inertia, device=policy_obs.device)
    tau = inertia * torch.cat((g.att_p * err_body[:, :2] - g.att_d * w[:, :2], -g.yaw_d * w[:, 2:]), -1)
    pos = torch.tensor(p.rotor_positions, device=policy_obs.device)
    dirs = torch.tensor(p.rotor_directions, device=policy_obs.device)
    # solve Σf = T, Σ y_i f_i = τx, −Σ x_i f_i = τy, Σ d_i k f_i = τz for the four rotor thrusts
    mixer = torch.stack((torch.ones(4, device=pos.device), pos[:, 1], -pos[:, 0], dirs * p.torque_coef))
    f = torch.linalg.solve(mixer, torch.cat((thrust.unsqueeze(-1), tau), -1).T).T
    rpm = rpm_for_thrust(p, f.clamp_min(0.0))
    scale = p.rpm_max - p.hover_rpm
    if g.lag_compensation:
        # rotor speeds now: replay the lag n ← n + α (cmd − n), α = 1 − e^(−dt/τ), over the history, oldest first
        alpha = 1.0 - math.exp(-g.dt / p.motor_tau)
        hist = policy_obs[:, 21 if integral else 18:].reshape(policy_obs.shape[0], -1, 4)
        n = torch.full_like(rpm, p.hover_rpm)
        for k in range(hist.shape[1] - 1, -1, -1):
            cmd = (p.hover_rpm + scale * hist[:, k]).clamp(p.rpm_min, p.rpm_max)
            n = n + alpha * (cmd - n)
        rpm = n + (rpm - n) / alpha
    return ((rpm - p.hover_rpm) / scale).clamp(-1.0, 1.0)
