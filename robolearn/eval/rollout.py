"""Batched evaluation rollouts: every env runs one episode from a random start; metrics of the first episode."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from robolearn.core.env import BatchedEnv
from robolearn.core.types import Obs


class _Recorder:
    """Samples `fn()` for the first `k` envs every `every` policy steps.

    An env whose episode ended keeps its last state (captured by `capture` before the env's auto-reset) for the
    rest of the recording.
    """

    def __init__(self, fn: Callable[[], dict[str, Tensor]], k: int, every: int, dt: float, t_key: str) -> None:
        self.fn, self.k, self.every, self.dt, self.t_key = fn, k, max(1, int(every)), dt, t_key
        self.series: dict[str, list[Tensor]] = {}
        self.final: dict[str, Tensor] = {}
        self.ended = torch.zeros(k, dtype=torch.bool)

    def capture(self, ids: list[int]) -> None:
        """Keep the state of recorded envs `ids` that are finishing now (called before their reset)."""
        for key, value in self.fn().items():
            value = value[: self.k].detach().cpu()
            self.final.setdefault(key, torch.zeros_like(value))[ids] = value[ids]
        self.ended[ids] = True

    def sample(self, step: int, force: bool = False) -> None:
        if step % self.every and not force:
            return
        for key, value in self.fn().items():
            value = value[: self.k].detach().cpu().clone()
            if key in self.final and bool(self.ended.any()):
                value[self.ended] = self.final[key][self.ended]
            self.series.setdefault(key, []).append(value)
        self.series.setdefault(self.t_key, []).append(torch.full((self.k,), step * self.dt))

    def stacked(self) -> dict[str, Tensor]:
        return {key: torch.stack(v) for key, v in self.series.items()}


@torch.no_grad()
def evaluate_policy(
    env: BatchedEnv,
    policy: Callable[[Obs], Tensor],
    record: int = 0,
    record_fn: Callable[[], dict[str, Tensor]] | None = None,
    frame_fn: Callable[[], Tensor] | None = None,
    frame_every: int = 1,
) -> dict[str, float] | tuple[dict[str, float], dict[str, Tensor]]:
    """Run each of the env's N copies for one episode; returns mean metrics (and recorded trajectories).

    Metrics are the env's per-episode metrics (`info["episode"]`) averaged over the N first episodes.
    With `record > 0`, `record_fn()` is sampled for the first `record` envs after every policy step (and at the
    start) and returned as {name: (T, record, ...)} tensors with "t" [s]: sample j is the state after j steps.
    An env's last sample is its episode's final state (taken before the env's auto-reset) and it is held there
    until every recorded env has finished; "length_s" gives each recorded episode's length.
    `frame_fn()` ((N, H, W, 3) images) is sampled likewise every `frame_every` steps as "frame" with "frame_t".
    """
    n = env.num_envs
    record = min(record, n)
    recorders = []
    if record and record_fn is not None:
        recorders.append(_Recorder(record_fn, record, 1, env.step_dt, "t"))
    if record and frame_fn is not None:
        recorders.append(_Recorder(lambda: {"frame": frame_fn()}, record, frame_every, env.step_dt, "frame_t"))
    rec_done = torch.zeros(record, dtype=torch.bool)

    def on_episode_end(done_ids: Tensor) -> None:
        ids = [i for i in done_ids.tolist() if i < record and not bool(rec_done[i])]
        if ids:
            for r in recorders:
                r.capture(ids)
            rec_done[ids] = True

    obs = env.reset()
    finished = torch.zeros(n, dtype=torch.bool, device=env.device)
    sums: dict[str, Tensor] = {}
    steps = 0
    for r in recorders:
        r.sample(0)
    previous_hook = env.episode_end_hook
    env.episode_end_hook = on_episode_end if recorders else previous_hook
    try:
        while not bool(finished.all()):
            recording = bool(recorders) and not bool(rec_done.all())
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
            if recording:  # up to and including the step in which the last recorded episode ended
                for r in recorders:
                    r.sample(steps, force=bool(rec_done.all()))
            obs = res.obs
    finally:
        env.episode_end_hook = previous_hook
    metrics = {k: float(v.nanmean()) for k, v in sums.items()}
    metrics["episodes"] = float(n)
    if record:
        recorded: dict[str, Tensor] = {}
        for r in recorders:
            recorded.update(r.stacked())
        recorded["length_s"] = sums["length_s"][:record].cpu().clone() if "length_s" in sums else torch.zeros(record)
        return metrics, recorded
    return metrics
