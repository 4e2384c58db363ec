"""The cascaded PD expert flies the hover task from the policy observation alone (checks observation signs,
frames and action scaling end to end)."""

import torch

from robolearn.envs import registry
from robolearn.envs.quadrotor.expert import pd_rpm_action
from robolearn.eval.rollout import evaluate_policy

EASY = dict(init_pos=0.2, init_max_angle_deg=0.0, init_lin_vel=0.0, init_ang_vel=0.0, randomize={},
            disturbance_force=0.0, obs_noise={})


def test_pd_expert_holds_the_goal_within_5cm():
    env = registry.make("quadrotor-hover", num_envs=64, seed=1, **EASY)
    metrics = evaluate_policy(env, lambda obs: pd_rpm_action(obs["policy"], env.params))
    assert metrics["crash"] == 0.0
    assert metrics["success"] >= 0.95 and metrics["final_pos_error"] < 0.02


def test_doing_nothing_does_not_hold_the_goal():
    env = registry.make("quadrotor-hover", num_envs=64, seed=1, **EASY)
    metrics = evaluate_policy(env, lambda obs: torch.zeros(64, 4))
    assert metrics["success"] < 0.5
