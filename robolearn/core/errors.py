"""Error types with one-line messages, and the import guard for optional extras."""

from __future__ import annotations

import importlib
from types import ModuleType


class RobolearnError(Exception):
    """Base class: the message is the whole story, printed without a traceback by the CLI."""


class ConfigError(RobolearnError):
    """A configuration file or override is malformed, has an unknown key or a wrong type."""


class MissingExtraError(RobolearnError, ImportError):
    """An optional dependency is not installed."""


class CheckpointError(RobolearnError):
    """A checkpoint or artifact is missing, corrupted or does not match what loads it."""


def require(module: str, extra: str) -> ModuleType:
    """Import `module`, or fail with a message naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(
            f"'{module}' is not installed; install it with: pip install 'robolearn[{extra}]'  ({e})"
        ) from None
