"""H∞ actor–disturber training: a PPO actor against a learned disturber, kept stable by an H∞ constraint.

After Long et al., "Learning H-Infinity Locomotion Control" (CoRL 2024, arXiv:2404.14405). Two agents share the
batched env, which must implement the disturbance interface (`robolearn.core.env.Disturbable`):

- the **actor** (the deployable policy): asymmetric PPO, Gaussian policy on `policy` observations, value on `critic`
  observations, trained on the task reward r_t;
- the **disturber**: its own PPO agent on the privileged `critic` state (which includes the current disturbance);
  its Gaussian sample u_t is squashed and scaled to the bound, d_t = ι · tanh(u_t) ⊙ d_max, where ι ∈ [0, 1] is the
  disturbance intensity of the curriculum.

The form implemented here (notation of the paper; ‖d‖ is the normalized intensity ‖d_t ⊘ d_max‖₂ / √D ∈ [0, 1]):

    cost        C_t = max(0, r*_t − r_t)          r* = the oracle (ideal) per-step reward: `oracle_reward`, or
                                                  an EMA of the rollout's `oracle_quantile` reward quantile
    disturber   max_δ E[Σ γ^t C_t]   s.t.   E[C_t] ≤ η E[‖d_t‖]               (the H∞ constraint)
    Lagrangian  r^δ_t = C_t − λ (C_t − η ‖d_t‖)                           (the disturber's PPO reward)
    dual ascent λ ← max(0, λ + α_λ (E[C] − η E[‖d‖]))                     (once per iteration, rollout means)
    curriculum  ι ← clip(ι ± Δι, ι_min, 1): up when the constraint holds, down when it is violated

The constraint bounds the ratio of the actor's cost to the disturbance intensity by η, the gain bound of H∞
control: while the actor cannot keep its cost below η per unit of disturbance, λ grows and turns the disturber from
"hurt most" towards "hurt efficiently", so the game stays stable; once the actor copes, λ decays to 0, the
disturber maximizes the cost again, and the curriculum raises the intensity. The actor itself maximizes the task
reward: with C = r* − r, a −λ C term in its objective would only rescale its advantages.

`disturber: random` is the domain-randomization baseline: each env holds a uniform random disturbance in the same
bound, ±ι·d_max, redrawn on average every `random_hold_s`, with ι ramped linearly by Δι per iteration up to 1 (the
constraint-gated curriculum would never ramp here: without a disturber that adapts, the task's own cost, e.g. from
random starts, keeps the constraint violated at low intensity). `none` trains the same actor with no disturbance.
`expert_iterations` > 0 warm-starts the actor by DAgger on the task's scripted expert (as SHAC does), followed by
`critic_warmup` iterations that fit only the actor's value function.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from robolearn.core.env import BatchedEnv, check_disturbable
from robolearn.core.errors import ConfigError
from robolearn.learners import distributed
from robolearn.learners.common import ExpertCloner, merge_episode_logs
from robolearn.learners.ppo import PPO, PPOCfg
from robolearn.networks import MLPPolicy


def _disturber_ppo() -> PPOCfg:
    return PPOCfg(init_std=1.0, actor_hidden=(64, 64), critic_hidden=(128, 128), lr=3e-4, desired_kl=None)


@dataclass(kw_only=True)
class HinfCfg:
    """H∞ actor–disturber hyper-parameters: the actor's PPO under `actor`, the disturber's under `disturber_ppo`."""

    actor: PPOCfg = field(default_factory=PPOCfg)
    """PPO of the actor (the deployable policy)."""
    disturber: Literal["learned", "random", "none"] = "learned"
    """learned: the H∞ disturber; random: random disturbances (baseline); none: no disturbance."""
    disturber_ppo: PPOCfg = field(default_factory=_disturber_ppo)
    """PPO of the disturber (its `num_steps` is ignored: it learns from the actor's rollout)."""
    eta: float = 0.5
    """H∞ gain bound η: allowed expected cost per unit of normalized disturbance intensity."""
    lambda_init: float = 0.0
    """Initial Lagrange multiplier λ."""
    lambda_lr: float = 1.0
    """Dual-ascent step α_λ on the constraint value E[C] − η E[‖d‖]."""
    lambda_max: float = 100.0
    """Upper clamp of λ (keeps the disturber's reward bounded)."""
    oracle_reward: float | None = None
    """Oracle per-step reward r*; None: an EMA of the rollout's `oracle_quantile` per-step reward quantile."""
    oracle_quantile: float = 0.9
    """Quantile of the rollout's per-step rewards that estimates r* when `oracle_reward` is None."""
    oracle_ema: float = 0.9
    """EMA factor of that estimate (weight of the previous value)."""
    intensity_start: float = 0.1
    """Initial disturbance intensity ι (fraction of the task's `disturbance_limit`)."""
    intensity_step: float = 0.02
    """Curriculum step Δι per iteration (learned: ± by the constraint; random: + until 1)."""
    intensity_min: float = 0.05
    """Lowest intensity the curriculum goes down to."""
    random_hold_s: float = 0.5
    """random: mean time a random disturbance is held [s] before it is redrawn."""
    stagger_episodes: bool = True
    """Spread the first episodes' time limits uniformly (as legged_gym does), so that resets, and the transient
    cost of their random starts, do not arrive in bursts that drive λ and the curriculum."""
    expert_iterations: int = 0
    """Warm start: this many DAgger iterations on the task's scripted expert before RL (0: from scratch)."""
    critic_warmup: int = 0
    """Iterations after the warm start that fit only the actor's value function (the actor is not changed)."""

    def __post_init__(self) -> None:
        """Reject values that make the game meaningless."""
        if self.eta <= 0 or self.lambda_lr < 0 or self.lambda_init < 0:
            raise ConfigError(f"hinf: eta must be > 0 and lambda_lr, lambda_init ≥ 0 (got eta={self.eta}, "
                              f"lambda_lr={self.lambda_lr}, lambda_init={self.lambda_init})")
        if not 0 <= self.intensity_min <= self.intensity_start <= 1:
            raise ConfigError(f"hinf: need 0 ≤ intensity_min ≤ intensity_start ≤ 1 (got {self.intensity_min}, "
                              f"{self.intensity_start})")


def dual_ascent(lam: float, mean_cost: float, mean_intensity: float, eta: float, lr: float,
                lam_max: float = float("inf")) -> tuple[float, float]:  # fmt: skip
    """(λ', g): one dual-ascent step λ' = clip(λ + lr · g, 0, lam_max) on the constraint g = E[C] − η E[‖d‖]."""
    g = mean_cost - eta * mean_intensity
    return min(lam_max, max(0.0, lam + lr * g)), g


def squash(raw: Tensor, intensity: float, limit: Tensor) -> Tensor:
    """Disturbance (N, D) = ι · tanh(raw) ⊙ limit: inside ±ι·limit for any raw output."""
    return intensity * torch.tanh(raw) * limit


class Hinf:
    """Actor (PPO) + disturber (PPO, learned / random / none) + Lagrange multiplier + intensity curriculum."""

    supports_ddp = True
    """Gradients, KL and normalizer statistics are averaged over torchrun ranks."""

    def __init__(self, env: BatchedEnv, cfg: HinfCfg) -> None:
        self.env, self.cfg = env, cfg
        self.actor_ppo = PPO(env, cfg.actor)
        self.disturber_ppo: PPO | None = None
        if cfg.disturber != "none":
            check_disturbable(env, f"hinf (disturber: {cfg.disturber})")
            self.limit = env.disturbance_limit.to(env.device)
            dim = env.disturbance_dim
            if cfg.disturber == "learned":
                dcfg = dataclasses.replace(cfg.disturber_ppo, num_steps=cfg.actor.num_steps)
                c = env.spec.obs_dims["critic"]
                self.disturber_ppo = PPO(env, dcfg, obs_dims={"policy": c, "critic": c}, action_dim=dim, reset=False)
            self.random_d = torch.zeros(env.num_envs, dim, device=env.device)
        warm = cfg.expert_iterations > 0
        self.cloner = ExpertCloner(env, self.actor_ppo.actor, cfg.expert_iterations, cfg.actor.num_steps) if warm \
            else None
        if cfg.stagger_episodes:  # the envs were just reset together: give each a random elapsed time
            env.episode_length[:] = (env.rand(env.num_envs) * env.cfg.max_episode_steps).long()
        self.lam = cfg.lambda_init
        self.intensity = cfg.intensity_start if cfg.disturber != "none" else 0.0
        self.oracle = cfg.oracle_reward if cfg.oracle_reward is not None else float("nan")
        self.iterations = 0
        self.env_steps = 0

    @property
    def env_steps_per_iteration(self) -> int:
        """Environment transitions per `train_iteration`."""
        return self.cfg.actor.num_steps * self.env.num_envs

    @property
    def warming_up(self) -> bool:
        """Whether the next iteration is a DAgger warm-start iteration."""
        return self.cloner is not None and self.iterations < self.cfg.expert_iterations

    # ---- disturbance ---------------------------------------------------------------------------
    @torch.no_grad()
    def disturb(self, critic_obs: Tensor, t: int) -> Tensor:
        """Choose and apply this step's disturbance; returns its normalized intensity ‖d ⊘ d_max‖ / √D (N,)."""
        cfg, env = self.cfg, self.env
        if cfg.disturber == "none":
            return torch.zeros(env.num_envs, device=env.device)
        if self.disturber_ppo is not None:
            raw = self.disturber_ppo.act({"policy": critic_obs, "critic": critic_obs}, t)
            wrench = squash(raw, self.intensity, self.limit)
        else:  # random: redraw with probability dt / hold per step, i.e. hold for ~random_hold_s on average
            redraw = torch.rand(env.num_envs, 1, device=env.device) < env.step_dt / max(cfg.random_hold_s, 1e-9)
            fresh = 2 * torch.rand_like(self.random_d) - 1
            self.random_d = torch.where(redraw, fresh, self.random_d)
            wrench = self.intensity * self.random_d * self.limit
        env.set_disturbance(wrench)
        return (wrench / self.limit).norm(dim=-1) / self.limit.numel() ** 0.5

    # ---- one iteration -------------------------------------------------------------------------
    def train_iteration(self) -> dict[str, float]:
        """Rollout (disturber then actor each step) → actor PPO update → disturber PPO update → λ, ι, r*."""
        cfg, env = self.cfg, self.env
        actor = self.actor_ppo
        if self.warming_up:
            actor.obs, logs = self.cloner.iteration(actor.obs)
            return self._done(logs)
        t_steps, g = cfg.actor.num_steps, cfg.actor.gamma
        rewards = torch.zeros(t_steps, env.num_envs, device=env.device)
        intensity = torch.zeros_like(rewards)
        boot = torch.zeros_like(rewards)  # disturber: γ V(s_final) at time limits
        episode_logs: list[dict[str, float]] = []
        dis = self.disturber_ppo
        for t in range(t_steps):
            obs = actor.obs
            intensity[t] = self.disturb(obs["critic"], t)
            action = actor.act(obs, t)
            res = env.step(action)
            actor.process_step(t, res.reward, res.terminated, res.truncated, res.info)
            rewards[t] = res.reward
            if dis is not None:
                dis.storage["done"][t] = (res.terminated | res.truncated).float()
                if bool(res.truncated.any()):
                    with torch.no_grad():
                        boot[t] = g * dis.value(res.info["final_obs"]["critic"]) * res.truncated.float()
            actor.obs = res.obs
            if "log" in res.info:
                episode_logs.append(res.info["log"])

        # r* and the cost C_t = max(0, r* − r_t)
        if cfg.oracle_reward is None:
            q = float(distributed.mean(torch.quantile(rewards.flatten().float(), cfg.oracle_quantile)))
            self.oracle = q if self.oracle != self.oracle else cfg.oracle_ema * self.oracle + (1 - cfg.oracle_ema) * q
        cost = (self.oracle - rewards).clamp_min(0.0)
        mean_cost = float(distributed.mean(cost.mean()))
        mean_intensity = float(distributed.mean(intensity.mean()))

        rl_iteration = self.iterations - cfg.expert_iterations
        adv, ret = actor.compute_returns(actor.obs["critic"])
        logs = actor.update(adv, ret, train_policy=rl_iteration >= cfg.critic_warmup)
        actor.update_normalizers()
        if dis is not None:
            # r^δ_t = C_t − λ (C_t − η ‖d_t‖), plus the time-limit bootstrap
            dis.storage["reward"] = cost - self.lam * (cost - cfg.eta * intensity) + boot
            d_adv, d_ret = dis.compute_returns(actor.obs["critic"])
            logs.update({f"disturber/{k}": v for k, v in dis.update(d_adv, d_ret).items()})
            dis.update_normalizers()
            lam, constraint = dual_ascent(self.lam, mean_cost, mean_intensity, cfg.eta, cfg.lambda_lr, cfg.lambda_max)
            self.lam = lam
        else:
            constraint = mean_cost - cfg.eta * mean_intensity
        if cfg.disturber == "learned":  # the game's curriculum follows the H∞ constraint
            step = cfg.intensity_step if constraint <= 0 else -cfg.intensity_step
            self.intensity = min(1.0, max(cfg.intensity_min, self.intensity + step))
        elif cfg.disturber == "random":  # domain randomization: a plain linear ramp to the full bound
            self.intensity = min(1.0, self.intensity + cfg.intensity_step)
        logs.update({
            "reward": float(rewards.mean()),
            "hinf/cost": mean_cost,
            "hinf/disturbance": mean_intensity,
            "hinf/lambda": self.lam,
            "hinf/intensity": self.intensity,
            "hinf/constraint": constraint,
            "hinf/oracle_reward": self.oracle,
        })  # fmt: skip
        logs.update(merge_episode_logs(episode_logs))
        return self._done(logs)

    def _done(self, logs: dict[str, float]) -> dict[str, float]:
        self.iterations += 1
        self.env_steps += self.env_steps_per_iteration
        return logs

    # ---- deployment and checkpoints ------------------------------------------------------------
    def policy(self) -> MLPPolicy:
        """The deterministic deployable actor (Gaussian mean, clamped)."""
        return self.actor_ppo.actor

    def state_dict(self) -> dict:
        """Everything needed to resume exactly: both agents, λ, ι, r*, the random disturbances, the warm start."""
        actor_state = self.actor_ppo.state_dict()
        return {
            "actor": actor_state.pop("actor"),  # where `load_policy` and the exporter look for the actor
            "actor_ppo": actor_state,
            "disturber": self.disturber_ppo.state_dict() if self.disturber_ppo is not None else {},
            "random_d": self.random_d if self.cfg.disturber != "none" else torch.zeros(0),
            "lambda": self.lam,
            "intensity": self.intensity,
            "oracle": self.oracle,
            "iterations": self.iterations,
            "env_steps": self.env_steps,
            # the warm start's labelled buffer (tens of MB) only matters while the warm start runs
            "cloner": self.cloner.state_dict() if self.cloner is not None and self.warming_up else {},
        }

    def warm_start(self, state: dict) -> list[str]:
        """Start the actor agent from another PPO or H∞ run (see `PPO.warm_start`).

        The disturber, λ and the intensity curriculum start fresh.
        """
        return self.actor_ppo.warm_start(state)

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` saved."""
        self.actor_ppo.load_state_dict({**state["actor_ppo"], "actor": state["actor"]})
        if self.disturber_ppo is not None:
            self.disturber_ppo.load_state_dict(state["disturber"])
        if self.cfg.disturber != "none":
            self.random_d = state["random_d"].to(self.env.device)
        self.lam, self.intensity = float(state["lambda"]), float(state["intensity"])
        self.oracle = float(state["oracle"])
        self.iterations, self.env_steps = int(state["iterations"]), int(state["env_steps"])
        if self.cloner is not None and state["cloner"]:
            self.cloner.load_state_dict(state["cloner"])
