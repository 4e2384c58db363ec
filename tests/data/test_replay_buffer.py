from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from robolearn.data.replay import ReplayBuffer
from robolearn.data.store import DatasetError, EpisodeStore, EpisodeWriter, Feature

FIELDS = {"obs": Feature((2,), "float32"), "action": Feature((1,), "float32"), "reward": Feature(()),
          "done": Feature((), "bool")}


def batch(lo: int, hi: int) -> dict[str, torch.Tensor]:
    t = torch.arange(lo, hi, dtype=torch.float32)
    return {"obs": torch.stack([t, -t], 1), "action": t[:, None], "reward": t * 0.5, "done": t % 3 == 0}


def test_ring_wraps_and_samples_only_stored_transitions() -> None:
    buf = ReplayBuffer(5, FIELDS)
    buf.add(batch(0, 3))
    assert len(buf) == 3 and buf.ptr == 3
    buf.add(batch(3, 7))  # wraps: 0 and 1 are overwritten by 5 and 6
    assert len(buf) == 5 and buf.ptr == 2
    assert buf.data["action"][buf.indices(), 0].tolist() == [2, 3, 4, 5, 6]
    s = buf.sample(64, generator=torch.Generator().manual_seed(0))
    assert set(s["action"][:, 0].tolist()) <= {2.0, 3.0, 4.0, 5.0, 6.0}
    torch.testing.assert_close(s["obs"][:, 0], s["action"][:, 0])
    buf.add(batch(10, 22))  # more than the capacity at once: the newest five survive
    assert buf.data["action"][buf.indices(), 0].tolist() == [17, 18, 19, 20, 21]
    with pytest.raises(ValueError, match="missing"):
        buf.add({"obs": torch.zeros(1, 2)})


def test_save_and_load_round_trip_through_a_store(tmp_path: Path) -> None:
    buf = ReplayBuffer(6, FIELDS)
    buf.add(batch(0, 9))
    path = tmp_path / "replay.zarr"
    assert buf.save_to_store(path, fps=50) == 0
    assert buf.save_to_store(path, fps=50) == 1
    s = EpisodeStore(path)
    assert s.num_episodes == 2 and s.read_episode(0)["action"][:, 0].tolist() == [3, 4, 5, 6, 7, 8]
    back = ReplayBuffer(4, FIELDS)
    assert back.load_from_store(path) == 4  # only the newest `capacity` transitions are kept
    assert back.data["action"][back.indices(), 0].tolist() == [5, 6, 7, 8]
    full = ReplayBuffer.from_store(path)
    assert len(full) == 12
    for k in FIELDS:
        torch.testing.assert_close(full.data[k][:6], buf.data[k][buf.indices()])


def test_demonstrations_load_as_transitions_with_next_observations(tmp_path: Path) -> None:
    path = tmp_path / "demo.zarr"
    with EpisodeWriter(path, {"obs": Feature((2,)), "action": Feature((1,))}, fps=10) as w:
        for lo, hi in ((0, 3), (3, 5)):
            t = np.arange(lo, hi, dtype=np.float32)
            w.add_episode({"obs": np.stack([t, t], 1), "action": t[:, None]})
    buf = ReplayBuffer(10, {"obs": Feature((2,)), "action": Feature((1,)), "next.obs": Feature((2,))})
    assert buf.load_from_store(path) == 5
    assert buf.data["next.obs"][:5, 0].tolist() == [1, 2, 2, 4, 4]  # shifted within each episode
    with pytest.raises(DatasetError, match="key 'reward'"):
        ReplayBuffer(3, {"reward": Feature(())}).load_from_store(path)
