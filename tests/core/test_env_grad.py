"""Differentiable stepping (`BatchedEnv.step_grad`): same physics as `step`, correct gradients, no auto-reset."""

import pytest
import torch

from robolearn.core.errors import RobolearnError
from robolearn.envs.registry import make

EASY = {"init_max_angle_deg": 10.0, "init_lin_vel": 0.1, "init_ang_vel": 0.1, "init_pos": 0.05, "randomize": {},
        "disturbance_force": 0.0, "obs_noise": {}}


def test_step_grad_follows_the_same_trajectory_as_step():
    a, b = make("quadrotor-hover", num_envs=8, seed=3, **EASY), make("quadrotor-hover", num_envs=8, seed=3, **EASY)
    a.reset(), b.reset()
    action = torch.linspace(-0.05, 0.05, 32).view(8, 4)
    for _ in range(5):
        ra, rb = a.step(action), b.step_grad(action.clone().requires_grad_(True))
        torch.testing.assert_close(ra.obs["critic"], rb.obs["critic"].detach())
        torch.testing.assert_close(ra.reward, rb.reward.detach())


def test_gradient_of_the_return_matches_finite_differences():
    def ret(c: torch.Tensor) -> torch.Tensor:
        # smooth cost terms only: a constant "alive" term would drown the differences in float32 rounding
        scales = {"position": -20.0, "orientation": -1.0, "ang_vel": -0.05, "action": -0.5}
        env = make("quadrotor-hover", num_envs=4, seed=0, reward_scales=scales, **EASY)
        env.reset()
        return sum(env.step_grad(c.expand(4, 4)).reward.mean() for _ in range(20))

    c = torch.full((4,), 0.01, requires_grad=True)
    ret(c).backward()
    with torch.no_grad():
        for i in range(4):
            e = torch.zeros(4)
            e[i] = 1e-3
            fd = (ret(c + e) - ret(c - e)) / 2e-3
            assert abs(fd - c.grad[i]) < 0.02 * abs(c.grad[i]) + 1e-6


def test_finished_envs_are_reported_once_then_reset_on_request():
    env = make("quadrotor-hover", num_envs=4, seed=0, episode_length_s=0.05, **EASY)  # 5 steps
    env.reset()
    action = torch.zeros(4, 4, requires_grad=True)
    reports = []
    for _ in range(8):
        res = env.step_grad(action)
        reports.append(int(res.truncated.sum()))
    assert reports == [0, 0, 0, 0, 4, 0, 0, 0]  # reported at the time limit only, then pending
    assert bool(env.pending.all())
    res.reward.sum().backward()
    assert action.grad is not None
    env.detach_()
    assert not env.sim.state.requires_grad
    obs = env.reset_pending()
    assert not bool(env.pending.any()) and int(env.episode_length.sum()) == 0
    assert not obs["policy"].requires_grad


def test_non_differentiable_task_refuses_step_grad():
    env = make("quadrotor-hover", num_envs=2, seed=0)
    type(env).differentiable = False
    try:
        with pytest.raises(RobolearnError, match="not differentiable"):
            env.step_grad(torch.zeros(2, 4))
    finally:
        type(env).differentiable = True
