"""The batched environment contract: N copies of a task stepped together, all tensors on one device.

A task subclasses `BatchedEnv` and fills in small hooks, in the style of Isaac Lab's direct envs:

    _apply_action(action)      store the (N, A) normalized action; called once per policy step
    _physics_step()            advance the simulation by sim_dt; called `decimation` times
    _observe() -> Obs          {"policy": (N, Dp), "critic": (N, Dc), ...}
    _reward_terms() -> dict    named per-env terms; reward = sum(term * scale * step_dt)
    _terminated() -> Tensor    (N,) bool failure/success; time limits are handled here
    _reset_idx(env_ids)        re-initialize those envs (sample new states, goals, parameters)

`step` validates the action, runs the hooks, sums rewards, tracks episode sums per reward term,
auto-resets finished envs and returns the observation after reset.

Tasks whose hooks are written in differentiable torch set `differentiable = True`; then `step_grad` keeps the
autograd graph from the action through the physics to observations and rewards (for analytic-gradient learners
such as SHAC). It does not auto-reset: finished envs are marked pending and keep stepping (the learner masks them)
until `reset_pending()`, which the learner calls after its backward pass and `detach_()`. The observation *before* reset
is in `info["final_obs"]` so off-policy learners can bootstrap truncated episodes correctly. Finished
episodes report per-env metrics in `info["episode"]` ({"env_ids": (K,), name: (K,)}) and their means in
`info["log"]` ({"episode/<name>": float}).
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

import torch
from torch import Tensor

from robolearn.core.errors import RobolearnError
from robolearn.core.types import Obs, StepResult, TaskSpec


@dataclass(kw_only=True)
class EnvCfg:
    """Fields every task has; tasks extend this dataclass."""

    num_envs: int = 1024
    """Number of parallel environments."""
    device: str = "cpu"
    """Torch device the environments live on ("cpu", "cuda", "cuda:1")."""
    sim_dt: float = 0.01
    """Physics step [s]."""
    decimation: int = 1
    """Physics steps per policy step; the policy runs at 1 / (sim_dt * decimation) Hz."""
    episode_length_s: float = 5.0
    """Time limit [s]; reaching it truncates (not terminates) the episode."""
    reward_scales: dict[str, float] = field(default_factory=dict)
    """Weight of each named reward term (per second of simulated time)."""
    nonnegative_reward: bool = False
    """Clip the per-step sum of the non-termination terms at 0 (as Learning to Fly does), so that when costs
    exceed the termination penalty an agent cannot gain by ending the episode early."""

    @property
    def step_dt(self) -> float:
        """Policy step [s]."""
        return self.sim_dt * self.decimation

    @property
    def max_episode_steps(self) -> int:
        """Time limit in policy steps."""
        return math.ceil(self.episode_length_s / self.step_dt)


class NonFiniteActionError(RobolearnError, ValueError):
    """An action contained NaN or inf."""


@runtime_checkable
class Disturbable(Protocol):
    """A task that accepts an external disturbance (H∞ disturber, random pushes, robustness sweeps).

    `disturbance_limit` (disturbance_dim,) is the largest absolute value of each component (e.g. force N xyz, then
    torque N·m xyz). `set_disturbance(wrench)` takes (num_envs, disturbance_dim) in the world frame, clips it to the
    limit and holds it until changed; an env's disturbance is zeroed when that env resets. The applied disturbance is
    part of the `critic` observation (term `disturbance`).
    """

    disturbance_dim: int
    disturbance_limit: Tensor

    def set_disturbance(self, wrench: Tensor) -> None:
        """Apply `wrench` (num_envs, disturbance_dim), world frame, clipped to `disturbance_limit`."""
        ...


class NotDisturbableError(RobolearnError, TypeError):
    """A task does not implement the disturbance interface (`Disturbable`)."""


def check_disturbable(env: Any, who: str) -> Disturbable:
    """`env` if it implements `Disturbable` with a valid limit, else a one-line error naming `who` and the task."""
    name = getattr(getattr(env, "spec", None), "name", type(env).__name__)
    missing = [a for a in ("disturbance_dim", "disturbance_limit", "set_disturbance") if not hasattr(env, a)]
    if missing:
        raise NotDisturbableError(f"{who}: task '{name}' does not implement the disturbance interface "
                                  f"(missing {', '.join(missing)}; see robolearn.core.env.Disturbable)")
    limit = env.disturbance_limit
    if not isinstance(limit, Tensor) or tuple(limit.shape) != (env.disturbance_dim,) or not bool(
            (torch.isfinite(limit) & (limit > 0)).all()):
        raise NotDisturbableError(f"{who}: task '{name}': disturbance_limit must be a finite positive tensor of "
                                  f"shape ({env.disturbance_dim},), got {limit!r}")
    return env


CfgT = TypeVar("CfgT", bound=EnvCfg)


class BatchedEnv(Generic[CfgT]):
    """Base class of all tasks; see the module docstring for the hooks."""

    spec: TaskSpec
    termination_terms: tuple[str, ...] = ()
    """Reward terms that fire once at termination (kept out of the `nonnegative_reward` clip)."""
    differentiable: ClassVar[bool] = False
    """Whether the hooks are differentiable torch code, so that `step_grad` can keep the graph."""
    episode_end_hook: Callable[[Tensor], None] | None = None
    """Called by `step` with the ids of the envs that just finished, before they are reset (evaluation uses it to
    record an episode's final state: after `step` returns, those envs already hold the next episode's start)."""

    def __init__(self, cfg: CfgT, seed: int = 0) -> None:
        self.cfg = cfg
        self.num_envs = cfg.num_envs
        self.device = torch.device(cfg.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RobolearnError(f"{type(self).__name__}: device '{cfg.device}' requested but CUDA is not available")
        unknown = set(cfg.reward_scales) - set(self.reward_term_names())
        if unknown:
            raise RobolearnError(
                f"{type(self).__name__}: unknown reward terms {sorted(unknown)}; known: {self.reward_term_names()}"
            )
        self.rng = torch.Generator(device=self.device)
        self.rng.manual_seed(seed)
        n, dev = self.num_envs, self.device
        self.episode_length = torch.zeros(n, dtype=torch.long, device=dev)
        self.episode_sums = {k: torch.zeros(n, device=dev) for k in self.reward_term_names()}
        self.action = torch.zeros(n, self.spec.action.dim, device=dev)
        self.pending = torch.zeros(n, dtype=torch.bool, device=dev)  # finished in `step_grad`, not yet reset

    # ---- hooks -------------------------------------------------------------------------------
    @classmethod
    def reward_term_names(cls) -> list[str]:
        """Names of the reward terms `_reward_terms` returns."""
        raise NotImplementedError

    def _apply_action(self, action: Tensor) -> None:
        raise NotImplementedError

    def _physics_step(self) -> None:
        raise NotImplementedError

    def _observe(self) -> Obs:
        raise NotImplementedError

    def _reward_terms(self) -> dict[str, Tensor]:
        raise NotImplementedError

    def _terminated(self) -> Tensor:
        raise NotImplementedError

    def _reset_idx(self, env_ids: Tensor) -> None:
        raise NotImplementedError

    # ---- contract ----------------------------------------------------------------------------
    @property
    def step_dt(self) -> float:
        """Policy step [s]."""
        return self.cfg.step_dt

    def reset(self) -> Obs:
        """Reset every environment; returns the first observation."""
        ids = torch.arange(self.num_envs, device=self.device)
        self._reset_bookkeeping(ids)
        self._reset_idx(ids)
        return self._observe()

    def step(self, action: Tensor) -> StepResult:
        """Advance every env by one policy step; finished envs are reset before returning."""
        reward, terminated, truncated, obs = self._advance(self._check_action(action))
        info: dict[str, Any] = {"final_obs": obs}
        done = terminated | truncated
        done_ids = done.nonzero(as_tuple=False).squeeze(-1)
        if done_ids.numel() > 0:
            info.update(self._finish(done_ids, terminated))
            if self.episode_end_hook is not None:
                self.episode_end_hook(done_ids)
            self._reset_bookkeeping(done_ids)
            self._reset_idx(done_ids)
            obs = _select(done, self._observe(), obs)
        return StepResult(obs, reward, terminated, truncated, info)

    def step_grad(self, action: Tensor) -> StepResult:
        """`step` keeping the autograd graph from `action` to obs and reward, without auto-reset.

        Envs that finish are reported once (`info["episode"]`, metrics at that moment) and marked `pending`;
        they keep stepping until `reset_pending()`. Their later terminated/truncated flags are not reported again.
        """
        if not self.differentiable:
            raise RobolearnError(f"{self.spec.name}: the task is not differentiable (no step_grad); use ppo or td3")
        reward, terminated, truncated, obs = self._advance(self._check_action(action, detach=False))
        terminated, truncated = terminated & ~self.pending, truncated & ~self.pending
        info: dict[str, Any] = {}
        done_ids = (terminated | truncated).nonzero(as_tuple=False).squeeze(-1)
        if done_ids.numel() > 0:
            info.update(self._finish(done_ids, terminated))
            self.pending[done_ids] = True
        return StepResult(obs, reward, terminated, truncated, info)

    def reset_pending(self) -> Obs:
        """Reset the envs that finished during `step_grad`; returns the current observation of all envs."""
        ids = self.pending.nonzero(as_tuple=False).squeeze(-1)
        if ids.numel() > 0:
            self._reset_bookkeeping(ids)
            self._reset_idx(ids)
            self.pending[ids] = False
        return self._observe()

    def detach_(self) -> None:
        """Cut the autograd graph: every tensor the env (and its simulator) holds is replaced by a detached one."""
        _detach_tensors(self, depth=3)

    def _advance(self, action: Tensor) -> tuple[Tensor, Tensor, Tensor, Obs]:
        """Apply the action, step the physics and sum the reward terms: (reward, terminated, truncated, obs)."""
        self.action = action
        self._apply_action(action)
        for _ in range(self.cfg.decimation):
            self._physics_step()
        self.episode_length += 1

        terms = self._reward_terms()
        reward = torch.zeros(self.num_envs, device=self.device)
        penalty = torch.zeros(self.num_envs, device=self.device)
        scales = self.cfg.reward_scales
        for name, value in terms.items():
            r = value * (scales.get(name, 0.0) * self.step_dt)
            self.episode_sums[name] += r.detach()
            if name in self.termination_terms:
                penalty = penalty + r
            else:
                reward = reward + r
        if self.cfg.nonnegative_reward:
            # ending an episode early must never pay: running reward ≥ 0, termination terms on top
            reward = reward.clamp_min(0.0)
        reward = reward + penalty
        terminated = self._terminated()
        truncated = (self.episode_length >= self.cfg.max_episode_steps) & ~terminated
        return reward, terminated, truncated, self._observe()

    def _finish(self, done_ids: Tensor, terminated: Tensor) -> dict[str, Any]:
        """`info` entries for the envs in `done_ids` that just finished."""
        metrics = {k: v.detach() for k, v in self._episode_metrics(done_ids, terminated).items()}
        log = {f"episode/{k}": float(v.nanmean()) for k, v in metrics.items()}
        log["episode/count"] = float(done_ids.numel())
        return {"episode": {"env_ids": done_ids, **metrics}, "log": log}

    # ---- helpers -----------------------------------------------------------------------------
    def _check_action(self, action: Tensor, detach: bool = True) -> Tensor:
        expected = (self.num_envs, self.spec.action.dim)
        if tuple(action.shape) != expected:
            raise RobolearnError(f"{self.spec.name}: action shape {tuple(action.shape)}, expected {expected}")
        action = (action.detach() if detach else action).to(self.device, torch.float32)
        finite = torch.isfinite(action.detach()).all(-1)
        if not bool(finite.all()):
            bad = (~finite).nonzero().squeeze(-1)[:10].tolist()
            raise NonFiniteActionError(f"{self.spec.name}: non-finite actions from env ids {bad}")
        return action.clamp(self.spec.action.low, self.spec.action.high)

    def _episode_metrics(self, done_ids: Tensor, terminated: Tensor) -> dict[str, Tensor]:
        """Per-episode metrics (one value per finished env) before those envs reset."""
        metrics = {f"return/{name}": sums[done_ids] for name, sums in self.episode_sums.items()}
        metrics["length_s"] = self.episode_length[done_ids].float() * self.step_dt
        metrics["terminated"] = terminated[done_ids].float()
        metrics.update(self._task_metrics(done_ids))
        return metrics

    def _task_metrics(self, done_ids: Tensor) -> dict[str, Tensor]:
        """Task-specific per-episode metrics (e.g. "success", "final_pos_error") for the envs about to reset."""
        return {}

    def _reset_bookkeeping(self, env_ids: Tensor) -> None:
        self.episode_length[env_ids] = 0
        for sums in self.episode_sums.values():
            sums[env_ids] = 0.0

    def rand(self, *shape: int) -> Tensor:
        """Uniform [0, 1) numbers from the env's own generator (keeps env randomness reproducible)."""
        return torch.rand(*shape, generator=self.rng, device=self.device)

    def randn(self, *shape: int) -> Tensor:
        """Standard normal numbers from the env's own generator."""
        return torch.randn(*shape, generator=self.rng, device=self.device)

    def uniform(self, low: float | Tensor, high: float | Tensor, *shape: int) -> Tensor:
        """Uniform numbers in [low, high) from the env's own generator."""
        return low + (high - low) * self.rand(*shape)

    # ---- state for exact resume --------------------------------------------------------------
    def state_dict(self) -> dict[str, Tensor]:
        """Every tensor the env holds (its own, its simulator's, in nested objects and dicts) and its RNG state."""
        state: dict[str, Tensor] = {}
        _collect_tensors(self, "", state, depth=3)
        state["_rng"] = self.rng.get_state()
        return state

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore what `state_dict` captured; tensors are copied in place where shapes match."""
        for key, value in state.items():
            if key == "_rng":
                self.rng.set_state(value)
                continue
            *path, last = key.split(".")
            obj: Any = self
            for part in path:
                obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
            value = value.to(self.device)
            if isinstance(obj, dict):
                obj[last] = value
            else:
                setattr(obj, last, value)


def _select(done: Tensor, fresh: Any, old: Any) -> Any:
    """Per env: `fresh` where done, else `old`; through nested groups ({"policy": {"state": .., "rgb_wrist": ..}})."""
    if isinstance(old, dict):
        return {k: _select(done, fresh[k], v) for k, v in old.items()}
    return torch.where(done.view(-1, *[1] * (old.dim() - 1)), fresh, old)


def _collect_tensors(obj: Any, prefix: str, out: dict[str, Tensor], depth: int) -> None:
    """Flatten the tensors reachable through attributes and dicts of `obj` into dotted keys."""
    items = obj.items() if isinstance(obj, dict) else vars(obj).items()
    for name, value in items:
        if not isinstance(name, str) or name == "rng":
            continue
        key = f"{prefix}{name}"
        if isinstance(value, Tensor):
            out[key] = value.clone()
        elif depth > 0 and (isinstance(value, dict) or _is_plain_object(value)):
            _collect_tensors(value, key + ".", out, depth - 1)


def _detach_tensors(obj: Any, depth: int) -> None:
    """Replace every graph-carrying tensor reachable through attributes and dicts of `obj` by its detached value."""
    items = list(obj.items() if isinstance(obj, dict) else vars(obj).items())
    for name, value in items:
        if isinstance(value, Tensor):
            if value.requires_grad:
                if isinstance(obj, dict):
                    obj[name] = value.detach()
                else:
                    setattr(obj, name, value.detach())
        elif depth > 0 and (isinstance(value, dict) or _is_plain_object(value)):
            _detach_tensors(value, depth - 1)


def _is_plain_object(value: Any) -> bool:
    """Objects whose attributes may hold simulation state (not modules, functions, configs, renderers or primitives).

    A class opts out with `holds_env_state = False` (renderers: they reference the simulator, which the env's own
    state_dict already covers, and GL objects).
    """
    return (
        hasattr(value, "__dict__")
        and getattr(type(value), "holds_env_state", True)
        and not isinstance(value, (type, types.ModuleType, torch.nn.Module, torch.Generator))
        and not callable(value)
        and not isinstance(value, EnvCfg)  # configs are saved as YAML, not state
    )

