"""RL learners, one algorithm a file; `LEARNERS` maps names to (learner class, config class)."""

from __future__ import annotations

import importlib

from robolearn.core.errors import RobolearnError

LEARNERS: dict[str, tuple[str, str]] = {
    "ppo": ("robolearn.learners.ppo:PPO", "robolearn.learners.ppo:PPOCfg"),
    "td3": ("robolearn.learners.td3:TD3", "robolearn.learners.td3:TD3Cfg"),
    "shac": ("robolearn.learners.shac:SHAC", "robolearn.learners.shac:SHACCfg"),
    "hinf": ("robolearn.learners.hinf:Hinf", "robolearn.learners.hinf:HinfCfg"),
}


def _load(target: str):
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def learner_classes(name: str) -> tuple[type, type]:
    """(learner class, config class) of a registered learner."""
    if name not in LEARNERS:
        raise RobolearnError(f"unknown learner '{name}'; known learners: {', '.join(LEARNERS)}")
    cls, cfg = LEARNERS[name]
    return _load(cls), _load(cfg)
