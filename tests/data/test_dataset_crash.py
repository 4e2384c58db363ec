"""A recorder killed with SIGKILL at random moments loses at most the episode in progress.

The store holds a camera as compressed arrays and another as per-episode MP4 (lossless H.264 here, so every
committed frame is checked, to the RGB <-> YUV rounding), and a per-episode string (task text).

This file is also the recorder: `python test_dataset_crash.py STORE [MAX_EPISODES]` appends episodes whose contents
depend only on their index, so the test can check every committed episode byte for byte.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from robolearn.data.store import (
    DatasetError,
    EpisodeStore,
    EpisodeWriter,
    Feature,
    Provenance,
    StorageOptions,
    validate,
)
from robolearn.data.video import VideoCodec

FEATURES = {
    "cam": Feature((8, 8, 3), "uint8"),
    "wrist": Feature((16, 16, 3), "uint8"),
    "state": Feature((5,), "float32", units="m"),
    "action": Feature((2,), "float64"),
    "task": Feature((), "string"),  # one text per episode: committed with the episode or not at all
}
# small chunks so that episodes share chunks and commits rewrite chunks holding committed frames
STORAGE = StorageOptions(chunk_frames={"cam": 4, "state": 16, "action": 7}, video=("wrist",),
                         video_codec=VideoCodec(crf=0, pix_fmt="yuv444p", gop=4))
pytest.importorskip("av")  # imported here, so the forked recorders start without paying for it
YUV_ROUNDING = 3  # lossless H.264 in YUV 4:4:4: decoded RGB within the colour-conversion rounding
REPO = Path(__file__).resolve().parents[2]


def episode_data(i: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1000 + i)
    t = int(rng.integers(3, 40))
    return {
        "cam": rng.integers(0, 256, (t, 8, 8, 3), dtype=np.uint8),
        "wrist": rng.integers(0, 256, (t, 16, 16, 3), dtype=np.uint8),
        "state": rng.normal(size=(t, 5)).astype(np.float32),
        "action": rng.normal(size=(t, 2)),
        "task": np.array([f"task {i % 4} ünïcode"] * t, dtype=object),
    }


def record(path: str, max_episodes: int | None, ready: Any = None) -> None:
    with EpisodeWriter(path, FEATURES, fps=10, storage=STORAGE, provenance=Provenance(source="sim", task="crash")) as w:
        if ready is not None:
            ready.set()
        done = 0
        while max_episodes is None or done < max_episodes:
            ep = episode_data(w.episode_index)
            if w.episode_index % 2:
                w.add_frames(ep)
            else:
                for t in range(len(ep["cam"])):
                    w.add_frame({k: v[t] for k, v in ep.items()})
            w.end_episode()
            done += 1


def _has_tail(path: Path, frames: int, episodes: int) -> bool:
    partial = any(p.name.endswith(".partial") for p in path.rglob("*"))
    shape = json.loads((path / "data" / "cam" / "zarr.json").read_text())["shape"][0]
    videos = (path / "videos" / "wrist").glob("*.mp4")
    return partial or shape > frames or any(int(v.stem) >= episodes for v in videos)


def _wait_for_episodes(path: Path, n: int, proc: multiprocessing.process.BaseProcess, timeout: float = 60.0) -> None:
    """Until the store at `path` holds `n` committed episodes (read as any reader would, while it is written)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.is_alive():
        try:
            if path.exists() and EpisodeStore(path).num_episodes >= n:
                return
        except DatasetError:  # the store is being created: not yet a store
            pass
        time.sleep(0.02)
    raise AssertionError(f"recorder committed fewer than {n} episodes in {timeout:.0f} s")


def test_sigkill_at_random_moments_never_corrupts_committed_episodes(tmp_path: Path) -> None:
    # forked recorders start in milliseconds (an exec'd one pays ~2 s of imports); the last run below is exec'd
    ctx = multiprocessing.get_context("fork")
    path = tmp_path / "crash.zarr"
    rnd = random.Random(0)
    committed, tails = 0, 0
    for i in range(30):
        ready = ctx.Event()
        proc = ctx.Process(target=record, args=(str(path), None, ready), daemon=True)
        proc.start()
        if i % 5 == 4:  # kill early: during store creation, opening, or the clean-up of a previous tail
            time.sleep(rnd.uniform(0.0, 0.05))
        else:
            assert ready.wait(30), "recorder did not start"
            if i < 3:  # the first kills wait for a commit of their own, so a loaded machine still has some
                _wait_for_episodes(path, committed + 1, proc)
            time.sleep(rnd.uniform(0.0, 0.3))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        if not path.exists():
            continue
        store = EpisodeStore(path)  # opening checks that the commit record and the arrays agree
        assert store.num_episodes >= committed
        committed = store.num_episodes
        tails += _has_tail(path, store.num_frames, store.num_episodes)
    assert committed >= 3, committed  # how many commit before the kills depends on machine load; not the point here
    assert tails >= 3, "kills never landed while an episode was being written"
    # a fresh interpreter appends cleanly after all those crashes
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, __file__, str(path), "3"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert validate(path) == []
    store = EpisodeStore(path)
    assert store.num_episodes == committed + 3
    for e in range(store.num_episodes):
        got, want = store.read_episode(e), episode_data(e)
        for k in FEATURES:
            if k == "wrist":
                err = np.abs(got[k].astype(int) - want[k]).max()
                assert err <= YUV_ROUNDING, f"episode {e} key {k}: decoded frames off by {err}"
            else:
                np.testing.assert_array_equal(got[k], want[k], err_msg=f"episode {e} key {k}")
    assert not any(p.name.endswith(".partial") for p in path.rglob("*"))
    assert len(list((path / "videos" / "wrist").glob("*.mp4"))) == store.num_episodes
    assert {s["task"] for s in store.sessions} == {"crash"}


if __name__ == "__main__":
    record(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None)
