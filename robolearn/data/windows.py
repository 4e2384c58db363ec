"""Training windows: each frame of a store as a sample, every key read at that frame plus its own time offsets.

A policy declares `deltas`, e.g. `{"cam": [-1, 0], "state": [-1, 0], "action": range(16)}`; sample i then holds
`cam` (2, H, W, C), `state` (2, D), `action` (16, A), each with a `<key>_is_pad` (T,) mask that is True where the
offset fell outside the episode and the edge frame was repeated instead. Values come back as stored (images uint8
channels-last), so the cheap uint8 tensors cross to the GPU before any conversion.

Speed: when the needed keys fit in memory (`cache=None` decides: half of the available RAM) they are decoded once
into numpy arrays at construction, before DataLoader workers fork, so workers share them and a batch is one fancy
index per key. Otherwise decoded chunks are kept in a per-process LRU. `loader()` hands whole index batches to
`__getitem__`, which skips per-sample collation.

Training order: `EpochBatches` gives each epoch a permutation seeded by (seed, epoch) and keeps its position as
state, so a resumed run continues with exactly the batch that was next.

Block order (`block` > 1) is for stores too large to cache: the epoch visits blocks of `block` consecutive samples
in random order, `batch_size` blocks at a time with their samples shuffled together (a shuffle buffer of
block × batch_size samples). Every sample is still visited once per epoch and a batch draws from up to
`batch_size` places, but each chunk or keyframe interval a block covers is decoded once for all its windows
instead of once per window.
`suggested_block` picks the store's chunk length when the dataset is not cached, 1 (uniform) when it is.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
    get_worker_info,
)

from robolearn.data.store import DatasetCorruptError, DatasetError, EpisodeStore


def available_memory() -> int:
    """Bytes of memory available to new allocations (MemAvailable on Linux)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def _empty(shape: tuple[int, ...], dtype: str, shared: bool) -> torch.Tensor:
    """An uninitialized tensor, in shared memory when `shared` (as torch's default_collate does in workers)."""
    t = torch.empty(0, dtype=torch.from_numpy(np.zeros(0, dtype)).dtype)
    if shared:
        try:
            storage = t._typed_storage()._new_shared(int(np.prod(shape)))
            return t.new(storage).view(shape)
        except (AttributeError, RuntimeError):  # private torch API moved: fall back to a plain allocation
            pass
    return t.new_empty(shape)


class _ChunkLRU:
    """Decoded chunks of one store, least recently used dropped first beyond `max_bytes`."""

    def __init__(self, store: EpisodeStore, max_bytes: int) -> None:
        self.store, self.max_bytes = store, max_bytes
        self._chunks: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._bytes = 0
        self._seen: OrderedDict[tuple[str, int], None] = OrderedDict()  # video chunks asked for once, not decoded
        self.whole_video = False  # block order: decode keyframe intervals whole on the first ask

    def __getstate__(self) -> dict[str, Any]:  # workers start with an empty cache
        return {**self.__dict__, "_chunks": OrderedDict(), "_bytes": 0, "_seen": OrderedDict()}

    def get(self, key: str, chunk: int, frames: int) -> np.ndarray:
        hit = self._chunks.get((key, chunk))
        if hit is not None:
            self._chunks.move_to_end((key, chunk))
            return hit
        x = self.store.read(key, chunk * frames, min((chunk + 1) * frames, self.store.num_frames))
        self._chunks[(key, chunk)] = x
        self._bytes += x.nbytes
        while self._bytes > self.max_bytes and len(self._chunks) > 1:
            _, old = self._chunks.popitem(last=False)
            self._bytes -= old.nbytes
        return x

    def _second_ask(self, key: str, chunk: int) -> bool:
        if (key, chunk) in self._seen:
            del self._seen[(key, chunk)]
            return True
        self._seen[(key, chunk)] = None
        while len(self._seen) > 65536:
            self._seen.popitem(last=False)
        return False

    def take(self, key: str, frames: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Gather global frame indices of any shape into `out` (*frames.shape, *feature.shape)."""
        cf = self.store.chunk_frames(key)
        chunk_of = frames // cf
        video = self.store.is_video(key)
        for c in np.unique(chunk_of):
            mask = chunk_of == c
            f = frames[mask]
            if video and (key, int(c)) not in self._chunks and not self.whole_video and \
                    not self._second_ask(key, int(c)):
                # MP4, a keyframe interval asked for the first time in uniform order: decode from the keyframe up to
                # the last frame wanted and convert only those; uniform sampling over a store the LRU cannot hold
                # rarely comes back (1.6x the windows/s of decoding whole intervals), and a second ask decodes the
                # interval into the LRU
                lo, hi = int(f.min()), int(f.max()) + 1
                out[mask] = self.store.read(key, lo, hi)[f - lo]
            else:
                out[mask] = self.get(key, int(c), cf)[f - c * cf]
        return out


class WindowDataset(Dataset):
    """Every frame of the chosen episodes as a sample: each key at frame + deltas, clamped, with padding masks."""

    def __init__(self, store: EpisodeStore | str | os.PathLike[str], deltas: Mapping[str, Iterable[int]],
                 episodes: Sequence[int] | None = None, cache: bool | None = None,
                 chunk_cache_bytes: int = 256 << 20) -> None:
        self.store = store if isinstance(store, EpisodeStore) else EpisodeStore(store)
        s = self.store
        self.deltas: dict[str, np.ndarray] = {}
        for key, d in deltas.items():
            if key not in s.features:
                raise DatasetError(s.name, f"is not a feature (features: {', '.join(s.features)})", key=key)
            if s.features[key].is_string:
                raise DatasetError(s.name, "is a string feature (one text per episode): read it with "
                                           "EpisodeStore.episode_string, not as a window", key=key)
            arr = np.asarray(list(d), dtype=np.int64)
            if arr.ndim != 1 or arr.size == 0:
                raise DatasetError(s.name, f"deltas must be a non-empty list of integers, got {list(d)}", key=key)
            self.deltas[key] = arr
        if not self.deltas:
            raise DatasetError(s.name, "WindowDataset needs deltas for at least one key")
        eps = np.arange(s.num_episodes) if episodes is None else np.unique(np.asarray(list(episodes), np.int64))
        if len(eps) and (eps[0] < 0 or eps[-1] >= s.num_episodes):
            raise DatasetError(s.name, f"episodes must be in 0..{s.num_episodes - 1}", episodes=int(eps[-1]))
        self.episodes = eps
        for key in self.deltas:  # a missing chunk would read as zeros: refuse now, not mid-training
            for p in s.missing_chunks(key):
                raise DatasetCorruptError(p.dataset, p.what, key=p.key, episodes=p.episodes)
        self._gstart = s.episode_starts[eps] if len(eps) else np.zeros(0, np.int64)
        lengths = (s.episode_ends[eps] - self._gstart) if len(eps) else np.zeros(0, np.int64)
        self._lstop = np.cumsum(lengths)
        self._lstart = self._lstop - lengths
        self._frame_ep = np.repeat(np.arange(len(eps)), lengths)
        self._n = int(self._lstop[-1]) if len(eps) else 0
        need = self._n * sum(s.features[k].frame_bytes for k in self.deltas)
        self.cached = bool(cache) if cache is not None else need <= available_memory() // 2
        self._data: dict[str, np.ndarray] = {}
        if self.cached:
            for key in self.deltas:
                self._data[key] = self._load(key)
        self._lru = _ChunkLRU(s, chunk_cache_bytes)

    def _load(self, key: str) -> np.ndarray:
        """Decode the chosen episodes of one key into one array, reading consecutive episodes together."""
        s, f = self.store, self.store.features[key]
        out = np.empty((self._n, *f.shape), f.dtype)
        i = 0
        while i < len(self.episodes):
            j = i
            while j + 1 < len(self.episodes) and self.episodes[j + 1] == self.episodes[j] + 1:
                j += 1
            lo, hi = int(self._gstart[i]), int(s.episode_ends[self.episodes[j]])
            out[self._lstart[i]:self._lstart[i] + hi - lo] = s.read(key, lo, hi)
            i = j + 1
        return out

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: int | Sequence[int] | np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        """One sample (int index) or a batch (sequence of indices, leading batch dimension)."""
        if isinstance(index, int | np.integer) or (isinstance(index, torch.Tensor) and index.ndim == 0):
            # per-sample access is collated (copied) afterwards: no shared-memory outputs here
            return {k: v[0] for k, v in self._gather([int(index)], shared=False).items()}
        return self.get_batch(index)

    def get_batch(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        """Samples `indices` stacked: key (B, T, *shape), key_is_pad (B, T), index/episode_index/frame_index (B,)."""
        return self._gather(indices, shared=get_worker_info() is not None)

    def _gather(self, indices: Sequence[int] | np.ndarray | torch.Tensor, shared: bool) -> dict[str, torch.Tensor]:
        idx = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self._n):
            raise IndexError(f"sample index out of range 0..{self._n - 1} in {self.store.name}")
        pos = self._frame_ep[idx]
        lo, hi = self._lstart[pos][:, None], self._lstop[pos][:, None]
        gstart = self._gstart[pos]
        out: dict[str, torch.Tensor] = {
            "index": torch.from_numpy(idx - self._lstart[pos] + gstart),
            "episode_index": torch.from_numpy(self.episodes[pos].astype(np.int64)),
            "frame_index": torch.from_numpy(idx - self._lstart[pos]),
        }
        for key, d in self.deltas.items():
            j = idx[:, None] + d[None, :]  # (B, T) local frame indices
            pad = (j < lo) | (j >= hi)
            j = np.clip(j, lo, hi - 1)
            f = self.store.features[key]
            if self.cached and not shared:
                x = torch.from_numpy(self._data[key][j])  # fancy indexing: fastest in-process
            else:
                x = _empty((*j.shape, *f.shape), f.dtype, shared)
                if self.cached:
                    np.take(self._data[key], j, axis=0, out=x.numpy())
                else:
                    self._lru.take(key, j - lo + gstart[:, None], x.numpy())
            out[key] = x
            out[f"{key}_is_pad"] = torch.from_numpy(pad)
        return out

    def suggested_block(self) -> int:
        """Block length for `EpochBatches(block=...)`.

        1 when cached, else the chunk length of the key read with the most bytes per frame (the camera whose
        decoding dominates), at least 32: an MP4 camera's keyframe interval alone (8) gave 1.6x fewer windows/s.
        """
        if self.cached:
            return 1
        return max(32, self.store.chunk_frames(max(self.deltas, key=lambda k: self.store.features[k].frame_bytes)))

    def loader(self, batch_size: int, shuffle: bool = True, num_workers: int = 0, drop_last: bool = False,
               generator: torch.Generator | None = None, pin_memory: bool = False,
               persistent_workers: bool = False, batches: Sampler[list[int]] | None = None, block: int = 1,
               **kwargs: Any) -> DataLoader:
        """A DataLoader yielding batched dicts; each worker gathers whole batches (no per-sample collation).

        `batches` (e.g. `EpochBatches`) replaces the shuffled or sequential batching. `block` > 1 shuffles in
        block order (module docstring; `suggested_block()`). With the cache a batch is a memory gather and workers
        only add inter-process copies: use 0 workers unless there is per-sample work (no cache, augmentation) and
        cores to spare.
        """
        if batches is None and shuffle and block > 1:
            seed = int(torch.randint(2**31, (), generator=generator))  # the order follows `generator`, as uniform's
            batches = _BlockBatches(len(self), batch_size, seed, drop_last, block=block, lanes=num_workers)
        self._lru.whole_video = int(getattr(batches, "block", 1)) > 1
        if batches is None:
            sampler = RandomSampler(self, generator=generator) if shuffle else SequentialSampler(self)
            batches = BatchSampler(sampler, batch_size, drop_last)
        return DataLoader(self, sampler=batches, batch_size=None, generator=generator,
                          num_workers=num_workers, pin_memory=pin_memory,
                          persistent_workers=persistent_workers and num_workers > 0, **kwargs)

    def __repr__(self) -> str:
        d = {k: v.tolist() if len(v) <= 4 else f"{v[0]}..{v[-1]}" for k, v in self.deltas.items()}
        return f"WindowDataset('{self.store.name}', samples={self._n}, episodes={len(self.episodes)}, deltas={d})"


def block_order(n: int, block: int, batch_size: int, generator: torch.Generator, lanes: int = 1) -> torch.Tensor:
    """A permutation of range(n) in block order, to be cut into batches of `batch_size`.

    Blocks of `block` consecutive indices in random order, `batch_size` blocks at a time shuffled together; `block`
    1 is `torch.randperm(n)`. With `lanes` > 1 the blocks are dealt to that many lanes and the lanes' full batches
    take turns (then the rest): a DataLoader hands batches to its workers in turn, so with lanes = workers each
    worker decodes only its own lane's chunks instead of every worker decoding all of them.
    """
    if block <= 1:
        return torch.randperm(n, generator=generator)
    nb, lanes = -(-n // block), max(1, lanes)
    blocks = torch.randperm(nb, generator=generator)
    full, rest = [], []
    for lane in range(lanes):
        mine, parts = blocks[lane::lanes], []
        for g in range(0, len(mine), batch_size):
            idx = (mine[g:g + batch_size, None] * block + torch.arange(block)).reshape(-1)
            idx = idx[idx < n]
            parts.append(idx[torch.randperm(len(idx), generator=generator)])
        order = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int64)
        cut = len(order) // batch_size * batch_size
        full.append(order[:cut].reshape(-1, batch_size))
        rest.append(order[cut:])
    turns = [f[i] for i in range(max(len(f) for f in full)) for f in full if i < len(f)]
    return torch.cat([*turns, *rest])


class EpochBatches(Sampler[list[int]]):
    """Training batches of sample indices in a seeded order whose position is state, for an exact resume.

    Epoch e visits the `n` samples in the permutation seeded by (seed, e), cut into batches of `batch_size` (the
    last, short one dropped with `drop_last`). Iterating yields the rest of the current epoch from the cursor;
    the consumer calls `advance()` for every batch it has actually used (a DataLoader with workers fetches ahead,
    so the position cannot be what was fetched), and `state_dict()` / `load_state_dict()` carry
    (epoch, cursor) across a restart: iterating again continues with the batch that was next.
    """

    def __init__(self, n: int, batch_size: int, seed: int, drop_last: bool = True, block: int = 1,
                 lanes: int = 1) -> None:
        if n <= 0 or batch_size <= 0:
            raise ValueError(f"EpochBatches needs n > 0 and batch_size > 0, got n={n}, batch_size={batch_size}")
        if drop_last and n < batch_size:
            raise ValueError(f"{n} samples make no full batch of {batch_size} (use drop_last=False)")
        self.n, self.batch_size, self.seed, self.drop_last = n, batch_size, seed, drop_last
        self.block = max(1, int(block))  # block order (module docstring), `batch_size` blocks shuffled together
        self.lanes = max(1, int(lanes))  # one per DataLoader worker (`block_order`)
        self.epoch, self.cursor = 0, 0

    def __len__(self) -> int:
        """Batches per epoch."""
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def order(self, epoch: int) -> torch.Tensor:
        """The sample permutation of `epoch` (a pure function of seed and epoch)."""
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)  # own stream, global RNG untouched
        return block_order(self.n, self.block, self.batch_size, gen, self.lanes)

    def __iter__(self) -> Iterator[list[int]]:
        """The remaining batches of the current epoch, from the cursor."""
        perm = self.order(self.epoch).tolist()
        starts = range(self.cursor * self.batch_size, len(self) * self.batch_size, self.batch_size)
        return iter([perm[s:s + self.batch_size] for s in starts])

    def advance(self) -> None:
        """One batch consumed: move the cursor (to the next epoch after its last batch)."""
        self.cursor += 1
        if self.cursor >= len(self):
            self.epoch, self.cursor = self.epoch + 1, 0

    def state_dict(self) -> dict[str, int]:
        """Position and what defines the order (checked on load)."""
        return {"epoch": self.epoch, "cursor": self.cursor, "n": self.n, "batch_size": self.batch_size,
                "seed": self.seed, "drop_last": int(self.drop_last), "block": self.block, "lanes": self.lanes}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Continue from a saved position; a different dataset size, batch size or seed is an error."""
        mine = self.state_dict()
        for key in ("n", "batch_size", "seed", "drop_last"):
            if int(state[key]) != mine[key]:
                raise ValueError(f"sampler state is for {key}={int(state[key])}, this run has {key}={mine[key]} "
                                 "(the dataset or batch size changed since the checkpoint)")
        if not 0 <= int(state["cursor"]) < len(self):
            raise ValueError(f"sampler cursor {int(state['cursor'])} is outside 0..{len(self) - 1}")
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        # the order the run started with, even where this machine would cache the dataset and choose another
        self.block, self.lanes = int(state.get("block", 1)), int(state.get("lanes", 1))


class _BlockBatches(EpochBatches):
    """Batches in block order for `loader(block=...)`: each iteration is the next epoch, whole."""

    def __iter__(self) -> Iterator[list[int]]:
        batches = super().__iter__()
        self.epoch += 1
        return batches
