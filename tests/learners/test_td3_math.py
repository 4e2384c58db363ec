"""TD3 target on a hand-made batch."""

import torch

from robolearn.envs import registry
from robolearn.learners.td3 import TD3, TD3Cfg


def test_td_target_takes_min_of_twin_targets_and_masks_terminated():
    env = registry.make("quadrotor-hover", num_envs=2)
    td3 = TD3(env, TD3Cfg(buffer_size=8, gamma=0.5, target_noise=0.0, critic_hidden=(8,), actor_hidden=(8,)))
    for p in td3.critics_target.parameters():
        p.data.zero_()
    td3.critics_target.biases[-1].data[0].fill_(3.0)  # Q1' ≡ 3
    td3.critics_target.biases[-1].data[1].fill_(5.0)  # Q2' ≡ 5
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


def test_n_step_transition_sums_discounted_rewards_and_stops_at_episode_ends():
    """Three parallel envs, 3 steps: env 0 runs on, env 1 terminates at step 1, env 2 is truncated at step 0."""
    g = 0.5

    def step(k: int, reward: list[float], terminated: list[float], done: list[float]) -> dict:
        n = torch.tensor([[10.0 * k + i] for i in range(3)])  # next obs tells (step, env) apart
        return {
            "policy": n - 10,
            "critic": n - 10,
            "action": torch.zeros(3, 1),
            "reward": torch.tensor(reward),
            "next_policy": n,
            "next_critic": n,
            "terminated": torch.tensor(terminated),
            "done": torch.tensor(done),
        }

    steps = [
        step(1, [1.0, 1.0, 1.0], [0, 0, 0], [0, 0, 1]),
        step(2, [2.0, 2.0, 2.0], [0, 1, 0], [0, 1, 0]),
        step(3, [4.0, 4.0, 4.0], [0, 0, 0], [0, 0, 0]),
    ]
    t = TD3.n_step_transition(steps, g)
    # env 0: 1 + .5*2 + .25*4 = 3, bootstraps from step 3's next obs with γ³; env 1: 1 + .5*2 = 2, terminated;
    # env 2: truncated after its first step: 1, bootstraps from step 1's next obs with γ
    assert t["reward"].tolist() == [3.0, 2.0, 1.0]
    assert t["discount"].tolist() == [g**3, g**2, g]
    assert t["terminated"].tolist() == [0.0, 1.0, 0.0]
    assert t["next_policy"].squeeze(-1).tolist() == [30.0, 21.0, 12.0]


def test_n_step_1_stores_the_plain_transition():
    env = registry.make("quadrotor-hover", num_envs=2)
    td3 = TD3(env, TD3Cfg(buffer_size=8, gamma=0.9, critic_hidden=(8,), actor_hidden=(8,)))
    obs = env.reset()
    td3.store(obs, torch.zeros(2, 4), torch.tensor([1.0, 2.0]), obs, torch.tensor([False, True]))
    assert td3.size == 2
    assert td3.buffer["reward"][:2].tolist() == [1.0, 2.0]
    assert torch.allclose(td3.buffer["discount"][:2], torch.tensor([0.9, 0.9]))
    assert td3.buffer["terminated"][:2].tolist() == [0.0, 1.0]


def test_learning_rates_anneal_linearly_from_their_start():
    env = registry.make("quadrotor-hover", num_envs=4)
    cfg = TD3Cfg(buffer_size=64, batch_size=4, learning_starts=4, lr_decay_start=8, lr_decay_steps=100,
                 lr_final_fraction=0.1, actor_lr=1e-3, critic_lr=2e-3, critic_hidden=(8,), actor_hidden=(8,))
    td3 = TD3(env, cfg)
    for steps, factor in ((0, 1.0), (8, 1.0), (58, 0.55), (108, 0.1), (500, 0.1)):
        td3.env_steps = steps
        assert abs(td3.lr_factor() - factor) < 1e-12, steps
    obs = env.reset()
    for _ in range(4):
        td3.store(obs, torch.zeros(4, 4), torch.zeros(4), obs, torch.zeros(4, dtype=torch.bool))
    td3.env_steps = 58
    td3.update()  # the rates the optimizers used are the annealed ones
    assert abs(td3.actor_opt.param_groups[0]["lr"] - 0.55e-3) < 1e-12
    assert abs(td3.critic_opt.param_groups[0]["lr"] - 1.1e-3) < 1e-12
    assert TD3(env, TD3Cfg(buffer_size=8, critic_hidden=(8,), actor_hidden=(8,))).lr_factor() == 1.0
