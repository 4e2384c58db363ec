"""Batched evaluation rollouts: every env runs one episode from a random start; metrics of the first episode."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from robolearn.core.env import BatchedEnv
from robolearn.core.types import Obs


@torch.no_grad()
def evaluate_policy(
    env: BatchedEnv,
    policy: Callable[[Obs], Tensor],
    record: int = 0,
    record_fn: Callable[[], dict[str, Tensor]] | None = None,
) -> dict[str, float] | tuple[dict[str, float], dict[str, Tensor]]:
    """Run each of the env's N copies for one episode; returns mean metrics (and recorded trajectories).

    Metrics are the env's per-episode metrics (`info["episode"]`) averaged over the N first episodes.
    With `record > 0`, `record_fn()` is sampled every step for the first `record` envs until their
    episode ends and returned as {name: (T, record, ...)} tensors (with "t", seconds).
    """
    n = env.num_envs
    obs = env.reset()
    finished = torch.zeros(n, dtype=torch.bool, device=env.device)
    sums: dict[str, Tensor] = {}
    frames: dict[str, list[Tensor]] = {}
    steps = 0

    def sample() -> None:
        if record and record_fn is not None:
            for k, v in record_fn().items():
                frames.setdefault(k, []).append(v[:record].clone())
            frames.setdefault("t", []).append(torch.full((record,), steps * env.step_dt))

    while not bool(finished.all()):
        if record and not bool(finished[:record].all()):
            sample()  # envs that already finished keep being sampled after reset: trim with "length_s"
        res = env.step(policy(obs))
        steps += 1
        ep = res.info.get("episode")
        if ep is not None:
            ids = ep["env_ids"]
            first = ~finished[ids]
            for k, v in ep.items():
                if k == "env_ids":
                    continue
                sums.setdefault(k, torch.zeros(n, device=env.device))
                sums[k][ids[first]] = v[first].float()
            finished[ids] = True
        obs = res.obs
    sample()  # the state after the last recorded episode's final step (tasks whose viz_state keeps it show it)
    metrics = {k: float(v.nanmean()) for k, v in sums.items()}
    metrics["episodes"] = float(n)
    if record:
        recorded = {k: torch.stack(v) for k, v in frames.items()}
        recorded["length_s"] = sums["length_s"][:record].clone() if "length_s" in sums else torch.zeros(record)
        return metrics, recorded
    return metrics
