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


def test_the_integral_term_removes_the_offset_a_constant_push_leaves():
    """A constant external force leaves the PD expert a few cm off the goal; observing `pos_error_integral`
    (integrated by the env, reset per episode) makes it a PID that ends on the goal."""
    final = {}
    for integral in (False, True):
        env = registry.make("quadrotor-hover", num_envs=64, seed=1, **{**EASY, "disturbance_force": 0.02},
                            pos_error_integral=integral)
        names = [t.name for t in env.spec.obs_terms["policy"]]
        assert ("pos_error_integral" in names) == integral
        metrics = evaluate_policy(env, env.expert_action)
        assert metrics["crash"] == 0.0
        final[integral] = metrics["final_pos_error"]
        if integral:  # the term is ∫ e dt since the reset: a drone held 10 cm off for 0.5 s has 0.05 m·s in it
            env.reset()
            env.sim.state[:, 0:3] = env.goal + torch.tensor([0.1, 0.0, 0.0])
            env.sim.state[:, 7:13] = 0.0
            for _ in range(50):
                obs = env.step(torch.zeros(64, 4)).obs
                env.sim.state[:, 0:3] = env.goal + torch.tensor([0.1, 0.0, 0.0])
            k = names.index("pos_error_integral")
            offset = sum(t.dim for t in env.spec.obs_terms["policy"][:k])
            assert torch.allclose(obs["policy"][:, offset:offset + 3], torch.tensor([0.05, 0.0, 0.0]), atol=2e-3)
    assert final[False] > 0.04 and final[True] < 0.01
