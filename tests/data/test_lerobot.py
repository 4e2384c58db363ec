"""LeRobot v3.0 export and import: round trip through the exporter, and a small v3 dataset built by hand."""

import io
import json

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
