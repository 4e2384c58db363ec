"""TD3 with an asymmetric actor-critic over many parallel environments.

The actor (deployable, small) sees `policy` observations; the twin critics see privileged `critic`
observations. Each iteration steps every env once, stores the transitions in a device-resident ring
buffer and takes `updates_per_iteration` gradient steps (Fujimoto et al. 2018; parallel-env setting after
"Learning to Fly in Seconds" and FastTD3). A reward curriculum raises penalty weights during training.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from robolearn.core.env import BatchedEnv
from robolearn.data.replay import ReplayBuffer
from robolearn.data.store import Feature
from robolearn.learners.common import RewardCurriculum, merge_episode_logs
from robolearn.networks import EmpiricalNormalizer, EnsembleMLP, MLPPolicy


@dataclass(kw_only=True)
class TD3Cfg:
    """Twin Delayed DDPG hyper-parameters."""

    buffer_size: int = 1_000_000
    """Replay capacity in transitions."""
    batch_size: int = 4096
    """Transitions per gradient step."""
    updates_per_iteration: int = 2
    """Critic updates per parallel env step."""
    learning_starts: int = 16_384
    """Transitions collected (with the initial policy plus noise) before the critics start learning."""
    actor_starts: int = 0
    """Transitions collected before the actor starts learning (a critic warm-up, as in Learning to Fly: 30k);
    counted like `learning_starts`, and never earlier than it."""
    n_step: int = 1
    """Multi-step TD targets: r_t + γ r_t+1 + … + γⁿ Q(s_t+n), cut at episode ends (FastTD3 uses 3). Values
    propagate n times faster through the horizon; 1 is plain TD3."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak averaging rate of the target networks."""
    actor_lr: float = 1e-3
    """Actor learning rate."""
    critic_lr: float = 1e-3
    """Critic learning rate."""
    policy_delay: int = 2
    """Critic updates per actor update. The critic targets follow every critic update and the actor target every
    actor update (as in rl_tools' TD3, which Learning to Fly uses: twice as fast a value propagation as updating
    both targets only with the actor)."""
    exploration_noise: float = 0.1
    """Std of Gaussian action noise while collecting (normalized units)."""
    target_noise: float = 0.2
    """Std of target policy smoothing noise."""
    target_noise_clip: float = 0.5
    """Clip of target policy smoothing noise."""
    actor_hidden: tuple[int, ...] = (64, 64)
    """Actor hidden widths (the deployable policy)."""
    critic_hidden: tuple[int, ...] = (256, 256)
    """Critic hidden widths."""
    activation: str = "relu"
    """Hidden activation."""
    normalize_until: int = 2_000_000
    """Observation statistics are updated until this many samples, then frozen (keeps replay targets stable)."""
    curriculum: dict[str, float] = field(default_factory=dict)
    """Reward scales to reach by `curriculum_steps` (ramped from the task's values), e.g. {"action": -0.5}."""
    curriculum_steps: int = 2_000_000
    """Env steps over which the curriculum ramps."""
    lr_decay_steps: int = 0
    """Anneal both learning rates linearly to `lr_final_fraction` of their values over this many env steps from
    `lr_decay_start` (0: constant rates). Lets a policy that found the goal settle instead of drifting on the
    critic's noise."""
    lr_decay_start: int = 0
    """Env steps at constant learning rates before the annealing begins."""
    lr_final_fraction: float = 0.1
    """Learning-rate factor at the end of `lr_decay_steps` (and after)."""


def polyak(net: nn.Module, target: nn.Module, tau: float) -> None:
    """Move `target` toward `net`: target ← (1 − τ) target + τ net, parameter by parameter."""
    for p, pt in zip(net.parameters(), target.parameters(), strict=True):
        pt.lerp_(p, tau)


class TD3:
    """Asymmetric TD3 learner over a batched env."""

    def __init__(self, env: BatchedEnv, cfg: TD3Cfg) -> None:
        self.env, self.cfg = env, cfg
        dev = env.device
        dims = env.spec.obs_dims
        self.a_dim = a_dim = env.spec.action.dim
        self.actor = MLPPolicy(dims["policy"], a_dim, cfg.actor_hidden, cfg.activation, output="tanh").to(dev)
        self.actor.normalizer.until = cfg.normalize_until
        self.critic_norm = EmpiricalNormalizer(dims["critic"], until=cfg.normalize_until).to(dev)
        self.critics = EnsembleMLP(2, dims["critic"] + a_dim, cfg.critic_hidden, 1, cfg.activation).to(dev)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critics_target = copy.deepcopy(self.critics).requires_grad_(False)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critics.parameters(), lr=cfg.critic_lr)
        shapes = {
            "policy": (dims["policy"],),
            "critic": (dims["critic"],),
            "action": (a_dim,),
            "reward": (),
            "next_policy": (dims["policy"],),
            "next_critic": (dims["critic"],),
            "terminated": (),
            "discount": (),
        }
        self.replay = ReplayBuffer(cfg.buffer_size, {k: Feature(v) for k, v in shapes.items()}, device=dev)
        self.buffer = self.replay.data
        self.curriculum = RewardCurriculum(env, cfg.curriculum, cfg.curriculum_steps) if cfg.curriculum else None
        if cfg.n_step < 1:
            raise ValueError(f"td3: n_step must be at least 1, got {cfg.n_step}")
        self.pending: list[dict[str, Tensor]] = []  # the last n_step parallel transitions, oldest first
        self.obs = env.reset()
        self.env_steps = 0
        self.num_updates = 0

    @property
    def size(self) -> int:
        """Transitions in the replay buffer."""
        return self.replay.size

    @property
    def ptr(self) -> int:
        """Next replay slot to write."""
        return self.replay.ptr

    @property
    def env_steps_per_iteration(self) -> int:
        """Environment transitions collected per `train_iteration`."""
        return self.env.num_envs

    def q(self, critics: EnsembleMLP, critic_obs: Tensor, action: Tensor) -> Tensor:
        """Twin Q-values (2, B) of normalized critic observations and actions."""
        return critics(torch.cat((self.critic_norm(critic_obs), action), -1)).squeeze(-1)

    @torch.no_grad()
    def act(self, policy_obs: Tensor) -> Tensor:
        """Exploration action π(o) + N(0, σ²), clipped to [-1, 1].

        Also during warm-up: the initial actor outputs the task's neutral action (a ≈ 0, e.g. hover), which
        explores far more usefully than uniform random motor commands that flip a quadrotor within 0.3 s.
        """
        action = self.actor(policy_obs)
        return (action + self.cfg.exploration_noise * torch.randn_like(action)).clamp(-1.0, 1.0)

    @torch.no_grad()
    def store(
        self,
        obs: dict,
        action: Tensor,
        reward: Tensor,
        next_obs: dict,
        terminated: Tensor,
        truncated: Tensor | None = None,
    ) -> None:
        """Add N parallel transitions; `next_obs` is the pre-reset observation (final_obs).

        With `n_step` > 1 the transitions wait until n steps of each env are known; then the oldest becomes the
        n-step transition (o_t, a_t, Σ γᵏ r_t+k, o_t+m, terminated, γᵐ), where m ≤ n stops at the episode's end.
        """
        if truncated is None:
            truncated = torch.zeros_like(terminated)
        self.pending.append(
            {
                "policy": obs["policy"],
                "critic": obs["critic"],
                "action": action,
                "reward": reward,
                "next_policy": next_obs["policy"],
                "next_critic": next_obs["critic"],
                "terminated": terminated.float(),
                "done": (terminated | truncated).float(),
            }
        )
        if len(self.pending) < self.cfg.n_step:
            return
        self.replay.add(self.n_step_transition(self.pending, self.cfg.gamma))
        self.pending.pop(0)

    @staticmethod
    def n_step_transition(steps: list[dict[str, Tensor]], gamma: float) -> dict[str, Tensor]:
        """The transition from the oldest of `steps` (consecutive parallel steps), cut at the first episode end."""
        first = steps[0]
        ret = torch.zeros_like(first["reward"])
        alive = torch.ones_like(first["reward"])  # 1 while no episode end came before step k
        last = torch.zeros_like(first["reward"], dtype=torch.long)  # index of the step whose next obs is used
        for k, st in enumerate(steps):
            ret += alive * gamma**k * st["reward"]
            last = torch.where(alive > 0, k, last)
            alive = alive * (1.0 - st["done"])
        rows = torch.arange(len(ret), device=ret.device)

        def at_last(key: str) -> Tensor:
            return torch.stack([st[key] for st in steps])[last, rows]

        return {
            "policy": first["policy"],
            "critic": first["critic"],
            "action": first["action"],
            "reward": ret,
            "next_policy": at_last("next_policy"),
            "next_critic": at_last("next_critic"),
            "terminated": at_last("terminated"),
            "discount": gamma ** (last + 1).to(ret.dtype),
        }

    @torch.no_grad()
    def td_target(
        self,
        reward: Tensor,
        next_policy: Tensor,
        next_critic: Tensor,
        terminated: Tensor,
        discount: Tensor | float | None = None,
    ) -> Tensor:
        """Y = r + γᵐ (1 − terminated) min(Q1', Q2')(s', a'); truncated transitions bootstrap (γᵐ = γ for 1 step)."""
        cfg = self.cfg
        # target policy smoothing: a' = clip(π'(o') + clip(ε, ±c), ±1)
        next_a = self.actor_target(next_policy)
        eps = (cfg.target_noise * torch.randn_like(next_a)).clamp(-cfg.target_noise_clip, cfg.target_noise_clip)
        next_a = (next_a + eps).clamp(-1.0, 1.0)
        q_t = self.q(self.critics_target, next_critic, next_a).min(0).values
        discount = cfg.gamma if discount is None else discount
        return reward + discount * (1.0 - terminated) * q_t

    def update(self) -> dict[str, float]:
        """One critic step and its target update; every `policy_delay` steps one actor step and its target update."""
        cfg = self.cfg
        if cfg.lr_decay_steps > 0:
            self._anneal_lr()
        b = self.replay.sample(cfg.batch_size)
        y = self.td_target(b["reward"], b["next_policy"], b["next_critic"], b["terminated"], b["discount"])
        q = self.q(self.critics, b["critic"], b["action"])
        critic_loss = (q - y).square().mean(1).sum()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        self.num_updates += 1
        with torch.no_grad():
            polyak(self.critics, self.critics_target, cfg.tau)
        logs = {"loss/critic": critic_loss.item(), "q": q[0].mean().item()}
        if self.num_updates % cfg.policy_delay == 0 and self.env_steps >= cfg.actor_starts:
            # actor: maximize Q1(s, π(o))
            x = torch.cat((self.critic_norm(b["critic"]), self.actor(b["policy"])), -1)
            actor_loss = -self.critics.member(0, x).mean()  # Q1
            self.actor_opt.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_opt.step()
            with torch.no_grad():
                polyak(self.actor, self.actor_target, cfg.tau)
                self.actor_target.normalizer.load_state_dict(self.actor.normalizer.state_dict())
            logs["loss/actor"] = actor_loss.item()
        return logs

    def lr_factor(self) -> float:
        """Learning-rate factor now: 1 until `lr_decay_start`, then linear to `lr_final_fraction`.

        A function of the env step count, so a resumed run anneals exactly as an uninterrupted one.
        """
        cfg = self.cfg
        if cfg.lr_decay_steps <= 0:
            return 1.0
        done = min(max(self.env_steps - cfg.lr_decay_start, 0) / cfg.lr_decay_steps, 1.0)
        return 1.0 - (1.0 - cfg.lr_final_fraction) * done

    def _anneal_lr(self) -> None:
        f = self.lr_factor()
        for opt, lr in ((self.actor_opt, self.cfg.actor_lr), (self.critic_opt, self.cfg.critic_lr)):
            for group in opt.param_groups:
                group["lr"] = lr * f

    def train_iteration(self) -> dict[str, float]:
        """Step every env once, store, then take `updates_per_iteration` gradient steps."""
        logs: dict[str, float] = {}
        if self.curriculum is not None:
            logs.update(self.curriculum.update(self.env_steps))
        action = self.act(self.obs["policy"])
        res = self.env.step(action)
        self.store(self.obs, action, res.reward, res.info["final_obs"], res.terminated, res.truncated)
        self.actor.normalizer.update(self.obs["policy"])
        self.critic_norm.update(self.obs["critic"])
        self.obs = res.obs
        self.env_steps += self.env_steps_per_iteration
        if self.size >= self.cfg.learning_starts:
            for _ in range(self.cfg.updates_per_iteration):
                logs.update(self.update())
        logs["reward"] = float(res.reward.mean())
        if "log" in res.info:
            logs.update(merge_episode_logs([res.info["log"]]))
        return logs

    def policy(self) -> MLPPolicy:
        """The deterministic deployable actor."""
        return self.actor

    def state_dict(self) -> dict:
        """Everything needed to resume exactly (the replay buffer included)."""
        return {
            "actor": self.actor.state_dict(),
            "actor_target": self.actor_target.state_dict(),
            "critics": self.critics.state_dict(),
            "critics_target": self.critics_target.state_dict(),
            "critic_norm": self.critic_norm.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "buffer": {k: v[: self.size] for k, v in self.buffer.items()},
            "ptr": self.ptr,
            "size": self.size,
            "env_steps": self.env_steps,
            "num_updates": self.num_updates,
            "obs": dict(self.obs),
            "pending": self._stacked_pending(),
        }

    def _stacked_pending(self) -> dict[str, Tensor]:
        """The n-step window's steps not yet turned into transitions, stacked along a new first axis."""
        if not self.pending:
            return {}
        return {k: torch.stack([step[k] for step in self.pending]) for k in self.pending[0]}

    def warm_start(self, state: dict) -> list[str]:
        """Start from another run's actor (any learner's), and from a TD3 run's critics when their shapes match.

        The buffer, optimizers and counters start fresh. A fresh critic under a good actor pulled it apart within
        ~20k actor updates on quadrotor-hover (BENCHMARKS.md, "TD3 from scratch"), so a TD3 source's critics come
        along (its targets too).
        """
        self.actor.load_state_dict(state["actor"])
        self.actor_target.load_state_dict(state.get("actor_target", state["actor"]))
        loaded = ["actor"]
        critics, norm = state.get("critics", {}), state.get("critic_norm", {})
        mine = {**self.critics.state_dict(), **{f"norm.{k}": v for k, v in self.critic_norm.state_dict().items()}}
        theirs = {**critics, **{f"norm.{k}": v for k, v in norm.items()}}
        if mine.keys() == theirs.keys() and all(mine[k].shape == theirs[k].shape for k in mine):
            self.critics.load_state_dict(critics)
            self.critics_target.load_state_dict(state.get("critics_target", critics))
            self.critic_norm.load_state_dict(norm)
            loaded.append("critics")
        return loaded

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` saved."""
        self.actor.load_state_dict(state["actor"])
        self.actor_target.load_state_dict(state["actor_target"])
        self.critics.load_state_dict(state["critics"])
        self.critics_target.load_state_dict(state["critics_target"])
        self.critic_norm.load_state_dict(state["critic_norm"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.replay.ptr, self.replay.size = int(state["ptr"]), int(state["size"])
        for k, v in state["buffer"].items():
            self.buffer[k][: self.size] = v.to(self.buffer[k].device)
        self.env_steps, self.num_updates = int(state["env_steps"]), int(state["num_updates"])
        self.obs = {k: v.to(self.env.device) for k, v in state["obs"].items()}
        pending = {k: v.to(self.env.device) for k, v in state.get("pending", {}).items()}
        steps = len(next(iter(pending.values()))) if pending else 0
        self.pending = [{k: v[i] for k, v in pending.items()} for i in range(steps)]
