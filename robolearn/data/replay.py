"""RL replay buffer: a fixed-capacity ring of transitions living on one torch device, saved to and loaded from stores.

Fields are declared like dataset features (`Feature(shape, dtype)`), so a buffer saves to a store with the same
keys: each `save_to_store` call appends one episode holding the buffer's transitions oldest first (an "episode" is
then a snapshot, not a trajectory, unless the buffer holds one trajectory). Loading accepts any store with those
keys; a field `next.<key>` missing from the store is derived from `<key>` by shifting one step within each episode
(the last step repeats itself), which turns demonstrations into transitions for off-policy learners.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from robolearn.data.store import DatasetError, EpisodeStore, EpisodeWriter, Feature, Provenance


def torch_dtype(dtype: str) -> torch.dtype:
    """The torch dtype of a numpy dtype name."""
    return torch.from_numpy(np.zeros(0, dtype)).dtype


class ReplayBuffer:
    """Ring buffer of `capacity` transitions per field, on `device`; `add` batches (B, ...), `sample` uniformly."""

    def __init__(self, capacity: int, fields: Mapping[str, Feature], device: torch.device | str = "cpu") -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity, self.fields, self.device = int(capacity), dict(fields), torch.device(device)
        self.data = {k: torch.zeros((self.capacity, *f.shape), dtype=torch_dtype(f.dtype), device=self.device)
                     for k, f in self.fields.items()}
        self.ptr = 0  # next slot to write
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, batch: Mapping[str, Tensor | np.ndarray]) -> None:
        """Append B transitions (every field, leading dimension B); the oldest are overwritten when full."""
        missing, extra = set(self.fields) - set(batch), set(batch) - set(self.fields)
        if missing or extra:
            raise ValueError(f"replay buffer fields are {sorted(self.fields)}; missing {sorted(missing)}, "
                             f"unknown {sorted(extra)}")
        vals = {k: torch.as_tensor(v, device=self.device) for k, v in batch.items()}
        n = {k: v.shape[0] for k, v in vals.items()}
        if len(set(n.values())) != 1:
            raise ValueError(f"batch sizes differ between fields: {n}")
        b = next(iter(n.values()))
        for k, v in vals.items():
            if tuple(v.shape[1:]) != self.fields[k].shape:
                raise ValueError(f"field '{k}': shape {tuple(v.shape)} but expected (B, {self.fields[k].shape})")
        if b > self.capacity:  # only the newest `capacity` survive
            vals = {k: v[-self.capacity:] for k, v in vals.items()}
            self.ptr = (self.ptr + b - self.capacity) % self.capacity
            b = self.capacity
        idx = (self.ptr + torch.arange(b, device=self.device)) % self.capacity
        for k, v in vals.items():
            self.data[k].index_copy_(0, idx, v.to(self.data[k].dtype))
        self.ptr = (self.ptr + b) % self.capacity
        self.size = min(self.size + b, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """`batch_size` transitions drawn uniformly with replacement."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        i = torch.randint(0, self.size, (batch_size,), device=self.device, generator=generator)
        return {k: v[i] for k, v in self.data.items()}

    def indices(self) -> Tensor:
        """Slots of the stored transitions, oldest first."""
        if self.size < self.capacity:
            return torch.arange(self.size, device=self.device)
        return (self.ptr + torch.arange(self.capacity, device=self.device)) % self.capacity

    def save_to_store(self, path: str | os.PathLike[str], fps: float, provenance: Provenance | None = None,
                      block: int = 65536) -> int:
        """Append the buffer (oldest first) as one episode to a store, creating it if absent; returns the episode."""
        if self.size == 0:
            raise ValueError("the replay buffer is empty; nothing to save")
        order = self.indices()
        with EpisodeWriter(path, self.fields, fps, provenance=provenance or Provenance(source="replay")) as w:
            for lo in range(0, self.size, block):
                sel = order[lo:lo + block]
                w.add_frames({k: v[sel].cpu().numpy() for k, v in self.data.items()})
            return w.end_episode()

    def load_from_store(self, store: EpisodeStore | str | os.PathLike[str],
                        episodes: Sequence[int] | None = None) -> int:
        """Append the transitions of `episodes` (all by default, in order); returns how many were added."""
        s = store if isinstance(store, EpisodeStore) else EpisodeStore(store)
        eps = list(range(s.num_episodes)) if episodes is None else list(episodes)
        derived: dict[str, str] = {}
        for k, f in self.fields.items():
            src = k if k in s.features else (k[5:] if k.startswith("next.") and k[5:] in s.features else None)
            if src is None:
                raise DatasetError(s.name, "is a replay buffer field missing from the store", key=k)
            if s.features[src].shape != f.shape:
                raise DatasetError(s.name, f"shape {s.features[src].shape} in the store but {f.shape} in the buffer",
                                   key=k)
            if src != k:
                derived[k] = src
        lengths = [s.episode_length(e) for e in eps]
        skip = max(0, sum(lengths) - self.capacity)  # older frames would be overwritten anyway
        added = 0
        for e, n in zip(eps, lengths, strict=True):
            if skip >= n:
                skip -= n
                continue
            ep = s.read_episode(e, sorted({derived.get(k, k) for k in self.fields}))
            batch: dict[str, Any] = {}
            for k in self.fields:
                x = ep[derived.get(k, k)]
                if k in derived:
                    x = np.concatenate([x[1:], x[-1:]])  # next.<key>[t] = key[t+1]; the last step repeats
                batch[k] = torch.from_numpy(np.ascontiguousarray(x[skip:]))
            self.add(batch)
            added += n - skip
            skip = 0
        return added

    @classmethod
    def from_store(cls, store: EpisodeStore | str | os.PathLike[str], capacity: int | None = None,
                   device: torch.device | str = "cpu", fields: Sequence[str] | None = None) -> ReplayBuffer:
        """A buffer with the store's features (or `fields` of them), filled from it."""
        s = store if isinstance(store, EpisodeStore) else EpisodeStore(store)
        keys = list(fields) if fields is not None else [k for k, f in s.features.items() if not f.is_string]
        specs: dict[str, Feature] = {}
        for k in keys:
            src = k if k in s.features or not k.startswith("next.") else k[5:]
            if src not in s.features:
                raise DatasetError(s.name, "is not a feature of the store", key=k)
            specs[k] = s.features[src]
        buf = cls(capacity or max(1, s.num_frames), specs, device)
        buf.load_from_store(s)
        return buf
