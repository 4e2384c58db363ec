"""A cascaded PD controller on the policy observation: the quadrotor tasks' scripted expert.

Position PD → desired acceleration → collective thrust along the body z-axis and a desired z-axis; attitude PD
on the axis error → body torques → per-rotor thrusts through the X-configuration mixer → normalized motor
commands (`rpm` mode). It uses only what the policy observes, so it can run on the drone as a baseline, produce
demonstrations, or warm-start a learner. No integrator: randomized mass/thrust leave a steady-state offset.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from robolearn.envs.quadrotor.env import rpm_for_thrust
from robolearn.sim.quadrotor import QuadrotorParams


@dataclass(kw_only=True)
class PDGains:
    """Gains of the cascaded controller (tuned against the 0.15 s motor lag)."""

    pos_p: float = 1.0
    """Position error → acceleration [1/s²]."""
    pos_d: float = 1.5
    """Velocity error → acceleration [1/s]."""
    att_p: float = 20.0
    """Attitude (z-axis) error → angular acceleration [1/s²]."""
    att_d: float = 6.0
    """Angular velocity → angular acceleration [1/s]."""
    yaw_d: float = 5.0
    """Yaw rate damping [1/s]."""
    max_tilt_acc: float = 6.0
    """Clamp of the horizontal acceleration command [m/s²] (keeps the commanded tilt moderate)."""


def pd_rpm_action(policy_obs: Tensor, p: QuadrotorParams, gains: PDGains | None = None) -> Tensor:
    """Normalized motor commands (N, 4) for `rpm` mode from the first 18 policy observation entries."""
    g = gains or PDGains()
    e, rot, v, w = policy_obs[:, 0:3], policy_obs[:, 3:12].reshape(-1, 3, 3), policy_obs[:, 12:15], policy_obs[:, 15:18]
    acc = -g.pos_p * e - g.pos_d * v
    horizontal = acc[:, :2]
    scale = (g.max_tilt_acc / horizontal.norm(dim=-1, keepdim=True).clamp_min(1e-9)).clamp(max=1.0)
    acc = torch.cat((horizontal * scale, acc[:, 2:]), -1)
    acc[:, 2] += p.gravity
    z_body = rot[:, :, 2]  # body z-axis in the world frame
    thrust = p.mass * (acc * z_body).sum(-1).clamp_min(0.0)
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
    return ((rpm - p.hover_rpm) / (p.rpm_max - p.hover_rpm)).clamp(-1.0, 1.0)
