"""SHAC: Short-Horizon Actor-Critic through a differentiable simulator, with an asymmetric (privileged) critic.

Xu et al., "Accelerated Policy Learning with Parallel Differentiable Simulation" (ICLR 2022). The actor is
trained by backpropagating the return of a short rollout, `horizon` steps of every env, through the physics
(`BatchedEnv.step_grad`), with a learned value at the end of the window:

    J(θ) = 1/(N H) Σ_n [ Σ_{t<T_n} γ^t r_t + γ^{T_n} V(s_{T_n}) ]      (T_n: end of the window or of the episode)

The critic V(s) sees the privileged `critic` observations and is regressed on TD(λ) targets of the same
rollout. Gradients through physics replace the likelihood-ratio estimate of PPO, whose signal vanishes on a
quadrotor commanding motors through a 0.15 s lag (a single action barely moves the state; white action noise
is low-passed away). Works only on tasks with `differentiable = True`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robolearn.core.env import BatchedEnv
from robolearn.core.errors import RobolearnError
from robolearn.learners.common import ExpertCloner, merge_episode_logs
from robolearn.networks import MLP, EmpiricalNormalizer, MLPPolicy


@dataclass(kw_only=True)
class SHACCfg:
    """Short-Horizon Actor-Critic hyper-parameters (defaults after Xu et al. 2022)."""

    horizon: int = 32
    """Steps per differentiable rollout window (the truncation of backpropagation through time)."""
    gamma: float = 0.99
    """Discount factor."""
    lam: float = 0.95
    """λ of the critic's TD(λ) targets."""
    actor_lr: float = 2e-3
    """Actor learning rate (decays linearly to `lr_end_fraction` of it over `lr_decay_iterations`)."""
    critic_lr: float = 2e-3
    """Critic learning rate."""
    lr_end_fraction: float = 0.1
    """Final learning rates as a fraction of the initial ones."""
    lr_decay_iterations: int = 500
    """Iterations over which the learning rates decay."""
    critic_iterations: int = 8
    """Passes over the window's transitions per critic update."""
    critic_minibatches: int = 4
    """Minibatches per pass."""
    target_alpha: float = 0.2
    """Target critic update: θ' ← α θ' + (1 − α) θ."""
    max_grad_norm: float = 1.0
    """Gradient clipping of actor and critic."""
    exploration_std: float = 0.0
    """Std of reparameterized Gaussian noise added to actions in the rollout (normalized units)."""
    actor_hidden: tuple[int, ...] = (64, 64)
    """Actor hidden widths (the deployable policy)."""
    critic_hidden: tuple[int, ...] = (128, 128)
    """Critic hidden widths."""
    activation: str = "tanh"
    """Hidden activation of both networks (tanh/elu are smooth for gradients through the policy; relu is ~30x cheaper
    than tanh on a CPU, what the DAgger-warm-started hover preset uses)."""
    expert_iterations: int = 0
    """Warm start: this many DAgger iterations on the task's scripted expert before RL (0: from scratch)."""
    expert_epochs: int = 2
    """Warm start: passes over the labelled buffer per DAgger iteration."""
    expert_batch_size: int = 4096
    """Warm start: minibatch size of the DAgger fit."""
    expert_lr: float = 1e-3
    """Warm start: Adam learning rate of the DAgger fit."""
    critic_warmup: int = 0
    """Iterations after the warm start that train only the critic (so the first actor steps see a fitted V)."""


class SHAC:
    """Asymmetric SHAC learner over a differentiable batched env."""

    def __init__(self, env: BatchedEnv, cfg: SHACCfg) -> None:
        if not env.differentiable:
            raise RobolearnError(f"shac: task '{env.spec.name}' is not differentiable; use ppo or td3")
        self.env, self.cfg = env, cfg
        dev = env.device
        dims = env.spec.obs_dims
        self.actor = MLPPolicy(dims["policy"], env.spec.action.dim, cfg.actor_hidden, cfg.activation, output="tanh")
        self.actor.to(dev)
        self.critic_norm = EmpiricalNormalizer(dims["critic"]).to(dev)
        self.critic = MLP(dims["critic"], cfg.critic_hidden, 1, cfg.activation).to(dev)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr, betas=(0.7, 0.95))
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr, betas=(0.7, 0.95))
        warm = cfg.expert_iterations > 0
        self.cloner = (
            ExpertCloner(env, self.actor, cfg.expert_iterations, cfg.horizon, epochs=cfg.expert_epochs,
                         batch_size=cfg.expert_batch_size, lr=cfg.expert_lr)
            if warm else None
        )  # fmt: skip
        self.obs = env.reset()
        self.env_steps = 0
        self.iterations = 0

    @property
    def env_steps_per_iteration(self) -> int:
        """Environment transitions per `train_iteration`."""
        return self.cfg.horizon * self.env.num_envs

    def value(self, critic_obs: Tensor, target: bool = False) -> Tensor:
        """V(s) (N,) from privileged observations."""
        net = self.critic_target if target else self.critic
        return net(self.critic_norm(critic_obs)).squeeze(-1)

    def _set_lr(self, iteration: int) -> float:
        cfg = self.cfg
        f = 1.0 - (1.0 - cfg.lr_end_fraction) * min(1.0, iteration / max(1, cfg.lr_decay_iterations))
        for opt, lr in ((self.actor_opt, cfg.actor_lr), (self.critic_opt, cfg.critic_lr)):
            for group in opt.param_groups:
                group["lr"] = lr * f
        return f

    def train_iteration(self) -> dict[str, float]:
        """One window: differentiable rollout → actor step → critic TD(λ) regression → reset finished envs."""
        cfg, env = self.cfg, self.env
        if self.cloner is not None and self.iterations < cfg.expert_iterations:
            self.obs, logs = self.cloner.iteration(self.obs)
            self.env_steps += self.env_steps_per_iteration
            self.iterations += 1
            return logs
        n, h, g = env.num_envs, cfg.horizon, cfg.gamma
        rl_iteration = self.iterations - cfg.expert_iterations
        lr_factor = self._set_lr(rl_iteration)
        obs = self.obs
        alive = torch.ones(n, dtype=torch.bool, device=env.device)  # still in the episode it started the window in
        discount = torch.ones(n, device=env.device)
        objective = torch.zeros(n, device=env.device)
        critic_obs, next_critic_obs, rewards, masks, terminal, bootstrap = [], [], [], [], [], []
        policy_obs, episode_logs = [], []
        for _ in range(h):
            action = self.actor.forward_raw(obs["policy"])
            if cfg.exploration_std > 0:
                action = action + cfg.exploration_std * torch.randn_like(action)
            action = torch.tanh(action)
            res = env.step_grad(action)
            live = alive.float()
            # Σ γ^t r_t over the steps still inside each env's episode
            objective = objective + discount * res.reward * live
            discount = discount * g
            if bool(res.truncated.any()):  # time limit: + γ^{t+1} V(s_{t+1}), the episode continues in principle
                objective = objective + discount * self.value(res.obs["critic"]) * res.truncated.float()
            policy_obs.append(obs["policy"].detach())
            critic_obs.append(obs["critic"].detach())
            next_critic_obs.append(res.obs["critic"].detach())
            rewards.append(res.reward.detach())
            masks.append(live)
            terminal.append(res.terminated.float())
            bootstrap.append(res.truncated.float())
            if "log" in res.info:
                episode_logs.append(res.info["log"])
            alive = alive & ~(res.terminated | res.truncated)
            obs = res.obs
        # + γ^H V(s_H) for envs whose episode runs past the window
        objective = objective + discount * self.value(obs["critic"]) * alive.float()
        actor_loss = -objective.sum() / (n * h)
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.actor.parameters(), cfg.max_grad_norm)
        if torch.isfinite(grad_norm) and rl_iteration >= cfg.critic_warmup:
            self.actor_opt.step()
        env.detach_()

        critic_loss = self._update_critic(
            torch.stack(critic_obs), torch.stack(next_critic_obs), torch.stack(rewards),
            torch.stack(masks), torch.stack(terminal), torch.stack(bootstrap),
        )  # fmt: skip
        # normalizers learn from this window after both updates (the updates saw the rollout's normalization)
        self.actor.normalizer.update(torch.cat(policy_obs))
        self.critic_norm.update(torch.cat(critic_obs))
        self.obs = env.reset_pending()
        self.env_steps += self.env_steps_per_iteration
        self.iterations += 1
        logs = {
            "loss/actor": actor_loss.item(),
            "loss/critic": critic_loss,
            "grad_norm": float(grad_norm),
            "reward": float(torch.stack(rewards).mean()),
            "lr_factor": lr_factor,
        }
        logs.update(merge_episode_logs(episode_logs))
        return logs

    @torch.no_grad()
    def _targets(self, next_obs: Tensor, rewards: Tensor, masks: Tensor, terminal: Tensor, bootstrap: Tensor) -> Tensor:
        """TD(λ) targets (H, N) with the target critic; episodes cut at termination, bootstrapped at time limits."""
        cfg = self.cfg
        h, n = rewards.shape
        next_v = self.value(next_obs.flatten(0, 1), target=True).view(h, n)
        targets = torch.zeros_like(rewards)
        ret = next_v[-1]  # G_H ≈ V(s_H)
        for t in reversed(range(h)):
            cut = terminal[t] + bootstrap[t]  # the episode ends at s_{t+1}
            # G_t = r_t + γ ((1 − λ) V(s_{t+1}) + λ G_{t+1}), with G_{t+1} := V(s_{t+1}) at the end of an episode
            blended = (1 - cfg.lam) * next_v[t] + cfg.lam * ret
            blended = torch.where(cut > 0, next_v[t], blended)
            ret = rewards[t] + cfg.gamma * (1 - terminal[t]) * blended
            targets[t] = ret
        return targets

    def _update_critic(self, obs: Tensor, next_obs: Tensor, rewards: Tensor, masks: Tensor, terminal: Tensor,
                       bootstrap: Tensor) -> float:  # fmt: skip
        cfg = self.cfg
        targets = self._targets(next_obs, rewards, masks, terminal, bootstrap)
        keep = masks.flatten() > 0
        x, y = obs.flatten(0, 1)[keep], targets.flatten()[keep]
        total, count = 0.0, 0
        mb = max(1, x.shape[0] // cfg.critic_minibatches)
        for _ in range(cfg.critic_iterations):
            perm = torch.randperm(x.shape[0], device=x.device)
            for i in range(cfg.critic_minibatches):
                idx = perm[i * mb : (i + 1) * mb]
                loss = (self.value(x[idx]) - y[idx]).square().mean()
                self.critic_opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(self.critic.parameters(), cfg.max_grad_norm)
                self.critic_opt.step()
                total, count = total + loss.item(), count + 1
        with torch.no_grad():
            for p, pt in zip(self.critic.parameters(), self.critic_target.parameters(), strict=True):
                pt.lerp_(p, 1.0 - cfg.target_alpha)
        return total / max(1, count)

    def policy(self) -> MLPPolicy:
        """The deterministic deployable actor."""
        return self.actor

    def state_dict(self) -> dict:
        """Everything needed to resume exactly."""
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "critic_norm": self.critic_norm.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "env_steps": self.env_steps,
            "iterations": self.iterations,
            "obs": dict(self.obs),
            "cloner": self.cloner.state_dict() if self.cloner is not None else {},
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` saved."""
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        self.critic_norm.load_state_dict(state["critic_norm"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.env_steps, self.iterations = int(state["env_steps"]), int(state["iterations"])
        self.obs = {k: v.to(self.env.device) for k, v in state["obs"].items()}
        if self.cloner is not None:
            self.cloner.load_state_dict(state["cloner"])
