"""PPO with an asymmetric actor-critic: the actor sees `policy` observations, the critic sees `critic`.

Read top to bottom: config, networks, rollout storage, then `act -> process_step -> compute_returns ->
update`, and `train_iteration` that strings them together (after rsl_rl's PPO and CleanRL).

The same class is the building block of other on-policy learners: `obs_dims`/`action_dim` override the env's
(the H∞ disturber is a PPO agent on `critic` observations whose actions are disturbances), and `reset=False` leaves
the env alone. Under `torchrun` gradients, the KL of the adaptive learning rate and the normalizer statistics are
averaged over ranks (`robolearn.learners.distributed`), so every rank keeps identical parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robolearn.core.env import BatchedEnv
from robolearn.core.types import Obs
from robolearn.learners import distributed
from robolearn.learners.common import merge_episode_logs
from robolearn.networks import MLP, EmpiricalNormalizer, MLPPolicy


@dataclass(kw_only=True)
class PPOCfg:
    """Proximal Policy Optimization hyper-parameters."""

    num_steps: int = 24
    """Environment steps per env per iteration (rollout length)."""
    num_epochs: int = 5
    """Passes over the rollout per iteration."""
    num_minibatches: int = 4
    """Minibatches per epoch."""
    gamma: float = 0.99
    """Discount factor."""
    lam: float = 0.95
    """GAE λ."""
    clip: float = 0.2
    """Clipping range of the probability ratio."""
    value_coef: float = 1.0
    """Weight of the value loss."""
    entropy_coef: float = 0.0
    """Weight of the entropy bonus."""
    lr: float = 1e-3
    """Initial learning rate (adapted from the KL divergence when `desired_kl` is set)."""
    desired_kl: float | None = 0.01
    """Target KL per update for the adaptive learning rate; None keeps `lr` fixed."""
    max_grad_norm: float = 1.0
    """Gradient clipping."""
    init_std: float = 0.5
    """Initial standard deviation of the Gaussian policy (normalized action units)."""
    warm_start_std: bool = True
    """With `--init-from`: take the source run's action std (True) or start from `init_std` (False, e.g. to
    narrow exploration when fine-tuning, so that the mean action the robot runs matches what was trained)."""
    actor_hidden: tuple[int, ...] = (64, 64)
    """Actor hidden layer widths (the deployable policy: keep it small for microcontrollers)."""
    critic_hidden: tuple[int, ...] = (256, 256)
    """Critic hidden layer widths (training only)."""
    activation: str = "tanh"
    """Hidden activation of both networks."""
    normalize_obs: bool = True
    """Running mean/std normalization of observations (saved in the actor); False keeps raw physical units."""


class PPO:
    """Asymmetric PPO: Gaussian actor over `policy` observations, value function over `critic` observations."""

    supports_ddp = True
    """Gradients, KL and normalizer statistics are averaged over torchrun ranks."""

    def __init__(self, env: BatchedEnv, cfg: PPOCfg, *, obs_dims: dict[str, int] | None = None,
                 action_dim: int | None = None, reset: bool = True) -> None:  # fmt: skip
        self.env, self.cfg = env, cfg
        dev = env.device
        dims = obs_dims if obs_dims is not None else env.spec.obs_dims
        a_dim = action_dim if action_dim is not None else env.spec.action.dim
        self.actor = MLPPolicy(dims["policy"], a_dim, cfg.actor_hidden, cfg.activation, output="clamp").to(dev)
        self.log_std = nn.Parameter(torch.full((a_dim,), float(torch.tensor(cfg.init_std).log()), device=dev))
        self.critic_norm = EmpiricalNormalizer(dims["critic"]).to(dev)
        if not cfg.normalize_obs:  # identity normalization: statistics are never updated
            self.actor.normalizer.until = self.critic_norm.until = 0
        self.critic = MLP(dims["critic"], cfg.critic_hidden, 1, cfg.activation).to(dev)
        self.optimizer = torch.optim.Adam(
            [*self.actor.parameters(), self.log_std, *self.critic.parameters()], lr=cfg.lr
        )
        self.lr = cfg.lr
        t, n = cfg.num_steps, env.num_envs
        self.storage = {
            "policy": torch.zeros(t, n, dims["policy"], device=dev),
            "critic": torch.zeros(t, n, dims["critic"], device=dev),
            "action": torch.zeros(t, n, a_dim, device=dev),
            "log_prob": torch.zeros(t, n, device=dev),
            "value": torch.zeros(t, n, device=dev),
            "reward": torch.zeros(t, n, device=dev),
            "done": torch.zeros(t, n, device=dev),
            "mu": torch.zeros(t, n, a_dim, device=dev),
            "sigma": torch.zeros(t, n, a_dim, device=dev),
        }
        distributed.broadcast_module(self.actor)  # identical start on every rank
        distributed.broadcast_module(self.critic)
        self.obs = env.reset() if reset else {}
        self.env_steps = 0

    @property
    def env_steps_per_iteration(self) -> int:
        """Environment transitions collected per `train_iteration`."""
        return self.cfg.num_steps * self.env.num_envs

    def value(self, critic_obs: Tensor) -> Tensor:
        """V(s) (N,)."""
        return self.critic(self.critic_norm(critic_obs)).squeeze(-1)

    def distribution(self, policy_obs: Tensor) -> torch.distributions.Normal:
        """π(·|o) as a diagonal Gaussian in normalized action units."""
        mu = self.actor.forward_raw(policy_obs)
        return torch.distributions.Normal(mu, self.log_std.exp().expand_as(mu))

    @torch.no_grad()
    def act(self, obs: Obs, t: int) -> Tensor:
        """Sample actions and record what the update needs."""
        dist = self.distribution(obs["policy"])
        action = dist.sample()
        s = self.storage
        s["policy"][t], s["critic"][t], s["action"][t] = obs["policy"], obs["critic"], action
        s["log_prob"][t] = dist.log_prob(action).sum(-1)
        s["value"][t] = self.value(obs["critic"])
        s["mu"][t], s["sigma"][t] = dist.loc, dist.scale
        return action

    @torch.no_grad()
    def process_step(self, t: int, reward: Tensor, terminated: Tensor, truncated: Tensor, info: dict) -> None:
        """Store the reward; bootstrap truncated episodes with V(s_final): r ← r + γ V(s_T)."""
        if truncated.any():
            final_value = self.value(info["final_obs"]["critic"])
            reward = reward + self.cfg.gamma * final_value * truncated.float()
        self.storage["reward"][t] = reward
        self.storage["done"][t] = (terminated | truncated).float()

    @torch.no_grad()
    def compute_returns(self, last_critic_obs: Tensor) -> tuple[Tensor, Tensor]:
        """GAE advantages and returns (T, N)."""
        s, g, lam = self.storage, self.cfg.gamma, self.cfg.lam
        next_value = self.value(last_critic_obs)
        adv = torch.zeros_like(s["reward"])
        last = torch.zeros_like(next_value)
        for t in reversed(range(self.cfg.num_steps)):
            not_done = 1.0 - s["done"][t]
            # δ_t = r_t + γ (1 − d_t) V(s_{t+1}) − V(s_t)
            delta = s["reward"][t] + g * not_done * next_value - s["value"][t]
            # A_t = δ_t + γ λ (1 − d_t) A_{t+1}
            last = delta + g * lam * not_done * last
            adv[t] = last
            next_value = s["value"][t]
        return adv, adv + s["value"]

    @property
    def parameters(self) -> list[nn.Parameter]:
        """Everything the optimizer updates."""
        return [*self.actor.parameters(), self.log_std, *self.critic.parameters()]

    def update(self, advantages: Tensor, returns: Tensor, train_policy: bool = True) -> dict[str, float]:
        """Clipped-surrogate epochs over minibatches; adapts the learning rate from the KL divergence.

        `train_policy=False` fits only the value function (a critic warm-up after an imitation warm start).
        """
        cfg, s = self.cfg, self.storage
        flat = {k: v.flatten(0, 1) for k, v in s.items()}
        adv = advantages.flatten()
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        ret = returns.flatten()
        batch = adv.shape[0]
        mb = batch // cfg.num_minibatches
        logs = {"loss/policy": 0.0, "loss/value": 0.0, "loss/entropy": 0.0, "kl": 0.0}
        updates = 0
        for _ in range(cfg.num_epochs):
            perm = torch.randperm(batch, device=adv.device)
            for i in range(cfg.num_minibatches):
                idx = perm[i * mb : (i + 1) * mb]
                dist = self.distribution(flat["policy"][idx])
                log_prob = dist.log_prob(flat["action"][idx]).sum(-1)
                entropy = dist.entropy().sum(-1).mean()
                with torch.no_grad():
                    # KL(old ‖ new) of diagonal Gaussians, for the adaptive learning rate
                    mu0, s0, mu1, s1 = flat["mu"][idx], flat["sigma"][idx], dist.loc, dist.scale
                    kl = (torch.log(s1 / s0) + (s0.square() + (mu0 - mu1).square()) / (2 * s1.square()) - 0.5)
                    kl = float(distributed.mean(kl.sum(-1).mean()))  # the same learning rate on every rank
                if cfg.desired_kl is not None and train_policy:
                    if kl > 2.0 * cfg.desired_kl:
                        self.lr = max(1e-5, self.lr / 1.5)
                    elif kl < cfg.desired_kl / 2.0:
                        self.lr = min(1e-2, self.lr * 1.5)
                    for group in self.optimizer.param_groups:
                        group["lr"] = self.lr
                # L_clip = −E[min(ρ A, clip(ρ, 1±ε) A)],  ρ = π(a|o) / π_old(a|o)
                ratio = torch.exp(log_prob - flat["log_prob"][idx])
                a = adv[idx]
                policy_loss = -torch.min(ratio * a, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * a).mean()
                value_loss = (self.value(flat["critic"][idx]) - ret[idx]).square().mean()
                loss = cfg.value_coef * value_loss
                if train_policy:
                    loss = loss + policy_loss - cfg.entropy_coef * entropy
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                distributed.allreduce_grads(self.parameters)
                nn.utils.clip_grad_norm_(self.parameters, cfg.max_grad_norm)
                self.optimizer.step()
                logs["loss/policy"] += policy_loss.item()
                logs["loss/value"] += value_loss.item()
                logs["loss/entropy"] += entropy.item()
                logs["kl"] += float(kl)
                updates += 1
        logs = {k: v / updates for k, v in logs.items()}
        logs["lr"] = self.lr
        logs["action_std"] = self.log_std.exp().mean().item()
        return logs

    def train_iteration(self) -> dict[str, float]:
        """Collect `num_steps` from every env, then update; returns scalars to log."""
        episode_logs: list[dict[str, float]] = []
        reward_sum = 0.0
        for t in range(self.cfg.num_steps):
            action = self.act(self.obs, t)
            res = self.env.step(action)
            self.process_step(t, res.reward, res.terminated, res.truncated, res.info)
            self.obs = res.obs
            reward_sum += float(res.reward.mean())
            if "log" in res.info:
                episode_logs.append(res.info["log"])
        adv, ret = self.compute_returns(self.obs["critic"])
        logs = self.update(adv, ret)
        self.update_normalizers()
        self.env_steps += self.env_steps_per_iteration
        logs["reward"] = reward_sum / self.cfg.num_steps
        logs.update(merge_episode_logs(episode_logs))
        return logs

    def update_normalizers(self) -> None:
        """Let the normalizers learn from the stored rollout (every rank's under torchrun).

        Called after the update, so that the update sees the same normalization as the rollout's stored
        log-probabilities and values.
        """
        self.actor.normalizer.update(distributed.gather_rows(self.storage["policy"].flatten(0, 1)))
        self.critic_norm.update(distributed.gather_rows(self.storage["critic"].flatten(0, 1)))

    def policy(self) -> MLPPolicy:
        """The deterministic deployable actor (Gaussian mean, clamped)."""
        return self.actor

    def state_dict(self) -> dict:
        """Everything needed to resume exactly."""
        return {
            "actor": self.actor.state_dict(),
            "log_std": self.log_std.detach(),
            "critic": self.critic.state_dict(),
            "critic_norm": self.critic_norm.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr": self.lr,
            "env_steps": self.env_steps,
            "obs": dict(self.obs),
        }

    def warm_start(self, state: dict) -> list[str]:
        """Start from another run's learner state (PPO's, or H∞'s actor agent).

        Takes the actor and its action std, and the critic when its observation and layers have the same
        shapes. Optimizer and counters stay fresh.
        """
        state = {**state.get("actor_ppo", {}), **state}  # an H∞ state keeps the actor agent's rest there
        self.actor.load_state_dict(state["actor"])
        loaded = ["actor"]
        if self.cfg.warm_start_std and "log_std" in state and state["log_std"].shape == self.log_std.shape:
            with torch.no_grad():
                self.log_std.copy_(state["log_std"])
            loaded.append("action std")
        critic, norm = state.get("critic", {}), state.get("critic_norm", {})
        mine = {**self.critic.state_dict(), **{f"norm.{k}": v for k, v in self.critic_norm.state_dict().items()}}
        theirs = {**critic, **{f"norm.{k}": v for k, v in norm.items()}}
        if mine.keys() == theirs.keys() and all(mine[k].shape == theirs[k].shape for k in mine):
            self.critic.load_state_dict(critic)
            self.critic_norm.load_state_dict(norm)
            loaded.append("critic")
        return loaded

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` saved."""
        self.actor.load_state_dict(state["actor"])
        with torch.no_grad():
            self.log_std.copy_(state["log_std"])
        self.critic.load_state_dict(state["critic"])
        self.critic_norm.load_state_dict(state["critic_norm"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr = float(state["lr"])
        self.env_steps = int(state["env_steps"])
        self.obs = {k: v.to(self.env.device) for k, v in state["obs"].items()}

