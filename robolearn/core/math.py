"""Rotation math on batched tensors. Quaternions are (w, x, y, z), Hamilton convention, body-to-world."""

from __future__ import annotations

import torch
from torch import Tensor


def quat_mul(q: Tensor, r: Tensor) -> Tensor:
    """Hamilton product q ⊗ r, (..., 4)."""
    w1, x1, y1, z1 = q.unbind(-1)
    w2, x2, y2, z2 = r.unbind(-1)
    return torch.stack(
        (
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ),
        -1,
    )


def quat_conjugate(q: Tensor) -> Tensor:
    """Inverse of a unit quaternion."""
    return torch.cat((q[..., :1], -q[..., 1:]), -1)


def quat_normalize(q: Tensor) -> Tensor:
    """Unit quaternion with non-negative w (one representative of ±q)."""
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return torch.where(q[..., :1] < 0, -q, q)


def quat_to_rotmat(q: Tensor) -> Tensor:
    """Rotation matrix (..., 3, 3) that maps body vectors to world vectors."""
    w, x, y, z = q.unbind(-1)
    xx, yy, zz = x * x, y * y, z * z
    xy, xz, yz, wx, wy, wz = x * y, x * z, y * z, w * x, w * y, w * z
    return torch.stack(
        (
            1 - 2 * (yy + zz), 2 * (xy - wz), 2 * (xz + wy),
            2 * (xy + wz), 1 - 2 * (xx + zz), 2 * (yz - wx),
            2 * (xz - wy), 2 * (yz + wx), 1 - 2 * (xx + yy),
        ),
        -1,
    ).reshape(*q.shape[:-1], 3, 3)  # fmt: skip


def quat_rotate(q: Tensor, v: Tensor) -> Tensor:
    """Rotate body-frame vectors v (..., 3) into the world frame."""
    qv = q[..., 1:]
    t = 2.0 * torch.linalg.cross(qv, v)
    return v + q[..., :1] * t + torch.linalg.cross(qv, t)


def quat_rotate_inverse(q: Tensor, v: Tensor) -> Tensor:
    """Rotate world-frame vectors v (..., 3) into the body frame."""
    return quat_rotate(quat_conjugate(q), v)


def quat_from_axis_angle(axis: Tensor, angle: Tensor) -> Tensor:
    """Quaternion for a rotation by `angle` (...,) [rad] about unit `axis` (..., 3)."""
    half = 0.5 * angle.unsqueeze(-1)
    return torch.cat((torch.cos(half), axis * torch.sin(half)), -1)


def quat_from_euler_xyz(roll: Tensor, pitch: Tensor, yaw: Tensor) -> Tensor:
    """Quaternion from intrinsic Z-Y-X (yaw, then pitch, then roll) Euler angles [rad]."""
    cr, sr = torch.cos(roll * 0.5), torch.sin(roll * 0.5)
    cp, sp = torch.cos(pitch * 0.5), torch.sin(pitch * 0.5)
    cy, sy = torch.cos(yaw * 0.5), torch.sin(yaw * 0.5)
    return torch.stack(
        (
            cr * cp * cy + sr * sp * sy,
            sr * cp * cy - cr * sp * sy,
            cr * sp * cy + sr * cp * sy,
            cr * cp * sy - sr * sp * cy,
        ),
        -1,
    )


def euler_xyz_from_quat(q: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Roll, pitch, yaw [rad] of a quaternion (inverse of `quat_from_euler_xyz`)."""
    w, x, y, z = q.unbind(-1)
    roll = torch.atan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = torch.asin((2 * (w * y - z * x)).clamp(-1.0, 1.0))
    yaw = torch.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return roll, pitch, yaw


def random_quat(n: int, max_angle: float | Tensor, generator: torch.Generator | None = None, device=None) -> Tensor:
    """N rotations about uniformly random axes by angles uniform in [0, max_angle] [rad]."""
    axis = torch.randn(n, 3, generator=generator, device=device)
    axis = axis / axis.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    angle = torch.rand(n, generator=generator, device=device) * max_angle
    return quat_from_axis_angle(axis, angle)


def tilt_angle(q: Tensor) -> Tensor:
    """Angle [rad] between the body z-axis and world up."""
    w, x, y, z = q.unbind(-1)
    cos_tilt = 1 - 2 * (x * x + y * y)
    return torch.acos(cos_tilt.clamp(-1.0, 1.0))
