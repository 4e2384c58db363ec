"""Scripted experts of the bimanual tasks, in the manner of ACT's: TCP waypoints through IK.

As in ACT (`scripted_policy.py`), each episode follows a fixed schedule of end-effector waypoints (time in policy
steps, TCP position and orientation, gripper opening) planned from the objects' start poses, which the expert reads
from the privileged state (`env.object_init`). Where ACT replays its waypoints open loop through mocap bodies, this
expert tracks them with joint targets from damped-least-squares IK on the real arm (one IK step per policy step,
closed on the measured TCP pose), and corrects the last centimetres from the objects' current poses: the left arm
grasps the cube where the right arm actually holds it, and the peg is steered onto the socket's actual bore.

Outputs ACT's action space (`action_mode: joint_pos`): 6 joint targets and the normalized gripper per arm.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from robolearn.core.types import Obs
from robolearn.envs.manipulation.bimanual import rotation_error

if TYPE_CHECKING:
    from robolearn.envs.manipulation.bimanual import BimanualEnv

MAX_STEP_POS = 0.03
"""Largest TCP correction asked of the IK per policy step [m] (keeps the linearization valid)."""
MAX_STEP_ROT = 0.25
"""Largest TCP rotation asked of the IK per policy step [rad]."""


def _quat(rot: list[list[float]]) -> tuple[float, float, float, float]:
    """(w, x, y, z) of a rotation matrix given by rows (Shepperd's method: from the largest component)."""
    (m00, m01, m02), (m10, m11, m12), (m20, m21, m22) = rot
    four = [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22]  # 4 w², 4 x², ...
    i = max(range(4), key=lambda k: four[k])
    r = math.sqrt(four[i]) / 2
    pairs = (m21 - m12, m02 - m20, m10 - m01, m21 + m12, m02 + m20, m10 + m01)  # 4 w x, 4 w y, 4 w z, 4 y z, ...
    if i == 0:
        q = (r, pairs[0] / (4 * r), pairs[1] / (4 * r), pairs[2] / (4 * r))
    elif i == 1:
        q = (pairs[0] / (4 * r), r, pairs[5] / (4 * r), pairs[4] / (4 * r))
    elif i == 2:
        q = (pairs[1] / (4 * r), pairs[5] / (4 * r), r, pairs[3] / (4 * r))
    else:
        q = (pairs[2] / (4 * r), pairs[4] / (4 * r), pairs[3] / (4 * r), r)
    return q


def _from_axes(x: tuple[float, ...], y: tuple[float, ...], z: tuple[float, ...]) -> tuple[float, float, float, float]:
    """Quaternion of the TCP frame whose approach (x), finger-opening (y) and z axes point along the given vectors."""
    return _quat([[x[i], y[i], z[i]] for i in range(3)])


# TCP orientations (world frame): x is the approach direction, y the direction the fingers open along
LEFT_HOME = _from_axes((1, 0, 0), (0, 1, 0), (0, 0, 1))
RIGHT_HOME = _from_axes((-1, 0, 0), (0, -1, 0), (0, 0, 1))
LEFT_DOWN = _from_axes((0, 0, -1), (0, 1, 0), (1, 0, 0))
"""Pointing down, fingers closing along y (grasps objects lying along x)."""
RIGHT_DOWN = _from_axes((0, 0, -1), (0, -1, 0), (-1, 0, 0))
LEFT_SIDE = _from_axes((1, 0, 0), (0, 0, 1), (0, -1, 0))
"""Approaching along +x with the fingers closing vertically (takes the cube from the right gripper)."""
LEFT_HOME_POS = (-0.225, 0.0, 0.294)
RIGHT_HOME_POS = (0.225, 0.0, 0.294)
"""TCP positions at ACT's start pose [m] (where every plan starts)."""


class Plan:
    """Waypoints of both arms: time [steps] -> per env TCP position (N, 3), quaternion (4,) or (N, 4), gripper."""

    def __init__(self, n: int, device: torch.device) -> None:
        self.n, self.device = n, device
        self.times: list[float] = []
        self.pos: list[Tensor] = []  # (N, 2, 3)
        self.quat: list[Tensor] = []  # (N, 2, 4)
        self.grip: list[Tensor] = []  # (N, 2)

    def add(self, t: float, left: tuple, right: tuple) -> None:
        """Waypoint at step `t`: (pos, quat, gripper) of the left and the right arm."""
        def full(x: object, d: int) -> Tensor:
            v = torch.as_tensor(x, dtype=torch.float32, device=self.device)
            return v.expand(self.n, d) if v.dim() <= 1 else v

        self.times.append(float(t))
        self.pos.append(torch.stack((full(left[0], 3), full(right[0], 3)), 1))
        self.quat.append(torch.stack((full(left[1], 4), full(right[1], 4)), 1))
        self.grip.append(torch.stack((full(left[2], 1)[:, 0], full(right[2], 1)[:, 0]), 1))

    def at(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Linear interpolation at per-env step `t` (N,): TCP positions (N, 2, 3), quaternions (N, 2, 4), grippers."""
        times = torch.tensor(self.times, device=self.device)
        t = t.clamp(times[0], times[-1])
        k = (torch.searchsorted(times, t, right=True) - 1).clamp(0, len(self.times) - 2)  # segment (N,)
        s = ((t - times[k]) / (times[k + 1] - times[k])).clamp(0.0, 1.0)
        rows = torch.arange(self.n, device=self.device)

        def lerp(vals: list[Tensor]) -> Tensor:
            v = torch.stack(vals, 1)  # (N, K, ...)
            a, b = v[rows, k], v[rows, k + 1]
            w = s.view(-1, *[1] * (a.dim() - 1))
            return a + (b - a) * w

        q0, q1 = torch.stack(self.quat, 1)[rows, k], torch.stack(self.quat, 1)[rows, k + 1]
        q1 = torch.where(((q0 * q1).sum(-1, keepdim=True) < 0), -q1, q1)  # shortest way round
        q = q0 + (q1 - q0) * s.view(-1, 1, 1)
        return lerp(self.pos), q / q.norm(dim=-1, keepdim=True), lerp(self.grip)


def track(env: BimanualEnv, pos: Tensor, quat: Tensor, grip: Tensor) -> Tensor:
    """joint_pos action (N, 14) moving both TCPs towards (pos (N, 2, 3), quat (N, 2, 4)) with grippers (N, 2)."""
    tcp, tcp_q = env.tcp_pos, env.tcp_quat()
    targets = []
    for arm in range(2):
        dpos = pos[:, arm] - tcp[:, arm]
        dpos = dpos * (MAX_STEP_POS / dpos.norm(dim=-1, keepdim=True).clamp_min(MAX_STEP_POS))
        drot = rotation_error(quat[:, arm], tcp_q[:, arm])
        drot = drot * (MAX_STEP_ROT / drot.norm(dim=-1, keepdim=True).clamp_min(MAX_STEP_ROT))
        targets.append(env.ik_step(arm, dpos, drot))
    return env.joints_to_action(torch.cat(targets, -1), grip)


def expert_action(env: BimanualEnv, obs: Obs) -> Tensor:
    """The expert's joint_pos action (N, 14) for the env's task at each env's current step."""
    from robolearn.envs.manipulation.bimanual import InsertionEnv, TransferCubeEnv

    t = env.episode_length.float()
    if isinstance(env, TransferCubeEnv):
        return track(env, *transfer_cube_targets(env, t))
    if isinstance(env, InsertionEnv):
        return track(env, *insertion_targets(env, t))
    raise TypeError(f"{env.spec.name}: no scripted expert")


# ---------------------------------------------------------------------------------------------------
MEET = (0.03, 0.0, 0.2)
"""transfer-cube: where the right arm brings the cube's centre for the handover [m]."""
GRASP_DZ = 0.012
"""transfer-cube: the right TCP this far above the cube's centre (the pads reach down to 3 mm above the table)."""
LEFT_DX = -0.008
"""transfer-cube: the left TCP this far behind the cube's centre along x (its pads on the cube's top and bottom)."""


def transfer_cube_targets(env: BimanualEnv, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Waypoints of ACT's transfer-cube expert: the right arm picks and lifts, the left takes it at `MEET`."""
    n, dev = env.num_envs, env.device
    c0 = env.object_init[:, 0, :3]
    up = torch.tensor([0.0, 0.0, 1.0], device=dev)
    meet = torch.tensor(MEET, device=dev)
    r_grasp = c0 + GRASP_DZ * up
    r_meet = meet + GRASP_DZ * up
    l_wait = meet + torch.tensor([-0.13, 0.0, 0.0], device=dev)
    l_take = meet + torch.tensor([LEFT_DX, 0.0, 0.0], device=dev)
    plan = Plan(n, dev)
    #        step  left (pos, quat, gripper)            right (pos, quat, gripper)
    plan.add(0, (LEFT_HOME_POS, LEFT_HOME, 1.0), (RIGHT_HOME_POS, RIGHT_HOME, 1.0))
    plan.add(50, (LEFT_HOME_POS, LEFT_HOME, 1.0), (c0 + 0.1 * up, RIGHT_DOWN, 1.0))  # above the cube
    plan.add(90, (l_wait, LEFT_SIDE, 0.8), (r_grasp, RIGHT_DOWN, 1.0))  # down to it
    plan.add(110, (l_wait, LEFT_SIDE, 0.8), (r_grasp, RIGHT_DOWN, 0.0))  # close
    plan.add(125, (l_wait, LEFT_SIDE, 0.8), (r_grasp, RIGHT_DOWN, 0.0))
    plan.add(150, (l_wait, LEFT_SIDE, 0.8), (r_grasp + 0.08 * up, RIGHT_DOWN, 0.0))  # lift straight up
    plan.add(195, (l_wait, LEFT_SIDE, 0.8), (r_meet, RIGHT_DOWN, 0.0))  # to the meeting point
    plan.add(205, (l_wait, LEFT_SIDE, 0.8), (r_meet, RIGHT_DOWN, 0.0))
    plan.add(240, (l_take, LEFT_SIDE, 0.8), (r_meet, RIGHT_DOWN, 0.0))  # left around the cube
    plan.add(260, (l_take, LEFT_SIDE, 0.0), (r_meet, RIGHT_DOWN, 0.0))  # left closes
    plan.add(275, (l_take, LEFT_SIDE, 0.0), (r_meet, RIGHT_DOWN, 0.0))
    plan.add(290, (l_take, LEFT_SIDE, 0.0), (r_meet, RIGHT_DOWN, 1.0))  # right lets go
    retreat = r_meet + torch.tensor([0.1, 0.0, 0.1], device=dev)
    plan.add(325, (l_take + 0.03 * up, LEFT_SIDE, 0.0), (retreat, RIGHT_DOWN, 1.0))
    plan.add(400, (l_take + 0.03 * up, LEFT_SIDE, 0.0), (retreat, RIGHT_DOWN, 1.0))
    pos, quat, grip = plan.at(t)
    # closing in on the cube, the left arm aims at where the cube actually is in the right gripper
    cube = env.object_pos(0)
    approach = (t >= 205) & (t < 260)
    offset = cube - meet
    pos[:, 0] = torch.where(approach[:, None], pos[:, 0] + offset, pos[:, 0])
    return pos, quat, grip


# ---------------------------------------------------------------------------------------------------
PEG_GRASP_DX = 0.0
"""insertion: the right arm holds the peg this far from its centre, away from the tip [m] (off-centre, the peg
would pivot between the pads under its own weight)."""
PEG_GRASP_DZ = 0.018
SOCKET_GRASP_DZ = 0.013
"""insertion: TCP heights above the objects' centres when grasping [m] (the pads end just above the table)."""
SOCKET_MEET = (-0.08, 0.0, 0.2)
"""insertion: where the left arm holds the socket's centre while the peg goes in [m]."""


def insertion_targets(env: BimanualEnv, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Waypoints of ACT's insertion expert: both pick, meet, the right arm pushes the peg into the socket."""
    from robolearn.envs.manipulation.bimanual import PEG_HALF, SOCKET_HALF

    n, dev = env.num_envs, env.device
    p0, s0 = env.object_init[:, 0, :3], env.object_init[:, 1, :3]
    up = torch.tensor([0.0, 0.0, 1.0], device=dev)
    ex = torch.tensor([1.0, 0.0, 0.0], device=dev)
    l_grasp = s0 + SOCKET_GRASP_DZ * up
    r_grasp = p0 + PEG_GRASP_DX * ex + PEG_GRASP_DZ * up
    s_meet = torch.tensor(SOCKET_MEET, device=dev)
    l_meet = s_meet + SOCKET_GRASP_DZ * up
    mouth = s_meet + SOCKET_HALF[0] * ex

    def r_at(gap: float) -> Tensor:  # right TCP with the peg's tip `gap` outside the socket's mouth (nominal grasp)
        return mouth + (gap + PEG_HALF[0] + PEG_GRASP_DX) * ex + PEG_GRASP_DZ * up

    plan = Plan(n, dev)
    #        step  left (pos, quat, gripper)            right (pos, quat, gripper)
    plan.add(0, (LEFT_HOME_POS, LEFT_HOME, 1.0), (RIGHT_HOME_POS, RIGHT_HOME, 1.0))
    plan.add(50, (s0 + 0.1 * up, LEFT_DOWN, 1.0), (r_grasp + 0.1 * up, RIGHT_DOWN, 1.0))  # above the objects
    plan.add(90, (l_grasp, LEFT_DOWN, 1.0), (r_grasp, RIGHT_DOWN, 1.0))  # down to them
    plan.add(110, (l_grasp, LEFT_DOWN, 0.0), (r_grasp, RIGHT_DOWN, 0.0))  # close
    plan.add(125, (l_grasp, LEFT_DOWN, 0.0), (r_grasp, RIGHT_DOWN, 0.0))
    plan.add(145, (l_grasp + 0.08 * up, LEFT_DOWN, 0.0), (r_grasp + 0.08 * up, RIGHT_DOWN, 0.0))  # lift
    plan.add(190, (l_meet, LEFT_DOWN, 0.0), (r_at(0.04), RIGHT_DOWN, 0.0))  # meet, peg 4 cm before the mouth
    plan.add(220, (l_meet, LEFT_DOWN, 0.0), (r_at(0.02), RIGHT_DOWN, 0.0))  # align
    plan.add(320, (l_meet, LEFT_DOWN, 0.0), (r_at(-0.055), RIGHT_DOWN, 0.0))  # push in
    plan.add(400, (l_meet, LEFT_DOWN, 0.0), (r_at(-0.055), RIGHT_DOWN, 0.0))
    pos, quat, grip = plan.at(t)
    # from the meeting on, steer the peg's actual tip onto the socket's actual bore axis
    steer = t >= 190
    gap = (r_at(0.0) - pos[:, 1])[:, 0] * -1.0  # the planned tip gap (N,)
    axis = env.object_rot(1)[:, :, 0]
    want_tip = env.socket_mouth() + gap[:, None] * axis
    tip = env.peg_tip()
    corrected = env.tcp_pos[:, 1] + (want_tip - tip)
    pos[:, 1] = torch.where(steer[:, None], corrected, pos[:, 1])
    return pos, quat, grip
