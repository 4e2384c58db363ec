"""Pieces every learner shares: episode-log merging and the reward curriculum."""

from __future__ import annotations

from robolearn.core.env import BatchedEnv


def merge_episode_logs(logs: list[dict[str, float]]) -> dict[str, float]:
    """Average per-episode metrics over the steps that finished episodes, weighted by episode count."""
    if not logs:
        return {}
    total = sum(log["episode/count"] for log in logs)
    out: dict[str, float] = {}
    for key in logs[0]:
        if key == "episode/count":
            continue
        vals = [(log[key], log["episode/count"]) for log in logs if log[key] == log[key]]  # skip NaN
        w = sum(c for _, c in vals)
        out[key] = sum(v * c for v, c in vals) / w if w else float("nan")
    out["episode/count"] = total
    return out


class RewardCurriculum:
    """Ramp reward-term scales linearly from the task's values to `targets` over `steps` env steps.

    "Learning to Fly in Seconds" raises the action and velocity penalties during training: early on the
    agent must first learn to stay airborne, later it is asked to fly smoothly.
    """

    def __init__(self, env: BatchedEnv, targets: dict[str, float], steps: int) -> None:
        unknown = set(targets) - set(env.reward_term_names())
        if unknown:
            raise ValueError(f"curriculum names unknown reward terms {sorted(unknown)}")
        self.env, self.steps = env, max(1, steps)
        self.start = {k: env.cfg.reward_scales.get(k, 0.0) for k in targets}
        self.targets = dict(targets)

    def update(self, env_steps: int) -> dict[str, float]:
        """Set the env's scales for `env_steps`; returns them for logging."""
        f = min(1.0, env_steps / self.steps)
        scales = self.env.cfg.reward_scales
        for k, target in self.targets.items():
            scales[k] = self.start[k] + f * (target - self.start[k])
        return {f"curriculum/{k}": scales[k] for k in self.targets}
