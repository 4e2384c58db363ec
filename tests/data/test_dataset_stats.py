from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from robolearn.data.stats import compute_stats, load_stats, save_stats
from robolearn.data.store import DatasetError, EpisodeStore, EpisodeWriter, Feature, StorageOptions


def test_stats_match_numpy_and_are_stored(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    feats = {"cam": Feature((4, 5, 3), "uint8"), "state": Feature((3,), "float32"), "count": Feature((), "int32")}
    eps = [{"cam": rng.integers(0, 256, (t, 4, 5, 3), dtype=np.uint8),
            "state": (rng.normal(size=(t, 3)) * [1, 10, 100] + [0, 5, -50]).astype(np.float32),
            "count": rng.integers(-5, 5, t).astype(np.int32)} for t in (7, 11, 3)]
    path = tmp_path / "s.zarr"
    # small chunks and blocks: statistics are merged across many pieces
    with EpisodeWriter(path, feats, fps=10, storage=StorageOptions(chunk_frames={"cam": 2, "state": 4})) as w:
        for ep in eps:
            w.add_episode(ep)
    st = compute_stats(path, block_bytes=200)
    cam = np.concatenate([e["cam"] for e in eps]).reshape(-1, 3).astype(np.float64)
    state = np.concatenate([e["state"] for e in eps]).astype(np.float64)
    count = np.concatenate([e["count"] for e in eps]).astype(np.float64)
    for key, x in (("cam", cam), ("state", state), ("count", count)):
        want = {"mean": x.mean(0), "std": x.std(0), "min": x.min(0), "max": x.max(0),
                "q01": np.quantile(x, 0.01, axis=0), "q99": np.quantile(x, 0.99, axis=0)}
        for name, v in want.items():
            np.testing.assert_allclose(st[key][name], v, rtol=1e-9, atol=1e-9, err_msg=f"{key} {name}")
    assert st["cam"]["mean"].shape == (3,) and st["state"]["std"].shape == (3,) and st["count"]["max"].shape == ()
    save_stats(path, st)
    loaded = load_stats(path)
    np.testing.assert_allclose(loaded["state"]["q99"], st["state"]["q99"])
    with EpisodeWriter(path) as w:
        w.add_episode({k: v[:2] for k, v in eps[0].items()})
    with pytest.raises(DatasetError, match="statistics cover 3 of 4 episodes"):
        load_stats(path)
    assert load_stats(path, allow_stale=True)["cam"]["mean"].shape == (3,)
    # quantiles from a subsample when asked for fewer values than there are
    sub = compute_stats(EpisodeStore(path), ["state"], max_samples=5, seed=1)
    assert np.all(sub["state"]["q01"] >= st["state"]["min"]) and np.all(sub["state"]["q99"] <= st["state"]["max"])
