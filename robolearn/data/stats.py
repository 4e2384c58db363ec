"""Normalization statistics per key: mean, std, min, max, q01, q99; computed once and stored in the dataset.

Vectors get one value per entry; images ((H, W, C) uint8) one per channel, in stored units (0..255). uint8 data is
summarized through exact 256-bin histograms (exact quantiles at any size); other dtypes stream mean and variance
(Chan's parallel update, float64) and take quantiles over all frames, or, beyond `max_samples` values per column,
over frames drawn with `seed`. Quantiles use numpy's default (linear) definition; std is the population std (ddof=0).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from robolearn.data.store import DatasetError, EpisodeStore

STAT_NAMES = ("mean", "std", "min", "max", "q01", "q99")
LEROBOT_QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)  # the quantiles LeRobot 0.4 writes: q01 q10 q50 q90 q99
Stats = dict[str, dict[str, np.ndarray]]


def _columns(x: np.ndarray, image: bool) -> np.ndarray:
    """(T, *shape) -> (rows, columns): channels of an image, entries of anything else."""
    return x.reshape(-1, x.shape[-1]) if image else x.reshape(len(x), -1)


def _hist_quantile(hist: np.ndarray, q: float) -> np.ndarray:
    """Numpy's linear quantile from per-column value histograms (C, 256)."""
    n = hist.sum(1)
    cum = np.cumsum(hist, 1)
    pos = q * (n - 1)
    lo, hi = np.floor(pos).astype(np.int64), np.ceil(pos).astype(np.int64)
    v_lo = np.array([np.searchsorted(c, i, side="right") for c, i in zip(cum, lo, strict=True)], np.float64)
    v_hi = np.array([np.searchsorted(c, i, side="right") for c, i in zip(cum, hi, strict=True)], np.float64)
    return v_lo + (pos - lo) * (v_hi - v_lo)


def quantile_name(q: float) -> str:
    """0.01 -> 'q01', 0.5 -> 'q50'."""
    return f"q{round(q * 100):02d}"


def hist_stats(hist: np.ndarray, quantiles: Sequence[float] = (0.01, 0.99)) -> dict[str, np.ndarray]:
    """mean/std/min/max/quantiles per column from exact value histograms (C, 256) of uint8 data."""
    v = np.arange(hist.shape[1], dtype=np.float64)
    n = hist.sum(1)
    mean = (hist * v).sum(1) / n
    var = (hist * (v[None] - mean[:, None]) ** 2).sum(1) / n
    nz = hist > 0
    st = {"mean": mean, "std": np.sqrt(var), "min": np.argmax(nz, 1).astype(np.float64),
          "max": float(hist.shape[1] - 1) - np.argmax(nz[:, ::-1], 1)}
    st.update({quantile_name(q): _hist_quantile(hist, q) for q in quantiles})
    return st


def uint8_hist(x: np.ndarray, image: bool) -> np.ndarray:
    """(C, 256) value counts per column (image channel, or entry) of uint8 frames (T, *shape)."""
    cols = _columns(x, image)
    c = cols.shape[1]
    if c <= 16:  # a few columns (image channels): one bincount each, no widened copy of the frames
        return np.stack([np.bincount(cols[:, i], minlength=256) for i in range(c)]).astype(np.int64)
    flat = cols.astype(np.int32) + 256 * np.arange(c, dtype=np.int32)
    return np.bincount(flat.ravel(), minlength=256 * c).reshape(c, 256)


def _blocks(store: EpisodeStore, key: str, block_bytes: int) -> Any:
    step = max(1, block_bytes // store.features[key].frame_bytes)
    for lo in range(0, store.num_frames, step):
        hi = min(store.num_frames, lo + step)
        yield lo, store.read(key, lo, hi)


def compute_stats(store: EpisodeStore | str, keys: Sequence[str] | None = None, *, max_samples: int = 1_000_000,
                  seed: int = 0, block_bytes: int = 64 << 20, quantiles: Sequence[float] = (0.01, 0.99)) -> Stats:
    """Statistics of the committed frames, per key: mean/std/min/max/quantiles arrays per entry or channel, and count.

    `quantiles` (default q01 and q99) name the keys: 0.1 -> "q10".
    """
    store = store if isinstance(store, EpisodeStore) else EpisodeStore(store)
    if store.num_frames == 0:
        raise DatasetError(store.name, "has no episodes; nothing to compute statistics of")
    out: Stats = {}
    for key in keys if keys is not None else [k for k, f in store.features.items() if not f.is_string]:
        f = store.features[key]
        if f.is_string:
            raise DatasetError(store.name, "is a string feature (one text per episode): it has no statistics", key=key)
        out_shape = (f.shape[-1],) if f.image else f.shape
        if f.dtype == "uint8":
            hist: np.ndarray | None = None
            for _, x in _blocks(store, key, block_bytes):
                h = uint8_hist(x, f.image)
                hist = h if hist is None else hist + h
            assert hist is not None
            st = hist_stats(hist, quantiles)
            count = int(hist.sum(1)[0])
        else:
            rows_per_frame = int(np.prod(f.shape[:-1])) if f.image else 1
            cap = max(1, max_samples // rows_per_frame)  # frames kept for quantiles
            rng = np.random.default_rng(seed)
            take = None if store.num_frames <= cap else np.sort(rng.choice(store.num_frames, cap, replace=False))
            count, mean, m2 = 0, None, None
            lo_v, hi_v, samples = None, None, []
            for lo, x in _blocks(store, key, block_bytes):
                cols = _columns(x, f.image).astype(np.float64)
                n_b = len(cols)
                mean_b, m2_b = cols.mean(0), ((cols - cols.mean(0)) ** 2).sum(0)
                if mean is None:
                    count, mean, m2 = n_b, mean_b, m2_b
                    lo_v, hi_v = cols.min(0), cols.max(0)
                else:
                    # M2 = M2_a + M2_b + δ² n_a n_b / n  (Chan et al.)
                    delta = mean_b - mean
                    total = count + n_b
                    mean = mean + delta * n_b / total
                    m2 = m2 + m2_b + delta**2 * count * n_b / total
                    count = total
                    lo_v, hi_v = np.minimum(lo_v, cols.min(0)), np.maximum(hi_v, cols.max(0))
                if take is None:
                    samples.append(cols)
                else:
                    sel = take[(take >= lo) & (take < lo + len(x))] - lo
                    samples.append(_columns(x[sel], f.image).astype(np.float64))
            sample = np.concatenate(samples)
            qs = np.quantile(sample, list(quantiles), axis=0)
            st = {"mean": mean, "std": np.sqrt(m2 / count), "min": lo_v, "max": hi_v,
                  **{quantile_name(q): v for q, v in zip(quantiles, qs, strict=True)}}
        out[key] = {k: np.asarray(v, np.float64).reshape(out_shape) for k, v in st.items()}
        out[key]["count"] = np.asarray(count)
    return out


def save_stats(store: EpisodeStore | str, stats: Stats) -> None:
    """Store statistics in the dataset's attributes, stamped with the episode count they cover."""
    store = store if isinstance(store, EpisodeStore) else EpisodeStore(store)
    payload = {
        "episodes": store.num_episodes, "frames": store.num_frames, "computed": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "features": {k: {n: np.asarray(v).tolist() for n, v in s.items()} for k, s in stats.items()},
    }
    store.set_attributes(stats=payload)


def load_stats(store: EpisodeStore | str, allow_stale: bool = False) -> Stats:
    """Stored statistics; an error if none, or if episodes were added since (unless `allow_stale`)."""
    store = store if isinstance(store, EpisodeStore) else EpisodeStore(store)
    payload = store.attributes.get("stats")
    if not payload:
        raise DatasetError(store.name, f"has no statistics; run `robolearn dataset stats {store.name}`")
    if payload.get("episodes") != store.num_episodes and not allow_stale:
        raise DatasetError(store.name, f"statistics cover {payload.get('episodes')} of {store.num_episodes} episodes; "
                                       f"run `robolearn dataset stats {store.name}` again")
    return {k: {n: np.asarray(v, np.float64) for n, v in s.items()} for k, s in payload["features"].items()}
