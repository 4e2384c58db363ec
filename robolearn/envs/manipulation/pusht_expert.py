"""Scripted Push-T expert: closed-loop quasi-static pushing, replanned every step from the state alone.

The physics it plans with is the task's (`sim_assets/pusht/README.md`): frictionless disc–block contacts and a
block that stops when it is not pushed (quasi-static), so pushing with unit displacement along the inward normal
n at a point r (relative to the block's centre of gravity) moves the block by J n and turns it by J (r × n) / ρ²,
with J = 1 / (1 + k²), k = (r × n) / ρ and ρ² = I / m (mass-normalized inertia).

Each step, for every candidate contact point on the T's boundary (a fixed set of points on its ten edges, in the
block's frame):
  1. progress: how much one push there reduces the pose error d = (Δcog, ρ Δangle) in the weighted twist norm,
     w · d / |w| with w = (n, k) (zero if the push moves the block away from the goal);
  2. travel: the candidate is discounted by exp(−distance to its approach point / 0.15 m), and the contact the
     pusher is already engaged with counts double (hysteresis without memory);
  3. reach: a candidate counts only if its approach point, and the travel circle's point on that side of the
     block, lie inside the workspace (a block pressed against a wall cannot be reached from the wall's side);
  4. the best candidate is pushed: if the pusher is at its approach point, the target is `depth` inside the
     block along −normal (depth ∝ the optimal push length w · d, clipped); otherwise the pusher travels to the
     approach point (R + 1 cm outside the contact), going around the block on a circle about its centre when the
     straight path would touch it — the short way round, unless that arc leaves the workspace more than the long
     way does.
Works on gym-pusht's 5-D state (metres/radians, this task's frame); one call handles any number of envs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from robolearn.envs.manipulation.pusht import AGENT_RADIUS, BAR, COG, GOAL_POSE, HALF_WORKSPACE, STEM, _rot

RHO = math.sqrt(0.003 / 1.0)
"""Radius of gyration of the block: sqrt(I / m) [m] (sim_assets/pusht: I = 0.003 kg m², m = 1 kg)."""
CLEARANCE = 0.01
"""Approach point: this far outside contact (pusher surface to block surface) [m]."""
SAFE_RADIUS = 0.077 + AGENT_RADIUS + 0.012
"""Travel circle about the block's centre: its farthest corner (77 mm) + pusher + margin [m]."""
TRAVEL_SCALE = 0.15
"""Candidates are discounted by exp(−travel / this) [m]."""
ENGAGED_BONUS = 2.0
"""The contact the pusher is at counts this much more (switching needs a clearly better push elsewhere)."""
MAX_DEPTH = 0.03
"""Largest push per step: target this far inside the contact [m]."""


def _candidates() -> tuple[Tensor, Tensor]:
    """Contact points (C, 2) relative to the centre of gravity and their outward normals (C, 2), block frame.

    Points where the pusher disc cannot touch the face (the two inner corners under the bar) are left out.
    """
    r = AGENT_RADIUS
    bx, by, bhx, bhy = BAR[0] - COG[0], BAR[1] - COG[1], BAR[2], BAR[3]
    sx, sy, shx, shy = STEM[0] - COG[0], STEM[1] - COG[1], STEM[2], STEM[3]
    top, under, bottom = by + bhy, by - bhy, sy - shy
    pts: list[tuple[float, float, float, float]] = []

    def edge(x0: float, y0: float, x1: float, y1: float, nx: float, ny: float, step: float = 0.006) -> None:
        length = math.hypot(x1 - x0, y1 - y0)
        count = max(1, int(length / step))
        for i in range(count + 1):
            t = i / count
            pts.append((x0 + t * (x1 - x0), y0 + t * (y1 - y0), nx, ny))

    inset = 0.003  # stay off the convex corners (ambiguous normal)
    edge(bx - bhx + inset, top, bx + bhx - inset, top, 0.0, 1.0)  # bar top
    edge(bx - bhx, under + inset, bx - bhx, top - inset, -1.0, 0.0)  # bar left end
    edge(bx + bhx, under + inset, bx + bhx, top - inset, 1.0, 0.0)  # bar right end
    gap = r + 0.006  # the pusher at an approach point in an inner corner stays this far from the other face
    edge(sx + shx + gap, under, bx + bhx - inset, under, 0.0, -1.0)  # under the bar, right of the stem
    edge(bx - bhx + inset, under, sx - shx - gap, under, 0.0, -1.0)  # under the bar, left of the stem
    edge(sx + shx, bottom + inset, sx + shx, under - gap, 1.0, 0.0)  # stem right side
    edge(sx - shx, bottom + inset, sx - shx, under - gap, -1.0, 0.0)  # stem left side
    edge(sx - shx + inset, bottom, sx + shx - inset, bottom, 0.0, -1.0)  # stem bottom
    t = torch.tensor(pts)
    return t[:, :2], t[:, 2:]


_POINTS, _NORMALS = _candidates()


def tee_sdf(points: Tensor) -> Tensor:
    """Distance (...,) from points (..., 2) in the block's centre-of-gravity frame to the T (negative inside)."""
    out = None
    for cx, cy, hx, hy in (BAR, STEM):
        q = (points - torch.tensor((cx - COG[0], cy - COG[1]), device=points.device)).abs()
        q = q - torch.tensor((hx, hy), device=points.device)
        d = q.clamp_min(0).norm(dim=-1) + q.amax(-1).clamp_max(0)
        out = d if out is None else torch.minimum(out, d)
    return out


def _wrap(a: Tensor) -> Tensor:
    return torch.remainder(a + math.pi, 2 * math.pi) - math.pi


def expert_action(state: Tensor) -> Tensor:
    """Normalized action (N, 2) from the state (N, 5): agent x, y, block reference x, y, angle [m, rad]."""
    dev = state.device
    pts, nrm = _POINTS.to(dev), _NORMALS.to(dev)
    cog_local = torch.tensor(COG, device=dev)
    agent, ref, angle = state[:, :2], state[:, 2:4], state[:, 4]
    rot = _rot(angle)  # (N, 2, 2) block → world
    cog = ref + rot @ cog_local
    goal = torch.tensor(GOAL_POSE, device=dev)
    goal_cog = goal[:2] + _rot(goal[2]) @ cog_local
    e_pos = goal_cog - cog  # (N, 2)
    e_ang = _wrap(goal[2] - angle)  # (N,)

    # ---- score every candidate push ---------------------------------------------------------------
    force = -nrm  # push direction (into the block), block frame
    k = (pts[:, 0] * force[:, 1] - pts[:, 1] * force[:, 0]) / RHO  # (C,) (r × n) / ρ
    force_w = torch.einsum("nij,cj->nci", rot, force)  # (N, C, 2)
    dot = (force_w * e_pos[:, None]).sum(-1) + k * RHO * e_ang[:, None]  # w · d, (N, C)
    progress = dot.clamp_min(0) / torch.sqrt(1 + k * k)
    contact_w = cog[:, None] + torch.einsum("nij,cj->nci", rot, pts)  # (N, C, 2)
    normal_w = torch.einsum("nij,cj->nci", rot, nrm)
    approach = contact_w + normal_w * (AGENT_RADIUS + CLEARANCE)
    rel = agent[:, None] - contact_w
    s_n = (rel * normal_w).sum(-1)  # pusher centre along the outward normal
    tangent_w = torch.stack((-normal_w[..., 1], normal_w[..., 0]), -1)
    s_t = (rel * tangent_w).sum(-1)
    engaged = (s_t.abs() < 0.004) & (s_n < AGENT_RADIUS + CLEARANCE + 0.004) & (s_n > AGENT_RADIUS - 0.012)
    travel = (approach - agent[:, None]).norm(dim=-1)
    # reachable: the approach point, and the travel circle's point on its side of the block (where the pusher
    # comes in from), lie inside the workspace (the pusher cannot go round a block pressed against a wall)
    bearing = approach - cog[:, None]
    entry = cog[:, None] + SAFE_RADIUS * bearing / bearing.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    reachable = (approach.abs() < HALF_WORKSPACE - 0.005).all(-1) & (entry.abs() < HALF_WORKSPACE).all(-1)
    score = progress * torch.where(engaged, ENGAGED_BONUS, torch.exp(-travel / TRAVEL_SCALE)) * reachable
    best = score.argmax(-1)  # (N,)
    idx = torch.arange(len(state), device=dev)
    c_w, n_w, a_w = contact_w[idx, best], normal_w[idx, best], approach[idx, best]
    push_len = dot[idx, best].clamp_min(0)

    # ---- push when engaged ------------------------------------------------------------------------
    depth = (1.5 * push_len).clamp(0.002, MAX_DEPTH)
    push_target = c_w + n_w * (AGENT_RADIUS - depth[:, None])

    # ---- otherwise travel to the approach point, around the block when the straight path touches it --------
    ts = torch.linspace(0.0, 0.85, 12, device=dev)
    path = agent[:, None] + ts[None, :, None] * (a_w - agent)[:, None]  # (N, 12, 2)
    path_local = torch.einsum("nji,nkj->nki", rot, path - cog[:, None])  # Rᵀ (p − cog)
    # within 2 cm of the approach point go straight (no detour/straight dithering at an inner corner)
    blocked = (tee_sdf(path_local) < AGENT_RADIUS + 0.003).any(-1) & ((a_w - agent).norm(dim=-1) > 0.02)
    from_cog = agent - cog
    radius = from_cog.norm(dim=-1).clamp_min(1e-6)
    phi_p = torch.atan2(from_cog[:, 1], from_cog[:, 0])
    to_a = a_w - cog
    phi_a = torch.atan2(to_a[:, 1], to_a[:, 0])
    # go round the way whose arc stays inside the workspace (the short way if both do)
    short = _wrap(phi_a - phi_p)
    long = short - torch.sign(short) * 2 * math.pi
    frac = torch.linspace(0.0, 1.0, 9, device=dev)

    def arc_outside(arc: Tensor) -> Tensor:
        """How far the arc leaves the workspace: the sum over 9 points of their distance outside [m]."""
        angles = phi_p[:, None] + frac * arc[:, None]  # (N, 9)
        pts = cog[:, None] + SAFE_RADIUS * torch.stack((torch.cos(angles), torch.sin(angles)), -1)
        return (pts.abs() - HALF_WORKSPACE).clamp_min(0).sum((-1, -2))

    arc = torch.where(arc_outside(long) < arc_outside(short) - 1e-3, long, short)
    step = arc.clamp(-0.6, 0.6)
    phi = phi_p + step
    around = cog + SAFE_RADIUS * torch.stack((torch.cos(phi), torch.sin(phi)), -1)
    # inside the travel circle: move out along the ray from the centre (radially) while turning less
    out = cog + SAFE_RADIUS * torch.stack((torch.cos(phi_p + 0.3 * step), torch.sin(phi_p + 0.3 * step)), -1)
    detour = torch.where((radius < SAFE_RADIUS - 0.01)[:, None], out, around)
    travel_target = torch.where(blocked[:, None], detour, a_w)

    is_engaged = engaged[idx, best]
    target = torch.where(is_engaged[:, None], push_target, travel_target)
    return (target / HALF_WORKSPACE).clamp(-1.0, 1.0)
