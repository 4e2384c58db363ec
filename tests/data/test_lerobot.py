"""LeRobot v3.0 export and import: round trip through the exporter, and a small v3 dataset built by hand."""

import io
import json
import sys

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
av = pytest.importorskip("av")

from robolearn.cli.main import main  # noqa: E402
from robolearn.data import DatasetError, EpisodeStore, EpisodeWriter, Feature, validate  # noqa: E402
from robolearn.data.lerobot import import_lerobot  # noqa: E402


def smooth_images(n, h=32, w=48, phase=0.0):
    y, x = np.mgrid[0:h, 0:w]
    out = []
    for t in range(n):
        r = 128 + 100 * np.sin(x / 9 + t / 5 + phase)
        g = 128 + 100 * np.cos(y / 7 - t / 7)
        out.append(np.stack([r, g, np.full_like(r, 60 + 4 * t % 180)], -1))
    return np.clip(out, 0, 255).astype(np.uint8)


@pytest.fixture
def source(tmp_path):
    p = tmp_path / "src.zarr"
    feats = {"observation.state": Feature((3,), units="rad", names=("a", "b", "c")),
             "observation.images.front": Feature((32, 48, 3), "uint8", axes=("height", "width", "channel")),
             "action": Feature((2,)), "reward": Feature(()), "next.done": Feature((), "bool"),
             "grid": Feature((2, 3), "float64")}
    rng = np.random.default_rng(0)
    with EpisodeWriter(p, feats, 15.0, provenance={"task": "pick", "note": "pick up the cube", "robot": "arm"}) as w:
        for e, n in enumerate((7, 12, 5)):
            w.add_episode({"observation.state": rng.normal(size=(n, 3)).astype(np.float32),
                           "observation.images.front": smooth_images(n, phase=e),
                           "action": rng.normal(size=(n, 2)).astype(np.float32),
                           "reward": rng.normal(size=n).astype(np.float32),
                           "next.done": np.arange(n) == n - 1, "grid": rng.normal(size=(n, 2, 3))})
    return EpisodeStore(p)


def test_export_writes_the_v3_layout_and_imports_back(tmp_path, source, capsys):
    out = tmp_path / "lr"
    assert main(["dataset", "convert", source.name, str(out), "--to", "lerobot"]) == 0
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["total_episodes"] == 3 and info["total_frames"] == 24
    assert info["fps"] == 15 and info["features"]["observation.images.front"]["dtype"] == "video"
    assert info["features"]["reward"]["shape"] == [1] and info["features"]["grid"]["shape"] == [2, 3]
    data = pq.read_table(out / "data/chunk-000/file-000.parquet")
    assert data.column("index").to_pylist() == list(range(24))
    assert data.column("episode_index").to_pylist() == [0] * 7 + [1] * 12 + [2] * 5
    assert data.column("frame_index").to_pylist()[7:10] == [0, 1, 2]
    eps = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [(r["dataset_from_index"], r["dataset_to_index"], r["length"]) for r in eps] == [(0, 7, 7), (7, 19, 12),
                                                                                           (19, 24, 5)]
    assert eps[1]["videos/observation.images.front/from_timestamp"] == pytest.approx(7 / 15)
    assert eps[0]["tasks"] == ["pick up the cube"]
    tasks = pq.read_table(out / "meta/tasks.parquet")
    assert tasks.column("task").to_pylist() == ["pick up the cube"]
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"]
    stats = json.loads((out / "meta/stats.json").read_text())
    assert np.array(stats["observation.images.front"]["mean"]).shape == (3, 1, 1)
    with av.open(str(out / "videos/observation.images.front/chunk-000/file-000.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 24

    back = tmp_path / "back.zarr"
    assert main(["dataset", "convert", str(out), str(back)]) == 0
    b = EpisodeStore(back)
    assert b.features == source.features and b.fps == source.fps and validate(back) == []
    assert [b.episode_length(e) for e in range(3)] == [7, 12, 5]
    for e in range(3):
        x, y = source.read_episode(e), b.read_episode(e)
        for k in x:
            if k == "observation.images.front":  # H.264 is lossy; smooth images come back close
                assert np.abs(x[k].astype(int) - y[k]).mean() < 4
            else:
                np.testing.assert_array_equal(x[k], y[k], err_msg=k)
    assert b.sessions[0]["note"] == "pick up the cube" and b.sessions[0]["task"] == "pick"


def _png(img):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def test_import_a_hand_built_v3_dataset(tmp_path):
    """Two episodes the way LeRobot lays them out: one data file, an `image` feature (PNG bytes in the parquet),
    a `video` feature in one MP4 with both episodes, names as a dict, two tasks."""
    root = tmp_path / "hand"
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    (root / "data/chunk-000").mkdir(parents=True)
    lengths, fps = [4, 6], 10
    n = sum(lengths)
    state = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    wrist = [np.full((8, 10, 3), 10 * i, np.uint8) for i in range(n)]
    ep_index = np.repeat([0, 1], lengths)
    table = pa.table({
        "observation.state": pa.array(state.tolist(), pa.list_(pa.float32())),  # variable-size lists, as HF writes
        "observation.images.wrist": pa.array([{"bytes": _png(im), "path": None} for im in wrist],
                                             pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        "action": pa.array(state[:, :1].reshape(-1)),
        "timestamp": pa.array(np.concatenate([np.arange(k) / fps for k in lengths]).astype(np.float32)),
        "frame_index": pa.array(np.concatenate([np.arange(k) for k in lengths])),
        "episode_index": pa.array(ep_index), "index": pa.array(np.arange(n)),
        "task_index": pa.array(ep_index),
    })
    pq.write_table(table, root / "data/chunk-000/file-000.parquet")
    video = root / "videos/observation.images.front/chunk-000/file-000.mp4"
    video.parent.mkdir(parents=True)
    frames = smooth_images(n, 16, 16)
    with av.open(str(video), "w") as c:
        s = c.add_stream("libx264", rate=fps, options={"crf": "10"})
        s.width = s.height = 16
        s.pix_fmt = "yuv420p"
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = i
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    rows = []
    for e, (lo, k) in enumerate(zip([0, 4], lengths, strict=True)):
        rows.append({"episode_index": e, "tasks": [["open the drawer", "close the drawer"][e]], "length": k,
                     "data/chunk_index": 0, "data/file_index": 0, "dataset_from_index": lo, "dataset_to_index": lo + k,
                     "videos/observation.images.front/chunk_index": 0, "videos/observation.images.front/file_index": 0,
                     "videos/observation.images.front/from_timestamp": lo / fps,
                     "videos/observation.images.front/to_timestamp": (lo + k) / fps})
    pq.write_table(pa.Table.from_pylist(rows), root / "meta/episodes/chunk-000/file-000.parquet")
    pq.write_table(pa.table({"task_index": [0, 1], "__index_level_0__": ["open the drawer", "close the drawer"]}),
                   root / "meta/tasks.parquet")
    info = {"codebase_version": "v3.0", "robot_type": "so100", "fps": fps, "total_episodes": 2, "total_frames": n,
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
            "features": {
                "observation.state": {"dtype": "float32", "shape": [2], "names": {"motors": ["shoulder", "elbow"]}},
                "observation.images.wrist": {"dtype": "image", "shape": [8, 10, 3],
                                             "names": ["height", "width", "channels"]},
                "observation.images.front": {"dtype": "video", "shape": [16, 16, 3],
                                             "names": ["height", "width", "channels"]},
                "action": {"dtype": "float32", "shape": [1], "names": None},
                **{k: {"dtype": "int64" if k != "timestamp" else "float32", "shape": [1], "names": None}
                   for k in ("timestamp", "frame_index", "episode_index", "index", "task_index")}}}
    (root / "meta/info.json").write_text(json.dumps(info))

    s = import_lerobot(root, tmp_path / "hand.zarr")
    assert s.num_episodes == 2 and [s.episode_length(e) for e in range(2)] == lengths and s.fps == 10
    assert s.features["observation.state"].names == ("shoulder", "elbow") and s.features["action"].shape == ()
    d1 = s.read_episode(1)
    np.testing.assert_array_equal(d1["observation.state"], state[4:])
    np.testing.assert_array_equal(d1["observation.images.wrist"], np.stack(wrist[4:]))
    assert np.abs(d1["observation.images.front"].astype(int) - frames[4:]).mean() < 4  # the right frames, lossy
    assert [s.provenance(e)["note"] for e in range(2)] == ["open the drawer", "close the drawer"]
    assert s.provenance(0)["source"] == "lerobot" and s.provenance(0)["robot"] == "so100"

    # an older version, and a missing data file: one clear error each, nothing written
    info["codebase_version"] = "v2.1"
    (root / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(DatasetError, match="only v3.x is read"):
        import_lerobot(root, tmp_path / "old.zarr")
    info["codebase_version"] = "v3.0"
    (root / "meta/info.json").write_text(json.dumps(info))
    (root / "data/chunk-000/file-000.parquet").unlink()
    with pytest.raises(DatasetError, match="data file data/chunk-000/file-000.parquet is missing"):
        import_lerobot(root, tmp_path / "broken.zarr")
    assert not (tmp_path / "old.zarr").exists() and not (tmp_path / "broken.zarr").exists()


# ------------------------------------------------------------------ rollover, remux, tasks, stats, bad input
STAT_KEYS = {"mean", "std", "min", "max", "count", "q01", "q10", "q50", "q90", "q99"}


@pytest.fixture
def tasks_store(tmp_path):
    """Five episodes with a task text each, a camera stored as per-episode MP4 and one as compressed arrays."""
    from robolearn.data import StorageOptions

    p = tmp_path / "tasks.zarr"
    feats = {"observation.state": Feature((3,), names=("x", "y", "z")),
             "observation.images.front": Feature((32, 48, 3), "uint8"),
             "observation.images.wrist": Feature((16, 16, 3), "uint8"),
             "action": Feature((2,)), "task": Feature((), "string")}
    rng = np.random.default_rng(1)
    texts = ["pick up the cube", "open the drawer", "pick up the cube", "stack ünïcode blocks", "open the drawer"]
    with EpisodeWriter(p, feats, 10.0, storage=StorageOptions(video=("observation.images.front",))) as w:
        for e, n in enumerate((6, 9, 4, 7, 5)):
            w.add_episode({"observation.state": rng.normal(size=(n, 3)).astype(np.float32),
                           "observation.images.front": smooth_images(n, phase=e),
                           "observation.images.wrist": smooth_images(n, 16, 16, phase=2 * e),
                           "action": rng.normal(size=(n, 2)).astype(np.float32), "task": texts[e]})
    return EpisodeStore(p)


def _packets(path):
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(video=0) if p.size]


def test_rollover_remux_tasks_round_trip(tmp_path, tasks_store):
    from robolearn.data.lerobot import export_lerobot

    src = tasks_store
    out = export_lerobot(src, tmp_path / "lr", chunks_size=2, data_files_size_in_mb=1e-4,
                         video_files_size_in_mb=0.005)
    info = json.loads((out / "meta/info.json").read_text())
    assert info["chunks_size"] == 2 and info["data_files_size_in_mb"] == 1e-4 and info["total_tasks"] == 3
    assert info["robolearn"]["videos"] == {"observation.images.front": "copied", "observation.images.wrist": "encoded"}
    assert "task" not in info["features"] and info["features"]["task_index"]["dtype"] == "int64"
    eps = sorted(sum((pq.read_table(f).to_pylist() for f in sorted(out.glob("meta/episodes/*/*.parquet"))), []),
                 key=lambda r: r["episode_index"])
    # one episode per data file (the limit is below one episode), two files per chunk
    assert [(r["data/chunk_index"], r["data/file_index"]) for r in eps] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)]
    assert sorted(str(p.relative_to(out)) for p in out.glob("data/*/*.parquet")) == [
        "data/chunk-000/file-000.parquet", "data/chunk-000/file-001.parquet", "data/chunk-001/file-000.parquet",
        "data/chunk-001/file-001.parquet", "data/chunk-002/file-000.parquet"]
    assert len(list(out.glob("meta/episodes/*/*.parquet"))) == 5  # metadata rolls over by the same rule
    d3 = pq.read_table(out / "data/chunk-001/file-001.parquet")
    assert d3.column("index").to_pylist() == list(range(19, 26)) and d3.column("frame_index").to_pylist()[0] == 0
    tasks = pq.read_table(out / "meta/tasks.parquet").to_pydict()
    assert tasks["task"] == ["pick up the cube", "open the drawer", "stack ünïcode blocks"]
    assert d3.column("task_index").to_pylist() == [2] * 7 and eps[3]["tasks"] == ["stack ünïcode blocks"]
    # videos: several files; within a file an episode starts where the previous ended, a new file starts at 0
    for key in ("observation.images.front", "observation.images.wrist"):
        locs = [(r[f"videos/{key}/chunk_index"], r[f"videos/{key}/file_index"]) for r in eps]
        assert len(set(locs)) > 1, key
        for a, b in zip(eps, eps[1:], strict=False):
            same = locs[a["episode_index"]] == locs[b["episode_index"]]
            start = b[f"videos/{key}/from_timestamp"]
            assert start == (pytest.approx(a[f"videos/{key}/to_timestamp"]) if same else 0.0)
        for loc in set(locs):
            frames = sum(r["length"] for r, lc in zip(eps, locs, strict=True) if lc == loc)
            path = out / f"videos/{key}/chunk-{loc[0]:03d}/file-{loc[1]:03d}.mp4"
            with av.open(str(path)) as c:
                assert sum(1 for _ in c.decode(video=0)) == frames
    # remux: the stored episodes' compressed packets are in the export byte for byte
    first = [r for r in eps if (r["videos/observation.images.front/chunk_index"],
                                r["videos/observation.images.front/file_index"]) == (0, 0)]
    want = sum((_packets(src.video_path("observation.images.front", r["episode_index"])) for r in first), [])
    assert _packets(out / "videos/observation.images.front/chunk-000/file-000.mp4") == want
    # stats: global and per episode, LeRobot's keys
    stats = json.loads((out / "meta/stats.json").read_text())
    for k in ("observation.state", "observation.images.front", "action", "index", "timestamp"):
        assert set(stats[k]) == STAT_KEYS, k
    assert np.array(stats["observation.images.wrist"]["q50"]).shape == (3, 1, 1)
    assert stats["observation.state"]["count"] == [31] and np.array(stats["action"]["q90"]).shape == (2,)
    assert {f"stats/observation.state/{s}" for s in STAT_KEYS} <= set(eps[0])
    assert eps[1]["stats/observation.images.front/count"] == [9]

    back = import_lerobot(out, tmp_path / "back.zarr")
    assert back.features == src.features and validate(back.path) == []
    assert [back.episode_string("task", e) for e in range(5)] == [src.episode_string("task", e) for e in range(5)]
    for e in range(5):
        x, y = src.read_episode(e), back.read_episode(e)
        for k in x:
            if k.startswith("observation.images"):  # copied video: identical decode; encoded: lossy but close
                tol = 0 if k.endswith("front") else 4
                assert x[k].shape == y[k].shape and np.abs(x[k].astype(int) - y[k]).mean() <= tol, (k, e)
            else:
                np.testing.assert_array_equal(x[k], y[k], err_msg=f"{k} episode {e}")
    st = back.attributes["stats"]["features"]  # global stats, quantiles included, in store units
    assert st["observation.images.front"]["q99"] == pytest.approx(
        (np.array(stats["observation.images.front"]["q99"]).reshape(-1) * 255).tolist())
    assert "q10" in st["action"]


def test_stats_of_a_hand_made_dataset(tmp_path):
    from robolearn.data.lerobot import export_lerobot

    p = tmp_path / "hand.zarr"
    feats = {"state": Feature((2,)), "img": Feature((4, 4, 3), "uint8"), "gripper": Feature(())}
    with EpisodeWriter(p, feats, 5.0) as w:
        w.add_episode({"state": np.stack([np.arange(10.0), 10 * np.arange(10.0)], -1),
                       "img": np.zeros((10, 4, 4, 3), np.uint8), "gripper": np.ones(10)})
        w.add_episode({"state": np.stack([np.arange(10.0, 20.0), -np.ones(10)], -1),
                       "img": np.full((10, 4, 4, 3), (255, 51, 0), np.uint8), "gripper": np.zeros(10)})
    out = export_lerobot(p, tmp_path / "lr", task_text="sort")
    stats = json.loads((out / "meta/stats.json").read_text())
    x = np.arange(20.0)
    s0 = stats["state"]
    assert s0["mean"][0] == pytest.approx(9.5) and s0["std"][0] == pytest.approx(x.std())
    assert s0["min"] == [0.0, -1.0] and s0["max"] == [19.0, 90.0] and s0["count"] == [20]
    for q in (0.01, 0.1, 0.5, 0.9, 0.99):
        assert s0[f"q{round(q * 100):02d}"][0] == pytest.approx(np.quantile(x, q))
    assert stats["gripper"]["mean"] == [0.5] and stats["gripper"]["q50"] == [0.5]  # scalars are shape [1]
    img = stats["img"]  # per channel in [0, 1], (3, 1, 1); half the pixels black, half (255, 51, 0)
    assert np.array(img["mean"]).reshape(-1) == pytest.approx([0.5, 0.1, 0.0])
    assert np.array(img["max"]).reshape(-1) == pytest.approx([1.0, 0.2, 0.0])
    assert np.array(img["std"]).reshape(-1) == pytest.approx([0.5, 0.1, 0.0])
    assert img["count"] == [20] and stats["episode_index"]["mean"] == [0.5]
    ep = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert ep[1]["stats/state/mean"] == pytest.approx([14.5, -1.0]) and ep[1]["stats/img/max"] == [[[1.0]], [[0.2]],
                                                                                                [[0.0]]]
    assert ep[0]["stats/gripper/q50"] == [1.0] and ep[0]["tasks"] == ["sort"]
    from robolearn.data.lerobot import stats_sample  # camera stats sample frames as LeRobot does

    assert len(stats_sample(50)) == 50 and len(stats_sample(300)) == 100 and len(stats_sample(10_000)) == 1000
    assert stats_sample(300)[[0, -1]].tolist() == [0, 299]


def test_bad_input_gets_one_clear_error_naming_the_file(tmp_path, tasks_store):
    import shutil

    from robolearn.data.lerobot import export_lerobot

    good = export_lerobot(tasks_store, tmp_path / "good", data_files_size_in_mb=1e-4)

    def broken(name, change):
        d = tmp_path / name
        shutil.copytree(good, d)
        change(d)
        return d

    def info_edit(**kv):
        def change(d):
            info = json.loads((d / "meta/info.json").read_text())
            info.update(kv)
            (d / "meta/info.json").write_text(json.dumps(info))
        return change

    cases = [
        (broken("noinfo", lambda d: (d / "meta/info.json").unlink()), "meta/info.json is missing"),
        (broken("v21", info_edit(codebase_version="v2.1")), "LeRobot v2.1; only v3.x.*convert_dataset_v21_to_v30"),
        (broken("frames", info_edit(total_frames=30)), "meta/info.json says 30 frames.*add up to 31"),
        (broken("nodata", lambda d: (d / "data/chunk-000/file-002.parquet").unlink()),
         "data file data/chunk-000/file-002.parquet is missing"),
        (broken("novideo", lambda d: shutil.rmtree(d / "videos/observation.images.wrist")),
         "video file videos/observation.images.wrist/chunk-000/file-000.mp4 is missing"),
        (broken("notasks", lambda d: (d / "meta/tasks.parquet").unlink()), "meta/tasks.parquet is missing"),
        (broken("noeps", lambda d: shutil.rmtree(d / "meta/episodes")), "no files matching meta/episodes"),
    ]

    def short_file(d):  # a data file with a row less than its episode
        f = d / "data/chunk-000/file-001.parquet"
        t = pq.read_table(f)
        pq.write_table(t.slice(0, t.num_rows - 1), f)

    cases.append((broken("short", short_file), "data file data/chunk-000/file-001.parquet holds 8 rows.*length 9"))
    for i, (d, msg) in enumerate(cases):
        with pytest.raises(DatasetError, match=msg):
            import_lerobot(d, tmp_path / f"out{i}.zarr")
        assert not (tmp_path / f"out{i}.zarr").exists()
    assert not list(tmp_path.glob(".*building*"))


def test_failed_export_leaves_nothing_that_looks_complete(tmp_path, tasks_store):
    from robolearn.data.lerobot import export_lerobot

    # a damaged stored video fails the export midway; neither the destination nor a half-built directory remains
    tasks_store.video_path("observation.images.front", 3).write_bytes(b"not an mp4")
    with pytest.raises(DatasetError):
        export_lerobot(tasks_store, tmp_path / "lr")
    assert not (tmp_path / "lr").exists() and not list(tmp_path.glob(".lr.building*"))


def test_cli_export_without_remux_encodes(tmp_path, tasks_store, capsys):
    out = tmp_path / "lr"
    assert main(["dataset", "convert", tasks_store.name, str(out), "--to", "lerobot", "--no-remux",
                 "--chunks-size", "3", "--data-file-mb", "0.0001"]) == 0
    assert "videos: observation.images.front encoded" in capsys.readouterr().out
    info = json.loads((out / "meta/info.json").read_text())
    assert info["robolearn"]["videos"]["observation.images.front"] == "encoded" and info["chunks_size"] == 3
    assert (out / "data/chunk-001/file-000.parquet").is_file()


def test_import_a_dataset_written_by_lerobot(tmp_path):
    """tests/data/lerobot_v3_native was written by LeRobot 0.4.4 itself (make_dataset.py there): 3 episodes, 2 tasks,
    an h264 camera, a 2-D feature; every value is known."""
    from pathlib import Path

    s = import_lerobot(Path(__file__).parent / "lerobot_v3_native", tmp_path / "native.zarr")
    assert validate(s.path) == [] and s.num_episodes == 3 and s.fps == 10
    assert s.features["observation.state"].names == ("a", "b") and s.features["task"].dtype == "string"
    assert [s.episode_string("task", e) for e in range(3)] == ["wave", "point", "wave"]
    for e, n in enumerate((5, 8, 6)):
        d = s.read_episode(e)
        np.testing.assert_array_equal(d["observation.state"], np.stack([np.full(n, e), np.arange(n)], -1))
        np.testing.assert_array_equal(d["action"], np.arange(n) * 0.5)
        grid = np.arange(6, dtype=np.float32).reshape(2, 3) + 10 * np.arange(n)[:, None, None] + 100 * e
        np.testing.assert_array_equal(d["observation.grid"], grid)  # LeRobot's Array2D: lists of lists
        want = 20 * np.arange(n) + 40 * e  # flat frames; H.264 keeps them within a level or two
        assert np.abs(d["observation.images.cam"].reshape(n, -1).mean(1) - want).max() < 2
    st = s.attributes["stats"]["features"]  # LeRobot's global stats, quantiles included, images back in 0..255
    assert {"q01", "q10", "q50", "q90", "q99"} <= set(st["observation.state"])
    assert st["observation.state"]["max"] == [2.0, 7.0] and len(st["observation.images.cam"]["mean"]) == 3
    # LeRobot reduced the 2-D feature to its last axis; robolearn keeps one value per entry, computed on import
    assert s.attributes["stats"]["computed"].endswith("computed on import: observation.grid")
    assert np.asarray(st["observation.grid"]["max"]).tolist() == [[250, 251, 252], [253, 254, 255]]


def test_bench_lerobot_export_runs_at_tiny_size(capsys):
    assert main(["bench", "lerobot-export", "--json", "--episodes", "2", "--steps", "6", "--size", "16",
                 "--repeats", "1"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["frames"] == 12 and r["remux_s"] > 0 and r["encode_s"] > 0 and r["speedup"] > 0
    assert {"remux_frames_per_s", "encode_frames_per_s", "bytes_on_disk"} <= set(r)


def test_bench_windows_against_lerobot_without_lerobot_is_one_error(capsys, tmp_path):
    # this interpreter has no lerobot: the export and the timing script run for real, and the failure is named
    argv = ["bench", "dataset-windows", "--json", "--episodes", "3", "--steps", "20", "--size", "16", "--batches",
            "1", "--batch-size", "4", "--workers", "0", "--mp4-baseline", "0", "--dir", str(tmp_path),
            "--lerobot-python", sys.executable]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "LeRobot's loader failed" in err and "No module named 'lerobot'" in err, err
    info = json.loads((tmp_path / "lerobot" / "meta" / "info.json").read_text())
    assert info["total_episodes"] == 3 and info["features"]["observation.images.cam0"]["dtype"] == "video"


def test_two_dimensional_features_are_exported_as_lists_of_lists_and_come_back(tmp_path):
    import pyarrow.parquet as pq

    feats = {"observation.grid": Feature((2, 3)), "action": Feature((2,))}
    grid = np.arange(30, dtype=np.float32).reshape(5, 2, 3)
    with EpisodeWriter(tmp_path / "g.zarr", feats, fps=10) as w:
        w.add_episode({"observation.grid": grid, "action": np.zeros((5, 2), np.float32)})
    main(["dataset", "convert", str(tmp_path / "g.zarr"), str(tmp_path / "lr"), "--to", "lerobot"])
    t = pq.read_table(tmp_path / "lr/data/chunk-000/file-000.parquet")
    typ = t.schema.field("observation.grid").type
    assert (typ.list_size, typ.value_type.list_size, str(typ.value_type.value_type)) == (2, 3, "float")
    assert t.column("observation.grid").to_pylist()[1] == [[6, 7, 8], [9, 10, 11]]  # what LeRobot's Array2D reads
    back = import_lerobot(tmp_path / "lr", tmp_path / "back.zarr")
    np.testing.assert_array_equal(back.read_episode(0)["observation.grid"], grid)


def test_a_depth_camera_exports_as_a_uint8_array_with_per_channel_stats(tmp_path):
    feats = {"observation.images.depth": Feature((6, 8, 1), "uint8"), "action": Feature((2,))}
    depth = (np.arange(5 * 48).reshape(5, 6, 8, 1) % 200).astype(np.uint8)
    with EpisodeWriter(tmp_path / "d.zarr", feats, fps=10) as w:
        w.add_episode({"observation.images.depth": depth, "action": np.zeros((5, 2), np.float32)})
    main(["dataset", "convert", str(tmp_path / "d.zarr"), str(tmp_path / "lr"), "--to", "lerobot"])
    info = json.loads((tmp_path / "lr/meta/info.json").read_text())["features"]["observation.images.depth"]
    assert info["dtype"] == "uint8" and info["shape"] == [6, 8, 1] and not (tmp_path / "lr/videos").exists()
    stats = json.loads((tmp_path / "lr/meta/stats.json").read_text())["observation.images.depth"]
    assert np.asarray(stats["mean"]).shape == (1, 1, 1) and stats["max"] == [[[199.0]]]  # per channel, raw values
    back = import_lerobot(tmp_path / "lr", tmp_path / "back.zarr")
    np.testing.assert_array_equal(back.read_episode(0)["observation.images.depth"], depth)  # lossless
