"""Datasets: crash-safe zarr episode store, training windows, statistics, RL replay buffers.

`robolearn.data.store` needs only numpy and zarr, so a recorder process does not import torch; the torch-backed
parts (`WindowDataset`, `ReplayBuffer`) are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from robolearn.data.store import (
    DatasetCorruptError,
    DatasetError,
    EpisodeStore,
    EpisodeWriter,
    Feature,
    FrameError,
    Problem,
    Provenance,
    SchemaMismatchError,
    StorageOptions,
    convert,
    merge,
    split,
    validate,
)

_LAZY = {
    "WindowDataset": "robolearn.data.windows",
    "ReplayBuffer": "robolearn.data.replay",
    "compute_stats": "robolearn.data.stats",
    "save_stats": "robolearn.data.stats",
    "load_stats": "robolearn.data.stats",
}

__all__ = [
    "DatasetCorruptError", "DatasetError", "EpisodeStore", "EpisodeWriter", "Feature", "FrameError", "Problem",
    "Provenance", "SchemaMismatchError", "StorageOptions", "convert", "merge", "split", "validate", *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'robolearn.data' has no attribute '{name}'")
