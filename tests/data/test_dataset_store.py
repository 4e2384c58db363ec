from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from robolearn.data import store as store_mod
from robolearn.data.store import (
    DatasetCorruptError,
    DatasetError,
    EpisodeStore,
    EpisodeWriter,
    Feature,
    FrameError,
    Provenance,
    SchemaMismatchError,
    StorageOptions,
    convert,
    merge,
    split,
    validate,
)

FEATURES = {
    "cam": Feature((6, 5, 3), "uint8", axes=("height", "width", "channel")),
    "state": Feature((3,), "float32", units=("m", "m", "rad"), names=("x", "y", "yaw")),
    "action": Feature((2,), "float32", units="1"),
    "done": Feature((), "bool"),
}
SMALL = StorageOptions(chunk_frames={"cam": 4, "state": 8, "action": 8, "done": 8})


def episode(i: int, t: int | None = None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(i)
    t = t or int(rng.integers(2, 20))
    done = np.zeros(t, bool)
    done[-1] = True
    return {"cam": rng.integers(0, 256, (t, 6, 5, 3), dtype=np.uint8),
            "state": rng.normal(size=(t, 3)).astype(np.float32),
            "action": rng.normal(size=(t, 2)).astype(np.float32), "done": done}


def fingerprint(path: Path) -> dict[str, str]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def make(path: Path, n: int, **kw: object) -> list[dict[str, np.ndarray]]:
    eps = [episode(i) for i in range(n)]
    with EpisodeWriter(path, FEATURES, fps=20, storage=SMALL, **kw) as w:  # type: ignore[arg-type]
        for ep in eps:
            w.add_episode(ep)
    return eps


def test_round_trip_frames_blocks_and_append(tmp_path: Path) -> None:
    path = tmp_path / "d.zarr"
    eps = [episode(i) for i in range(5)]
    with EpisodeWriter(path, FEATURES, fps=20, storage=SMALL, provenance=Provenance(task="pick", robot="so100")) as w:
        for ep in eps[:3]:
            for t in range(len(ep["cam"])):
                w.add_frame({k: v[t] for k, v in ep.items()})
            assert w.end_episode() == w.num_episodes - 1
    with EpisodeWriter(path, FEATURES, fps=20, provenance={"task": "place", "operator": "ana"}) as w:
        assert w.episode_index == 3
        w.add_frames({k: v[:1] for k, v in eps[3].items()})
        w.add_frames({k: v[1:] for k, v in eps[3].items()})
        w.end_episode()
        w.add_episode(eps[4])
    s = EpisodeStore(path)
    assert (s.num_episodes, s.num_frames, s.fps) == (5, sum(len(e["cam"]) for e in eps), 20.0)
    assert s.features == FEATURES
    for i, ep in enumerate(eps):
        got = s.read_episode(i)
        for k in FEATURES:
            assert got[k].dtype == ep[k].dtype
            np.testing.assert_array_equal(got[k], ep[k])
    assert s.provenance(2)["task"] == "pick" and s.provenance(3)["task"] == "place"
    assert s.provenance(4)["operator"] == "ana" and s.provenance(0)["software"].startswith("robolearn")
    assert s.chunk_frames("cam") == 4 and validate(path) == []
    # arrays are exactly as long as the committed frames after a clean close (readable by plain zarr tools)
    assert json.loads((path / "data" / "cam" / "zarr.json").read_text())["shape"][0] == s.num_frames


def test_default_chunking_by_feature_size() -> None:
    opts = StorageOptions()
    assert opts.frames_per_chunk("cam", Feature((96, 96, 3), "uint8")) == 32
    assert opts.frames_per_chunk("state", Feature((14,), "float32")) == 1024
    assert opts.frames_per_chunk("big", Feature((480, 640, 3), "uint8")) == 1


def test_schema_mismatch_on_append_names_key_and_episode_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "d.zarr"
    make(path, 2)
    before = fingerprint(path)
    other = {**FEATURES, "action": Feature((3,), "float32", units="1")}
    with pytest.raises(SchemaMismatchError) as e:
        EpisodeWriter(path, other, fps=20)
    msg = str(e.value)
    assert str(path) in msg and "key 'action'" in msg and "episode 2" in msg and "shape" in msg
    with pytest.raises(SchemaMismatchError, match="key 'extra'"):
        EpisodeWriter(path, {**FEATURES, "extra": Feature((1,))}, fps=20)
    with pytest.raises(SchemaMismatchError, match="fps"):
        EpisodeWriter(path, FEATURES, fps=30)
    assert fingerprint(path) == before
    with EpisodeWriter(path, FEATURES, fps=20) as w:  # the lock was released: appending still works
        w.add_episode(episode(9))


def test_bad_frames_from_a_device_are_refused_naming_key_and_episode(tmp_path: Path) -> None:
    path = tmp_path / "d.zarr"
    make(path, 1)
    good = {k: v[0] for k, v in episode(5).items()}
    with EpisodeWriter(path) as w:
        w.add_frame(good)
        with pytest.raises(FrameError) as e:
            w.add_frame({**good, "state": np.zeros(4, np.float32)})
        assert "key 'state'" in str(e.value) and "episode 1" in str(e.value) and "frame 1" in str(e.value)
        assert "(3,)" in str(e.value)
        with pytest.raises(FrameError, match=r"key 'cam', episode 1.*float32 cannot be stored as uint8"):
            w.add_frame({**good, "cam": good["cam"].astype(np.float32)})
        with pytest.raises(FrameError, match="key 'action'.*missing"):
            w.add_frame({k: v for k, v in good.items() if k != "action"})
        with pytest.raises(FrameError, match="key 'gripper'.*not a feature"):
            w.add_frame({**good, "gripper": 1.0})
        with pytest.raises(FrameError, match="key 'cam'.*int64 cannot be stored as uint8"):
            w.add_frame({**good, "cam": np.full((6, 5, 3), 300)})
        # lossless or float-to-float conversions are fine: Python lists, float64, torch tensors, small ints
        w.add_frame({**good, "state": [1.0, 2.0, 3.0], "action": torch.ones(2, dtype=torch.float64),
                     "cam": np.full((6, 5, 3), 7), "done": np.bool_(True)})
        assert w.frames_in_episode == 2  # the refused frames left the episode untouched
        w.end_episode()
        with pytest.raises(DatasetError, match="no frames"):
            w.end_episode()
    s = EpisodeStore(path)
    assert s.num_episodes == 2
    np.testing.assert_array_equal(s.read_episode(1)["state"][1], [1, 2, 3])


def test_a_writer_dying_before_the_commit_leaves_earlier_episodes_and_no_visible_tail(tmp_path: Path,
                                                                                      monkeypatch: pytest.MonkeyPatch
                                                                                      ) -> None:
    path = tmp_path / "d.zarr"
    eps = make(path, 3)
    w = EpisodeWriter(path)
    reader = EpisodeStore(path)

    def die(*_: object, **__: object) -> None:
        raise KeyboardInterrupt("killed just before the commit record")

    monkeypatch.setattr(store_mod, "_write_root", die)
    w.add_frames(episode(10, t=13))
    with pytest.raises(KeyboardInterrupt):
        w.end_episode()
    monkeypatch.undo()
    w._lock.release()  # what process death does to the flock  # type: ignore[union-attr]
    # data and meta rows beyond the commit record exist on disk but nobody sees them
    assert json.loads((path / "data" / "cam" / "zarr.json").read_text())["shape"][0] > reader.num_frames
    reader.refresh()
    assert reader.num_episodes == 3 and validate(path) == []
    with EpisodeWriter(path) as w2:  # the next writer drops the tail and continues at episode 3
        assert w2.episode_index == 3
        w2.add_episode(episode(11, t=3))
    s = EpisodeStore(path)
    assert s.num_episodes == 4
    for i, ep in enumerate([*eps, episode(11, t=3)]):
        np.testing.assert_array_equal(s.read_episode(i)["cam"], ep["cam"])


def test_one_writer_at_a_time_and_readers_see_only_commits(tmp_path: Path) -> None:
    path = tmp_path / "d.zarr"
    make(path, 1)
    reader = EpisodeStore(path)
    with EpisodeWriter(path) as w:
        with pytest.raises(DatasetError, match="another writer"):
            EpisodeWriter(path)
        w.add_frames(episode(3))
        reader.refresh()
        assert reader.num_episodes == 1
        w.end_episode()
        assert reader.num_episodes == 1
        reader.refresh()
        assert reader.num_episodes == 2


def test_corruption_is_reported_with_key_and_episode(tmp_path: Path) -> None:
    path = tmp_path / "d.zarr"
    make(path, 4)
    s = EpisodeStore(path)
    cf = s.chunk_frames("cam")
    start, _ = s.episode_bounds(2)
    chunk = path / "data" / "cam" / f"c.{start // cf}.0.0.0"
    data = chunk.read_bytes()
    chunk.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(DatasetCorruptError, match=r"key 'cam', episodes? .*2.*cannot be decoded"):
        s.read_episode(2)
    problems = validate(path)
    assert problems and all(p.key == "cam" for p in problems)
    assert any(isinstance(p.episodes, tuple) and p.episodes[0] <= 2 <= p.episodes[1] for p in problems)
    chunk.unlink()  # missing: zarr alone would read zeros
    with pytest.raises(DatasetCorruptError, match=r"key 'cam'.*is missing"):
        s.read_episode(2)
    assert any("missing" in str(p) for p in validate(path, data=False))
    chunk.write_bytes(data)
    assert validate(path) == []
    # a flipped bit in an uncompressed store is caught by the per-episode checksum
    raw = convert(path, tmp_path / "raw.zarr", StorageOptions(compression="none", chunk_frames={"state": 1000}))
    f = tmp_path / "raw.zarr" / "data" / "state" / "c.0.0"
    b = bytearray(f.read_bytes())
    b[raw.episode_bounds(1)[0] * 12] ^= 0x40
    f.write_bytes(bytes(b))
    assert [str(p) for p in validate(raw.path)] == [f"dataset '{raw.path}', key 'state', episode 1: data does not "
                                                    "match the checksum recorded when it was written"]
    # a missing array, a broken commit record
    import shutil

    shutil.rmtree(path / "data" / "action")
    with pytest.raises(DatasetCorruptError, match=r"key 'action', episodes 0-3: array data/action is missing"):
        EpisodeStore(path)
    (path / "zarr.json").write_text((path / "zarr.json").read_text()[:50])
    with pytest.raises(DatasetCorruptError, match="zarr.json is not valid JSON"):
        EpisodeStore(path)
    with pytest.raises(DatasetError, match="does not exist"):
        EpisodeStore(tmp_path / "nope.zarr")


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.zarr"
    make(path, 1)
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["robolearn"]["schema_version"] = 99
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="schema version 99"):
        EpisodeStore(path)


def test_merge_split_convert_make_new_stores_and_keep_provenance(tmp_path: Path) -> None:
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    eps_a = make(a, 3, provenance=Provenance(task="a"))
    eps_b = [episode(100 + i) for i in range(2)]
    with EpisodeWriter(b, FEATURES, fps=20, provenance=Provenance(task="b")) as w:
        for ep in eps_b:
            w.add_episode(ep)
    before = fingerprint(a), fingerprint(b)
    m = merge(tmp_path / "m.zarr", [a, b])
    assert m.num_episodes == 5 and [m.provenance(i)["task"] for i in range(5)] == ["a"] * 3 + ["b"] * 2
    for i, ep in enumerate(eps_a + eps_b):
        np.testing.assert_array_equal(m.read_episode(i)["state"], ep["state"])
    tr, va = split(m, tmp_path / "train.zarr", tmp_path / "val.zarr", fraction=0.6, seed=1)
    assert tr.num_episodes == 3 and va.num_episodes == 2
    picked = tr.attributes["lineage"][-1]["episodes"] + va.attributes["lineage"][-1]["episodes"]
    assert sorted(picked) == list(range(5))
    for i, src in enumerate(tr.attributes["lineage"][-1]["episodes"]):
        np.testing.assert_array_equal(tr.read_episode(i)["cam"], m.read_episode(src)["cam"])
        assert tr.provenance(i)["task"] == m.provenance(src)["task"]
    c = convert(m, tmp_path / "c.zarr", StorageOptions(compression="blosc-lz4", chunk_frames={"cam": 2}))
    assert c.chunk_frames("cam") == 2 and "blosc" in c.storage("cam") and validate(c.path) == []
    assert (fingerprint(a), fingerprint(b)) == before
    with pytest.raises(DatasetError, match="already exists"):
        merge(tmp_path / "m.zarr", [a])
    odd = tmp_path / "odd.zarr"
    with EpisodeWriter(odd, {**FEATURES, "action": Feature((2,), "float64", units="1")}, fps=20) as w:
        w.add_episode({**episode(1), "action": np.zeros((len(episode(1)["cam"]), 2))})
    with pytest.raises(SchemaMismatchError, match=f"dataset '{odd}', key 'action': dtype differs"):
        merge(tmp_path / "bad.zarr", [a, odd])
    assert not (tmp_path / "bad.zarr").exists()


def test_string_feature_one_text_per_episode(tmp_path):
    """A task text is stored once per episode, visible only once the episode commits, checked and merged."""
    from robolearn.data.store import merge

    p = tmp_path / "tasks.zarr"
    feats = {"x": Feature((2,)), "task": Feature((), "string")}
    with EpisodeWriter(p, feats, 10.0) as w:
        w.add_episode({"x": np.zeros((3, 2)), "task": "pick up the cube"})
        for _ in range(2):
            w.add_frame({"x": np.ones(2), "task": "place it"})
        w.end_episode()
        w.add_frame({"x": np.ones(2), "task": "open"})
        with pytest.raises(FrameError, match="key 'task', episode 2.*text changed within the episode"):
            w.add_frame({"x": np.ones(2), "task": "close"})
        assert EpisodeStore(p).string_values("task") == ["pick up the cube", "place it"]  # "open" not committed
        w.add_frame({"x": np.ones(2), "task": "open"})
        w.end_episode()
        with pytest.raises(FrameError, match="expects a str"):
            w.add_frame({"x": np.ones(2), "task": 3})
    s = EpisodeStore(p)
    assert [s.episode_string("task", e) for e in range(3)] == ["pick up the cube", "place it", "open"]
    assert s.read("task", 2, 6).tolist() == ["pick up the cube", "place it", "place it", "open"]
    assert validate(p) == []
    m = merge(tmp_path / "m.zarr", [p, p])
    assert [m.episode_string("task", e) for e in range(6)] == ["pick up the cube", "place it", "open"] * 2
    assert m.string_values("task") == ["pick up the cube", "place it", "open"]
