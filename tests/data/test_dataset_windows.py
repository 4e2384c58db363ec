from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from robolearn.data.store import DatasetCorruptError, DatasetError, EpisodeWriter, Feature, StorageOptions
from robolearn.data.windows import WindowDataset


@pytest.fixture()
def two_episodes(tmp_path: Path) -> Path:
    """Episode 0 has frames 0..2, episode 1 frames 3..6; every value equals its global frame index."""
    path = tmp_path / "w.zarr"
    feats = {"obs": Feature((2,), "float32"), "act": Feature((1,), "int64"), "cam": Feature((2, 2, 1), "uint8")}
    with EpisodeWriter(path, feats, fps=10, storage=StorageOptions(chunk_frames={"obs": 2, "act": 3, "cam": 2})) as w:
        for lo, hi in ((0, 3), (3, 7)):
            t = np.arange(lo, hi)
            w.add_episode({"obs": np.stack([t, -t], 1).astype(np.float32), "act": t[:, None],
                           "cam": np.broadcast_to(t[:, None, None, None], (len(t), 2, 2, 1)).astype(np.uint8)})
    return path


@pytest.mark.parametrize("cache", [True, False])
def test_windows_clamp_and_mask_at_both_episode_edges(two_episodes: Path, cache: bool) -> None:
    ds = WindowDataset(two_episodes, {"obs": [-1, 0], "act": [0, 1, 2], "cam": [-2, 0]}, cache=cache)
    assert len(ds) == 7 and ds.cached is cache
    s = ds[0]  # first frame of episode 0: the past is padded
    assert s["obs"][:, 0].tolist() == [0, 0] and s["obs_is_pad"].tolist() == [True, False]
    assert s["act"][:, 0].tolist() == [0, 1, 2] and s["act_is_pad"].tolist() == [False, False, False]
    s = ds[2]  # last frame of episode 0: the future is padded, never read from episode 1
    assert s["act"][:, 0].tolist() == [2, 2, 2] and s["act_is_pad"].tolist() == [False, True, True]
    assert s["obs"].tolist() == [[1, -1], [2, -2]] and not s["obs_is_pad"].any()
    assert s["cam"][:, 0, 0, 0].tolist() == [0, 2] and s["cam"].dtype == torch.uint8
    s = ds[3]  # first frame of episode 1: the past is padded, never read from episode 0
    assert s["obs"][:, 0].tolist() == [3, 3] and s["obs_is_pad"].tolist() == [True, False]
    assert s["cam"][:, 0, 0, 0].tolist() == [3, 3] and s["cam_is_pad"].tolist() == [True, False]
    assert (s["episode_index"].item(), s["frame_index"].item(), s["index"].item()) == (1, 0, 3)
    s = ds[5]
    assert s["act"][:, 0].tolist() == [5, 6, 6] and s["act_is_pad"].tolist() == [False, False, True]
    b = ds.get_batch([2, 5])
    assert b["act"].shape == (2, 3, 1) and b["cam"].shape == (2, 2, 2, 2, 1) and b["obs_is_pad"].shape == (2, 2)


def test_episode_subset_and_bad_keys(two_episodes: Path) -> None:
    ds = WindowDataset(two_episodes, {"act": [-1, 0, 1]}, episodes=[1])
    assert len(ds) == 4
    assert ds[0]["act"][:, 0].tolist() == [3, 3, 4] and ds[0]["index"].item() == 3
    with pytest.raises(DatasetError, match="key 'image'.*not a feature"):
        WindowDataset(two_episodes, {"image": [0]})
    with pytest.raises(DatasetError, match="episodes must be in 0..1"):
        WindowDataset(two_episodes, {"act": [0]}, episodes=[2])
    with pytest.raises(IndexError):
        ds[4]


def test_dataloader_with_two_workers_gives_the_same_batches(two_episodes: Path) -> None:
    ds = WindowDataset(two_episodes, {"obs": [-1, 0], "act": range(4), "cam": [-1, 0]})
    serial = list(ds.loader(batch_size=3, shuffle=False, num_workers=0))
    parallel = list(ds.loader(batch_size=3, shuffle=False, num_workers=2))
    assert len(serial) == len(parallel) == 3
    for a, b in zip(serial, parallel, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k])
    # a plain per-sample DataLoader (default collation) agrees too
    plain = next(iter(torch.utils.data.DataLoader(ds, batch_size=3, num_workers=0)))
    for k in serial[0]:
        torch.testing.assert_close(plain[k], serial[0][k])


def test_a_missing_chunk_is_refused_before_training(two_episodes: Path) -> None:
    (two_episodes / "data" / "obs" / "c.2.0").unlink()  # frames 4-5, both in episode 1
    WindowDataset(two_episodes, {"act": [0]}, cache=False)  # other keys are fine
    with pytest.raises(DatasetCorruptError, match=r"key 'obs', episode 1: chunk file c.2.0 \(frames 4-5\) is missing"):
        WindowDataset(two_episodes, {"obs": [0]}, cache=False)


def test_epoch_batches_order_position_and_state():
    from robolearn.data.windows import EpochBatches

    s = EpochBatches(10, 3, seed=7)  # 3 full batches an epoch, the 10th sample of each epoch dropped
    assert len(s) == 3
    e0 = list(s)
    assert len(e0) == 3 and len(set(sum(e0, []))) == 9 and sum(e0, []) == s.order(0)[:9].tolist()
    for _ in range(4):  # the whole epoch 0 and one batch of epoch 1
        s.advance()
    assert (s.epoch, s.cursor) == (1, 1)
    rest = list(s)
    assert rest == [s.order(1)[3:6].tolist(), s.order(1)[6:9].tolist()] and s.order(1).tolist() != s.order(0).tolist()
    fresh = EpochBatches(10, 3, seed=7)
    fresh.load_state_dict(s.state_dict())
    assert list(fresh) == rest
    assert list(EpochBatches(10, 3, seed=7, drop_last=False))[-1] == s.order(0)[9:].tolist()
    with pytest.raises(ValueError, match="batch_size=3, this run has batch_size=4"):
        EpochBatches(10, 4, seed=7).load_state_dict(s.state_dict())


def test_block_order_visits_every_sample_once_in_shuffled_groups_of_whole_blocks():
    from robolearn.data.windows import EpochBatches, block_order

    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert block_order(50, 1, 4, gen()).tolist() == torch.randperm(50, generator=gen()).tolist()
    assert sorted(block_order(103, 8, 4, gen()).tolist()) == list(range(103))  # the last block 7 samples long
    order = block_order(104, 8, 4, gen()).tolist()  # 13 blocks
    group = 8 * 4  # each run of 4 blocks' samples holds exactly those blocks, shuffled
    for g in range(0, 104, group):
        part = order[g:g + group]
        blocks = {i // 8 for i in part}
        assert sorted(part) == sorted(i for b in blocks for i in range(b * 8, b * 8 + 8)) and len(blocks) <= 4
    assert order[:group] != sorted(order[:group])  # shuffled within the group
    # two lanes (two DataLoader workers): batches take turns, each lane's batches from its own blocks only
    order = block_order(1000, 8, 16, gen(), lanes=2)
    assert sorted(order.tolist()) == list(range(1000))
    batches = order[:1000 // 16 * 16].reshape(-1, 16) // 8
    lane_blocks = [set(batches[i::2].reshape(-1).tolist()) for i in (0, 1)]
    full = 2 * min(len(batches[0::2]), len(batches[1::2]))  # the turns; then the longer lane and the rest
    assert not set(batches[:full:2].reshape(-1).tolist()) & set(batches[1:full:2].reshape(-1).tolist())
    assert len(lane_blocks[0] | lane_blocks[1]) == 125
    # a resumed sampler keeps the block order it started with, whatever this machine would choose
    s = EpochBatches(103, 4, seed=1, block=8)
    assert s.order(0).tolist() == block_order(103, 8, 4, torch.Generator().manual_seed(1 * 1_000_003)).tolist()
    s.advance()
    fresh = EpochBatches(103, 4, seed=1)
    fresh.load_state_dict(s.state_dict())
    assert fresh.block == 8 and list(fresh) == list(s)
    two = EpochBatches(103, 4, seed=1, block=8, lanes=2)
    fresh.load_state_dict(two.state_dict())
    assert fresh.lanes == 2 and list(fresh) == list(two)


def test_block_loader_gives_the_windows_of_the_uniform_loader(two_episodes: Path) -> None:
    deltas = {"obs": [-1, 0], "act": [0, 1, 2], "cam": [-2, 0]}
    ds = WindowDataset(two_episodes, deltas, cache=False)
    assert ds.suggested_block() == 32 and WindowDataset(two_episodes, deltas, cache=True).suggested_block() == 1
    seen = []
    for batch in ds.loader(2, block=2, generator=torch.Generator().manual_seed(0)):
        for k, v in ds.get_batch(batch["index"]).items():
            np.testing.assert_array_equal(batch[k].numpy(), v.numpy())
        seen += batch["index"].tolist()
    assert sorted(seen) == list(range(7))
