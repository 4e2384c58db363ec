"""TD3 target on a hand-made batch."""

import torch

from robolearn.envs import registry
from robolearn.learners.td3 import TD3, TD3Cfg


def test_td_target_takes_min_of_twin_targets_and_masks_terminated():
    env = registry.make("quadrotor-hover", num_envs=2)
    td3 = TD3(env, TD3Cfg(buffer_size=8, gamma=0.5, target_noise=0.0, critic_hidden=(8,), actor_hidden=(8,)))
    for net, value in zip(td3.critics_target, (3.0, 5.0), strict=True):  # Q1' ≡ 3, Q2' ≡ 5
        for p in net.parameters():
            p.data.zero_()
        net[-1].bias.data.fill_(value)
    obs = env.reset()
    y = td3.td_target(torch.tensor([1.0, 2.0]), obs["policy"], obs["critic"], torch.tensor([0.0, 1.0]))
    # y = r + γ (1 − d) min(3, 5):  1 + 0.5 * 3 = 2.5;  terminated: 2
    assert torch.allclose(y, torch.tensor([2.5, 2.0]))


def test_store_wraps_around_the_ring_buffer():
    env = registry.make("quadrotor-hover", num_envs=3)
    td3 = TD3(env, TD3Cfg(buffer_size=4, critic_hidden=(8,), actor_hidden=(8,)))
    obs = env.reset()
    for i in range(2):
        td3.store(obs, torch.zeros(3, 4), torch.full((3,), float(i)), obs, torch.zeros(3, dtype=torch.bool))
    # 6 transitions into 4 slots: slots 0,1 hold the second batch's last two, 2 the first batch's last
    assert td3.size == 4 and td3.ptr == 2
    assert td3.buffer["reward"].tolist() == [1.0, 1.0, 0.0, 1.0]
