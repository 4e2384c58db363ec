"""Camera features stored as per-episode MP4: round trip, windows, validation, merge/split/convert, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from robolearn.cli.main import main
from robolearn.data.store import (
    DatasetCorruptError,
    DatasetError,
    EpisodeStore,
    EpisodeWriter,
    Feature,
    StorageOptions,
    convert,
    merge,
    split,
    validate,
)
from robolearn.data.video import VideoCodec
from robolearn.data.windows import WindowDataset

pytest.importorskip("av")

CAM = "observation.images.cam"
FEATURES = {"observation.state": Feature((3,)), CAM: Feature((32, 48, 3), "uint8"), "action": Feature((2,))}
VIDEO = StorageOptions(video=(CAM,))
# a smooth moving scene (what cameras see), not noise. Measured on it: crf 18 yuv420p mean |error| 4.3 levels (3.8
# of them from 4:2:0 chroma subsampling of its strong colour gradients: lossless yuv420p gives 3.8), max 25
MEAN_ERR, MAX_ERR = 5.0, 40


def episode(i: int, n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(i)
    yy, xx = np.mgrid[:32, :48]
    t = np.arange(n)[:, None, None]
    img = np.stack([128 + 100 * np.sin(xx / 7 + t / 5 + i), 128 + 100 * np.cos(yy / 5 - t / 7),
                    np.broadcast_to(40 * i + 2 * t, (n, 32, 48))], -1)
    return {"observation.state": rng.normal(size=(n, 3)).astype(np.float32), CAM: img.clip(0, 255).astype(np.uint8),
            "action": rng.normal(size=(n, 2)).astype(np.float32)}


LENGTHS = (20, 13, 31)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> EpisodeStore:
    path = tmp_path_factory.mktemp("v") / "d.zarr"
    with EpisodeWriter(path, FEATURES, fps=10, storage=VIDEO) as w:
        for i, n in enumerate(LENGTHS):
            if i == 1:  # frame by frame, with a discarded episode before it
                for t in range(5):
                    w.add_frame({k: v[t] for k, v in episode(99, 5).items()})
                w.discard_episode()
                for t in range(n):
                    w.add_frame({k: v[t] for k, v in episode(i, n).items()})
                w.end_episode()
            else:
                w.add_episode(episode(i, n))
    return EpisodeStore(path)


def _err(got: np.ndarray, want: np.ndarray) -> tuple[float, int]:
    d = np.abs(got.astype(int) - want.astype(int))
    return float(d.mean()), int(d.max())


def test_round_trip_one_file_per_episode(store):
    files = sorted(p.name for p in (store.path / "videos" / CAM).iterdir())
    assert files == ["000000.mp4", "000001.mp4", "000002.mp4"] and not (store.path / "data" / CAM).exists()
    assert store.storage(CAM) == "mp4 h264(crf=18, gop=8, yuv420p)" and store.chunk_frames(CAM) == 8
    for i, n in enumerate(LENGTHS):
        got, want = store.read_episode(i), episode(i, n)
        np.testing.assert_array_equal(got["action"], want["action"])  # other features exact
        mean, worst = _err(got[CAM], want[CAM])
        assert got[CAM].shape == (n, 32, 48, 3) and mean < MEAN_ERR and worst < MAX_ERR, (i, mean, worst)
    # a range across episodes, and random single frames (seek to the keyframe before each)
    whole = np.concatenate([episode(i, n)[CAM] for i, n in enumerate(LENGTHS)])
    assert _err(store.read(CAM, 15, 40), whole[15:40])[0] < MEAN_ERR
    for f in np.random.default_rng(0).integers(0, sum(LENGTHS), 12):
        assert _err(store.read(CAM, int(f), int(f) + 1), whole[f:f + 1])[0] < MEAN_ERR
    assert validate(store.path) == []


def test_lossless_setting_is_exact_to_colour_rounding(tmp_path):
    codec = VideoCodec(crf=0, pix_fmt="yuv444p")
    with EpisodeWriter(tmp_path / "l.zarr", FEATURES, fps=10, storage=StorageOptions(video=(CAM,), video_codec=codec)) \
            as w:
        w.add_episode(episode(0, 9))
    assert _err(EpisodeStore(tmp_path / "l.zarr").read_episode(0)[CAM], episode(0, 9)[CAM])[1] <= 3


def test_windows_and_dataloader_workers(store):
    ds = WindowDataset(store, {CAM: [-1, 0], "action": list(range(4))}, cache=False)
    batch = next(iter(ds.loader(batch_size=16, num_workers=2, generator=None)))
    assert batch[CAM].shape == (16, 2, 32, 48, 3) and batch[CAM].dtype.is_floating_point is False
    whole = np.concatenate([episode(i, n)[CAM] for i, n in enumerate(LENGTHS)])
    idx = batch["index"].numpy()
    assert _err(batch[CAM][:, 1].numpy(), whole[idx])[0] < MEAN_ERR


def test_merge_moves_files_as_is_split_keeps_videos_convert_both_ways(store, tmp_path):
    m = merge(tmp_path / "m.zarr", [store.path, store.path])
    assert m.num_episodes == 6 and m.is_video(CAM) and validate(m.path) == []
    assert (m.video_path(CAM, 4)).read_bytes() == store.video_path(CAM, 1).read_bytes()  # no re-encoding
    a, b = split(m.path, tmp_path / "a.zarr", tmp_path / "b.zarr", fraction=0.5)
    assert a.is_video(CAM) and b.is_video(CAM) and validate(a.path) == [] == validate(b.path)
    arrays = convert(store.path, tmp_path / "z.zarr", StorageOptions())
    assert not arrays.is_video(CAM) and arrays.storage(CAM).startswith("zstd")
    np.testing.assert_array_equal(arrays.read_episode(2)[CAM], store.read_episode(2)[CAM])  # decoded once, exactly
    back = convert(arrays.path, tmp_path / "v.zarr", VIDEO)
    # a second generation (decoded, re-encoded) loses a little more: why merge/split copy files instead
    assert back.is_video(CAM) and _err(back.read_episode(0)[CAM], episode(0, 20)[CAM])[0] < 1.5 * MEAN_ERR


def test_damaged_or_missing_files_are_named_and_nothing_is_copied(store, tmp_path):
    bad = convert(store.path, tmp_path / "bad.zarr", VIDEO)  # re-encoded copy we may break
    f = bad.video_path(CAM, 1)
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    bad.video_path(CAM, 2).unlink()
    problems = [str(p) for p in validate(bad.path)]
    assert any(f"key '{CAM}', episode 2: video file 000002.mp4 is missing" in p for p in problems), problems
    assert any(f"key '{CAM}', episode 1: video file 000001.mp4 does not match the checksum" in p for p in problems)
    with pytest.raises(DatasetCorruptError, match="episode 2: video file 000002.mp4 is missing"):
        bad.read(CAM, 0, bad.num_frames)
    with pytest.raises(DatasetCorruptError, match="episode 1: video file does not match its recorded checksum"):
        merge(tmp_path / "never.zarr", [bad.path])
    assert not (tmp_path / "never.zarr").exists()


def test_uncommitted_videos_of_a_killed_writer_are_dropped_on_reopen(store, tmp_path):
    path = tmp_path / "k.zarr"
    convert(store.path, path, VIDEO)
    d = path / "videos" / CAM
    (d / "000003.mp4").write_bytes(b"written, renamed, then killed before the commit")
    (d / "000003.mp4.partial").write_bytes(b"killed mid-episode")
    with EpisodeWriter(path) as w:
        assert w.num_episodes == 3
    assert sorted(p.name for p in d.iterdir()) == ["000000.mp4", "000001.mp4", "000002.mp4"]
    assert validate(path) == []


def test_bad_video_requests_are_one_line_errors(tmp_path):
    with pytest.raises(DatasetError, match="key 'action': only \\(H, W, 3\\) uint8 camera images can be stored as "
                                           "video"):
        EpisodeWriter(tmp_path / "a.zarr", FEATURES, fps=10, storage=StorageOptions(video=("action",)))
    odd = {CAM: Feature((31, 48, 3), "uint8")}
    with pytest.raises(DatasetError, match="yuv420p video needs an even height and width"):
        EpisodeWriter(tmp_path / "b.zarr", odd, fps=10, storage=VIDEO)
    with pytest.raises(DatasetError, match="key 'nope': is named for video storage but is not a feature"):
        EpisodeWriter(tmp_path / "c.zarr", FEATURES, fps=10, storage=StorageOptions(video=("nope",)))
    assert not any(tmp_path.iterdir())
    with pytest.raises(ValueError, match="crf must be in 0..51"):
        VideoCodec(crf=60)


def test_cli_convert_to_video_and_info(store, tmp_path, capsys):
    arrays = convert(store.path, tmp_path / "z.zarr", StorageOptions())
    out = tmp_path / "cli.zarr"
    assert main(["dataset", "convert", str(arrays.path), str(out), "--video", CAM, "--crf", "23", "--gop", "4"]) == 0
    capsys.readouterr()
    assert main(["dataset", "info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["features"][CAM]["codec"] == "mp4 h264(crf=23, gop=4, yuv420p)"
    assert main(["dataset", "validate", str(out)]) == 0
    assert Path(out, "videos", CAM, "000002.mp4").is_file()


def test_uncached_windows_decode_the_same_pixels_as_the_cached_store(store):
    deltas = {CAM: [-2, 0, 3], "action": [0, 1]}
    cached, uncached = WindowDataset(store, deltas, cache=True), WindowDataset(store, deltas, cache=False)
    idx = np.random.default_rng(1).permutation(len(cached))  # every frame, in random order (seeks back and forth)
    for part in np.array_split(idx, 4):
        a, b = cached.get_batch(part), uncached.get_batch(part)
        for k in a:
            np.testing.assert_array_equal(b[k].numpy(), a[k].numpy(), err_msg=k)
    # both paths ran: keyframe intervals decoded partly on a first ask (always), whole into the LRU on a second
    assert any(key == CAM for key, _ in uncached._lru._chunks)
    # block order decodes whole intervals on the first ask
    blocks = WindowDataset(store, deltas, cache=False)
    for batch in blocks.loader(16, block=8, generator=torch.Generator().manual_seed(0)):
        want = cached.get_batch(batch["index"])
        for k in want:
            np.testing.assert_array_equal(batch[k].numpy(), want[k].numpy(), err_msg=k)
    assert blocks._lru.whole_video and not blocks._lru._seen
