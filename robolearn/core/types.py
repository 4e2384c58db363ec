"""The types that cross package boundaries: step results and observation/action specifications."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

Obs = dict[str, Tensor]
"""Observation groups: "policy" (what the real robot measures), "critic" (privileged), ..., each (N, D); a group
may instead be a dict of named terms (e.g. {"state": (N, D), "rgb_wrist": (N, H, W, 3)}) when modalities need
different encoders."""


@dataclass
class StepResult:
    """What `BatchedEnv.step` returns; every tensor is batched over environments."""

    obs: Obs
    reward: Tensor  # (N,)
    terminated: Tensor  # (N,) bool: failure or success; no bootstrapping
    truncated: Tensor  # (N,) bool: time limit; learners bootstrap
    info: dict[str, Any]


@dataclass(frozen=True)
class ObsTerm:
    """One named slice of an observation group, in order; what the export manifest lists."""

    name: str
    dim: int
    unit: str = ""
    description: str = ""
    # "sensor" (robot measures it), "command" (goal/reference), "last_action" (the policy's own output)
    source: str = "sensor"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class ActionTerm:
    """One named slice of the action: the policy outputs `a` in [-1, 1]; the robot gets `offset + scale * a`."""

    name: str
    dim: int
    unit: str
    scale: tuple[float, ...]
    offset: tuple[float, ...]
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class ActionSpec:
    """Normalized actions in [low, high] (per dimension), applied at `rate_hz`."""

    terms: tuple[ActionTerm, ...]
    rate_hz: float
    mode: str = ""
    low: float = -1.0
    high: float = 1.0

    @property
    def dim(self) -> int:
        """Total action dimension."""
        return sum(t.dim for t in self.terms)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "dim": self.dim,
            "rate_hz": self.rate_hz,
            "mode": self.mode,
            "low": self.low,
            "high": self.high,
            "terms": [t.to_dict() for t in self.terms],
        }


@dataclass
class TaskSpec:
    """Shapes and meaning of one task's observations and actions (`robolearn tasks` prints these)."""

    name: str
    obs_terms: dict[str, tuple[ObsTerm, ...]]
    action: ActionSpec
    robot: str = ""
    description: str = ""
    reward_scales: dict[str, float] = field(default_factory=dict)

    @property
    def obs_dims(self) -> dict[str, int]:
        """Dimension of each observation group."""
        return {g: sum(t.dim for t in terms) for g, terms in self.obs_terms.items()}


@dataclass(frozen=True)
class VizCurve:
    """One per-step quantity a task wants plotted when it is evaluated (`robolearn eval` → episodes.png).

    A task lists its curves in `viz_curves()`; evaluation samples `fn(env)` every policy step for a few envs, so
    the plotting code stays generic. `kind`: "line" (a value over time), "step" (a discrete value such as a task
    stage, drawn as steps), "success" (a flag: the first step it is true is marked in every panel, no panel).
    """

    name: str
    unit: str
    fn: Callable[[Any], Tensor]
    """env -> (N,) or (N, K) values; K columns are drawn as K lines named by `labels`."""
    labels: tuple[str, ...] = ()
    """Names of the K columns (empty for an (N,) curve)."""
    kind: Literal["line", "step", "success"] = "line"
    scale: float = 1.0
    """Plotted value = scale × fn(env) (e.g. 100 to plot metres as cm; `unit` is the plotted unit)."""
    threshold: float | None = None
    """A dashed horizontal line in plotted units (e.g. the success height), or None."""


def obs_to(obs: Obs, device: torch.device | str) -> Obs:
    """Move every group (and every named term of a nested group) of an observation dict to `device`."""
    return {k: obs_to(v, device) if isinstance(v, dict) else v.to(device) for k, v in obs.items()}
