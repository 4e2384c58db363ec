"""Types, math and utilities every other package builds on (torch and numpy only)."""

from robolearn.core.errors import ConfigError, MissingExtraError, RobolearnError, require
from robolearn.core.types import ActionSpec, ActionTerm, ObsTerm, StepResult

__all__ = [
    "ActionSpec",
    "ActionTerm",
    "ConfigError",
    "MissingExtraError",
    "ObsTerm",
    "RobolearnError",
    "StepResult",
    "require",
]
