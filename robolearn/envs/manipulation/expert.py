"""Scripted experts for the arm tasks: proportional TCP control on the policy observation (ee_delta mode).

They read only the policy observation (joint encoders, gripper width, forward-kinematics TCP pose, the goal
or the perceived cube pose), so they run on the real robot as baselines and produce demonstrations.

reach: move the TCP towards the goal, gripper pointing down.
lift:  a state machine evaluated from the observation alone (no memory):
       far from the cube in xy → go above it (8 cm) with the fingers open, aligned with the cube's yaw;
       above it → descend; at it → close; fingers closed on the cube → lift.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from robolearn.core.math import quat_to_rotmat
from robolearn.core.types import Obs, TaskSpec
from robolearn.envs.manipulation.arm import HOLE_TOP

if TYPE_CHECKING:
    from robolearn.envs.manipulation.arm import ArmEnv


def term_slices(spec: TaskSpec, group: str = "policy") -> dict[str, slice]:
    """Where each named term sits in an observation group."""
    out, start = {}, 0
    for t in spec.obs_terms[group]:
        out[t.name] = slice(start, start + t.dim)
        start += t.dim
    return out


def _down_rotation(yaw: Tensor) -> Tensor:
    """TCP orientation pointing down with its x-axis at `yaw` (N, 3, 3): columns x, y, z in the world frame."""
    c, s, z = torch.cos(yaw), torch.sin(yaw), torch.zeros_like(yaw)
    x_axis = torch.stack((c, s, z), -1)
    y_axis = torch.stack((s, -c, z), -1)
    z_axis = torch.stack((z, z, -torch.ones_like(yaw)), -1)
    return torch.stack((x_axis, y_axis, z_axis), -1)


def turn_to_axes(yaw: Tensor) -> Tensor:
    """`yaw` folded into [-45°, 45°): the rotation that takes a square object off the world axes."""
    return torch.remainder(yaw + math.pi / 4, math.pi / 2) - math.pi / 4


def _rotation_error(rot: Tensor, rot_des: Tensor) -> Tensor:
    """Small-angle rotation (axis × angle, world frame) taking `rot` to `rot_des`: ½ Σ_i r_i × r_des_i."""
    return 0.5 * torch.linalg.cross(rot, rot_des, dim=1).sum(-1)


def _ee_action(env: ArmEnv, ee_pos: Tensor, rot: Tensor, target: Tensor, rot_des: Tensor, gripper: Tensor,
               gain: float | Tensor = 0.5) -> Tensor:
    """Normalized ee_delta action moving a fraction `gain` of the way to (target, rot_des) per step."""
    cfg = env.cfg
    dpos = gain * (target - ee_pos) / cfg.ee_pos_step
    drot = gain * _rotation_error(rot, rot_des) / cfg.ee_rot_step
    # keep the direction when the step saturates
    dpos = dpos / dpos.abs().amax(-1, keepdim=True).clamp_min(1.0)
    drot = drot / drot.abs().amax(-1, keepdim=True).clamp_min(1.0)
    return torch.cat((dpos, drot, gripper[:, None]), -1).clamp(-1.0, 1.0)


def expert_action(env: ArmEnv, obs: Obs) -> Tensor:
    """Expert action (N, 7) for the env's task from its policy observation."""
    policy = obs["policy"]
    state = policy["state"] if isinstance(policy, dict) else policy
    sl = term_slices(env.spec)
    ee_pos = state[:, sl["ee_pos"]]
    rot = quat_to_rotmat(state[:, sl["ee_quat"]])
    if "object_pos" not in sl:  # reach
        goal = state[:, sl["goal_pos"]]
        return _ee_action(env, ee_pos, rot, goal, _down_rotation(torch.zeros_like(goal[:, 0])),
                          torch.ones_like(goal[:, 0]))
    return _lift_action(env, state, sl, ee_pos, rot)


def _lift_action(env: ArmEnv, state: Tensor, sl: dict[str, slice], ee_pos: Tensor, rot: Tensor) -> Tensor:
    cube = state[:, sl["object_pos"]]
    yaw4 = state[:, sl["object_yaw4"]]
    width = state[:, sl["gripper_width"]].squeeze(-1)
    half = state[:, sl["object_half_size"]].squeeze(-1)
    # grasp yaw: the cube orientation (90° symmetric) nearest to the TCP's current yaw, so the wrist turns by at
    # most 45° and never snaps by 90° when the folded cube yaw wraps around
    tcp_yaw = torch.atan2(rot[:, 1, 0], rot[:, 0, 0])
    cube_yaw = torch.atan2(yaw4[:, 1], yaw4[:, 0]) / 4
    turn = torch.remainder(cube_yaw - tcp_yaw + math.pi / 4, math.pi / 2) - math.pi / 4
    # where the TCP grasps, relative to the object's centre: cubes low (pads over most of the cube), a tall peg
    # near its top (the pads must stay above the fixture while the peg goes in)
    peg = bool(env.object_half_height)
    grasp_dz = env.object_half_height - 0.015 if peg else -0.005
    d_xy = (cube[:, :2] - ee_pos[:, :2]).norm(dim=-1)
    dz = ee_pos[:, 2] - (cube[:, 2] + (grasp_dz if peg else 0.0))  # cube: the window is centred on the cube
    closed_on_cube = (width < 2 * half + 0.001) & (width > 2 * half - 0.01)  # both pads on the cube
    # at the cube; once the fingers are closing, wider bounds (hysteresis against the perception noise)
    closing = width < 0.07
    at_cube = ((d_xy < 0.01) & (dz.abs() < 0.012)) | (closing & (d_xy < 0.02) & (dz.abs() < 0.025))
    grasped = at_cube & closed_on_cube
    # at the cube: hold the current yaw (the cube turns with the fingers; following it would be positive feedback);
    # a held peg is turned square to the (axis-aligned) hole instead
    hold_yaw = tcp_yaw - turn_to_axes(cube_yaw) if peg else tcp_yaw
    rot_des = _down_rotation(torch.where(at_cube, torch.where(grasped, hold_yaw, tcp_yaw), tcp_yaw + turn))
    aligned = (d_xy < 0.006) & (turn.abs() < 0.05)

    above = cube.clone()
    above[:, 2] = cube[:, 2] + 0.08
    lifted = cube.clone()
    lifted[:, 2] = half + env.cfg.lift_height + 0.05
    grasp = cube.clone()
    grasp[:, 2] = cube[:, 2] + grasp_dz
    target = torch.where(aligned[:, None], grasp, above)  # descend once aligned above the cube
    target = torch.where(at_cube[:, None], ee_pos, target)  # hold still while closing
    target = torch.where(grasped[:, None], lifted, target)  # lift
    gripper = torch.where(at_cube, -1.0, 1.0)
    if "goal_pos" in sl:  # pick-place: carry the held cube to the goal, lower it, let go, back off upwards
        goal = state[:, sl["goal_pos"]]
        to_goal = (goal[:, :2] - cube[:, :2]).norm(dim=-1)
        carry_z = half + 0.08 if not peg else torch.full_like(half, 0.04 + env.object_half_height + 0.025)
        want = torch.cat((goal[:, :2], carry_z[:, None]), -1)  # the cube centre we want next
        want = torch.where((cube[:, 2] < carry_z - 0.03)[:, None] & (to_goal > 0.01)[:, None],
                           torch.cat((cube[:, :2], want[:, 2:]), -1), want)  # lift straight up first
        tol = 0.0015 if peg else 0.008  # the peg goes down only when centred over the hole (2 mm clearance)
        lowering = (to_goal < tol) | ((to_goal < 2.5 * tol) & (cube[:, 2] < carry_z - 0.01))  # hysteresis
        want = torch.where(lowering[:, None], goal, want)  # above the goal: lower it to the table
        if peg:  # not yet in the hole and off-centre by more than the tolerance: hover 1 cm above it, re-centre
            in_hole = cube[:, 2] - env.object_half_height < HOLE_TOP - 0.002
            hover = (to_goal < 0.01) & (to_goal >= tol) & ~in_hole
            want = torch.where(hover[:, None], torch.cat((goal[:, :2], torch.full_like(goal[:, 2:], HOLE_TOP +
                               env.object_half_height + 0.01)), -1), want)
            want = torch.where(in_hole[:, None] & (to_goal < 0.01)[:, None], goal, want)
        target = torch.where(grasped[:, None], ee_pos + (want - cube), target)
        placed = (to_goal < 0.015) & (cube[:, 2] < half + 0.006) & (width > 2 * half - 0.01) & (not peg)
        target = torch.where(placed[:, None], torch.cat((ee_pos[:, :2], ee_pos[:, 2:] + 0.05), -1), target)
        gripper = torch.where(placed, 1.0, gripper)
    action = _ee_action(env, ee_pos, rot, target, rot_des, gripper)
    # lift at ≤ 40 % of the step (a jerk at lift-off makes the cube slip in the fingers)
    slow = torch.where(grasped, 0.4, 1.0)[:, None]
    action = torch.cat((action[:, :6].clamp(-1, 1) * slow, action[:, 6:]), -1)
    if "goal_pos" in sl and peg:  # near the hole: full-gain xy (no slow-down: the servos' static error would
        # leave a millimetre offset), slow z (descending must not drag the peg off-centre)
        near = grasped & ((goal[:, :2] - cube[:, :2]).norm(dim=-1) < 0.01)
        fine_xy = ((target[:, :2] - ee_pos[:, :2]) / env.cfg.ee_pos_step).clamp(-0.4, 0.4)
        action[:, :2] = torch.where(near[:, None], fine_xy, action[:, :2])
        action[:, 2] = torch.where(near, action[:, 2].clamp(-0.15, 0.15), action[:, 2])
    return action

