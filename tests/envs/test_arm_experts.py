"""The arm tasks' scripted experts solve them from the policy observation (checks frames, signs, IK, grasping)."""

import pytest
import torch

from robolearn.core.errors import MissingExtraError
from robolearn.envs import registry
from robolearn.eval.rollout import evaluate_policy
from robolearn.sim.backend import import_mujoco

try:  # before anything imports mujoco: EGL offscreen rendering on a machine without a display
    import_mujoco()
except MissingExtraError as e:
    pytest.skip(str(e), allow_module_level=True)


@pytest.mark.parametrize("seed", [1, 2])
def test_reach_expert_reaches_the_goal(seed):
    env = registry.make("arm-reach", num_envs=16, seed=seed)
    m = evaluate_policy(env, env.expert_action)
    assert m["success"] >= 0.95 and m["failure"] == 0.0
    assert m["final_pos_error"] < 0.02


@pytest.mark.parametrize("seed", [1, 2])
def test_lift_expert_lifts_the_cube(seed):
    env = registry.make("arm-lift", num_envs=16, seed=seed)
    m = evaluate_policy(env, env.expert_action)
    assert m["success"] >= 0.9 and m["failure"] == 0.0
    assert m["final_height"] > 0.09


def test_doing_nothing_does_not_lift():
    env = registry.make("arm-lift", num_envs=8, seed=1, episode_length_s=1.0)
    m = evaluate_policy(env, lambda obs: torch.zeros(8, env.spec.action.dim))
    assert m["success"] == 0.0


def test_expert_needs_ee_delta_mode():
    env = registry.make("arm-reach", num_envs=2, action_mode="joint_pos")
    obs = env.reset()
    with pytest.raises(Exception, match="set action_mode: ee_delta"):
        env.expert_action(obs)
    res = env.step(torch.zeros(2, env.spec.action.dim))  # joint_pos: a = 0 holds the home pose
    assert (env.joint_pos - env.home).abs().max() < 0.1
    assert torch.isfinite(res.obs["policy"]).all()


def test_pick_place_expert_puts_the_cube_on_the_goal():
    env = registry.make("arm-pick-place", num_envs=16, seed=1)
    m = evaluate_policy(env, env.expert_action)
    assert m["success"] >= 0.9 and m["failure"] == 0.0
    assert m["final_place_error"] < 0.025


def test_peg_insert_expert_inserts_the_peg():
    env = registry.make("arm-peg-insert", num_envs=12, seed=1)
    m = evaluate_policy(env, env.expert_action)
    assert m["success"] >= 0.9 and m["failure"] == 0.0
    assert m["final_depth"] > 0.02 and m["final_place_error"] < 0.004
