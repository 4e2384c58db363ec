"""Hand-computed GAE and PPO bootstrapping on tiny batches."""

import torch

from robolearn.envs import registry
from robolearn.learners.ppo import PPO, PPOCfg


def make_ppo(num_steps=3, num_envs=2, gamma=0.9, lam=0.8):
    env = registry.make("quadrotor-hover", num_envs=num_envs)
    return PPO(env, PPOCfg(num_steps=num_steps, gamma=gamma, lam=lam, critic_hidden=(8,), actor_hidden=(8,)))


def test_gae_matches_hand_computation():
    ppo = make_ppo()
    s = ppo.storage
    # env 0: no dones; env 1: episode ends after step 1 (index 1)
    s["reward"][:] = torch.tensor([[1.0, 0.5], [2.0, 1.0], [3.0, 2.0]])
    s["value"][:] = torch.tensor([[0.5, 0.2], [1.0, 0.4], [1.5, 0.6]])
    s["done"][:] = torch.tensor([[0.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    last_value = torch.tensor([2.0, 1.0])
    ppo.value = lambda obs: last_value  # V(s_T) for the bootstrap
    adv, ret = ppo.compute_returns(torch.zeros(2, 1))
    g, lam = 0.9, 0.8
    # env 0, backwards: δ2 = 3 + .9*2 - 1.5 = 3.3; δ1 = 2 + .9*1.5 - 1 = 2.35; δ0 = 1 + .9*1 - .5 = 1.4
    a2 = 3.3
    a1 = 2.35 + g * lam * a2
    a0 = 1.4 + g * lam * a1
    assert torch.allclose(adv[:, 0], torch.tensor([a0, a1, a2]), atol=1e-6)
    # env 1: δ2 = 2 + .9*1 - .6 = 2.3; step 1 is terminal: δ1 = 1 - .4 = .6, A1 = .6; δ0 = .5 + .9*.4 - .2 = .66
    b2 = 2.3
    b1 = 0.6
    b0 = 0.66 + g * lam * b1
    assert torch.allclose(adv[:, 1], torch.tensor([b0, b1, b2]), atol=1e-6)
    assert torch.allclose(ret, adv + s["value"])


def test_truncation_bootstraps_with_final_value():
    ppo = make_ppo(num_steps=1)
    ppo.value = lambda obs: torch.tensor([10.0, 10.0])
    reward = torch.tensor([1.0, 1.0])
    ppo.process_step(0, reward, torch.tensor([False, False]), torch.tensor([True, False]),
                     {"final_obs": {"critic": torch.zeros(2, 1)}})
    # truncated env gets r + γ V(s_T) = 1 + 0.9 * 10; the other keeps r; both count as done for GAE
    assert torch.allclose(ppo.storage["reward"][0], torch.tensor([10.0, 1.0]))
    assert torch.equal(ppo.storage["done"][0], torch.tensor([1.0, 0.0]))
