"""A real arm-reach artifact in seconds: behaviour-clone the task's scripted expert into joint-position commands.

Used by the ROS full-loop arm test (tests/ros). The arm-reach expert commands TCP deltas (ee_delta); a deployed
arm behind ros2_control takes joint positions, so the labels are the expert's TCP step solved for joints by the
task's own damped-least-squares IK, as a joint position step relative to the measured position (action term
`joint_pos_delta`, the arm adapter's relative mode: it publishes measured + step as absolute forward-position
targets). The policy observes joint_pos, joint_vel and the goal (the task's `goal_pos` command), no more: the
TCP pose is a function of the joints that the MLP learns, and a small input keeps the clone fast and accurate.
"""

from __future__ import annotations

from pathlib import Path

import torch
from hover_artifact import fit_clone

from robolearn.core.types import ActionSpec, ActionTerm, ObsTerm, TaskSpec
from robolearn.envs import registry
from robolearn.envs.manipulation.arm import ARM_JOINTS, ROBOT
from robolearn.envs.manipulation.expert import expert_action, term_slices
from robolearn.export import export_policy
from robolearn.networks.mlp import MLPPolicy

STEP = 0.1
"""Joint position step at |a| = 1 [rad per 50 Hz policy step]."""
OBS = ("joint_pos", "joint_vel", "goal_pos")


def arm_spec(rate_hz: float) -> TaskSpec:
    """The artifact's spec: the adapter-observable subset of arm-reach's policy terms, joint position steps."""
    n = ARM_JOINTS
    obs = (ObsTerm("joint_pos", n, "rad", "arm joint positions (encoders)"),
           ObsTerm("joint_vel", n, "rad/s", "arm joint velocities"),
           ObsTerm("goal_pos", 3, "m", "goal position, base frame", source="command"))
    act = ActionTerm("joint_pos_delta", n, "rad", (STEP,) * n, (0.0,) * n, "joint target relative to the measured")
    return TaskSpec(name="arm-reach", obs_terms={"policy": obs}, action=ActionSpec((act,), rate_hz=rate_hz,
                    mode="joint_pos"), robot=ROBOT, description="arm-reach, BC of the scripted expert (joint steps)")


def expert_step(env, obs: dict) -> torch.Tensor:
    """The scripted expert's TCP step → joint step through the task's IK, normalized by STEP."""
    a = expert_action(env, obs)
    cfg = env.cfg
    jac = env.ee_jacobian()
    err = torch.cat((cfg.ee_pos_step * a[:, 0:3], cfg.ee_rot_step * a[:, 3:6]), -1).unsqueeze(-1)
    jjt = jac @ jac.transpose(1, 2) + cfg.ik_damping**2 * torch.eye(6)
    dq = (jac.transpose(1, 2) @ torch.linalg.solve(jjt, err)).squeeze(-1)
    return (dq / STEP).clamp(-1.0, 1.0)


def bc_arm_policy(seed: int = 0, iters: int = 3, steps: int = 60, envs: int = 64, epochs: int = 150) -> MLPPolicy:
    """DAgger on the IK'd expert in the joint_pos task: roll out the learner, label every visited state."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        env = registry.make("arm-reach", num_envs=envs, seed=seed, action_mode="joint_pos", backend="mujoco_cpu",
                            randomize={}, obs_noise={}, init_joint_noise=0.3)
        sl = term_slices(env.spec)
        cols = torch.cat([torch.arange(sl[t].start, sl[t].stop) for t in OBS])
        policy = MLPPolicy(len(cols), ARM_JOINTS, hidden=(128, 128), activation="tanh", output="tanh")
        opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
        xs, ys = [], []
        home = env.home
        for it in range(iters):
            obs = env.reset()
            for _ in range(steps):
                x = obs["policy"][:, cols]
                y = expert_step(env, obs)
                xs.append(x)
                ys.append(y)
                with torch.no_grad():
                    a = y if it == 0 else policy(x)
                q = env.joint_pos + STEP * a  # the joint target the adapter would publish → the task's action
                act = torch.cat(((q - home) / env.cfg.joint_scale, torch.ones(envs, 1)), -1)
                obs = env.step(act).obs
            fit_clone(policy, opt, xs, ys, envs * steps, epochs)
        return policy.eval()
    finally:
        torch.set_num_threads(threads)


def make_arm_artifact(out: Path, seed: int = 0) -> Path:
    """Train (seconds) and export the arm artifact (ONNX)."""
    env = registry.make("arm-reach", num_envs=1, action_mode="joint_pos", backend="mujoco_cpu")
    policy = bc_arm_policy(seed)
    return export_policy(policy, arm_spec(env.spec.action.rate_hz), out, source={"kind": "bc-arm-reach-expert-ik",
                                                                                  "seed": seed})
