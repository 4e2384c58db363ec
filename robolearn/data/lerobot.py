"""LeRobot dataset format v3.0 import and export (pyarrow + PyAV; lerobot itself is not needed).

Layout written and read (LeRobot `CODEBASE_VERSION = "v3.0"`)::

    meta/info.json                                   codebase_version, fps, features, path templates, totals
    meta/tasks.parquet                               task text (pandas index "task") -> task_index
    meta/stats.json                                  mean/std/min/max/count per feature (images per channel in [0, 1])
    meta/episodes/chunk-000/file-000.parquet         one row per episode: length, tasks, data and video locations
    data/chunk-000/file-000.parquet                  one row per frame, many episodes per file
    videos/<key>/chunk-000/file-000.mp4              one video per camera, episodes back to back

Frame rows carry the features plus `timestamp`, `frame_index`, `episode_index`, `index` and `task_index`. Vectors
are fixed-size lists, scalars plain values (LeRobot shape [1]); arrays of more dimensions are flattened and
reshaped from the shape in info.json. Image features (H, W, C) uint8 become `video` features (H.264, yuv420p:
lossy) on export; on import both `video` and `image` (PNG/JPEG bytes in the parquet) features are decoded.
Export also writes the exact robolearn feature specs under info.json "robolearn", so a round trip keeps units,
names and dtypes; LeRobot ignores the extra key.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robolearn.core.errors import require
from robolearn.data.store import DatasetError, EpisodeStore, EpisodeWriter, Feature, Provenance, StorageOptions

CODEBASE_VERSION = "v3.0"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
BOOKKEEPING = ("timestamp", "frame_index", "episode_index", "index", "task_index")
CHUNKS_SIZE = 1000


def is_lerobot(path: str | os.PathLike[str]) -> bool:
    """True for a directory with meta/info.json."""
    return (Path(path) / "meta" / "info.json").is_file()


def _pa() -> tuple[Any, Any]:
    pa = require("pyarrow", "interop")
    pq = require("pyarrow.parquet", "interop")
    return pa, pq


# -------------------------------------------------------------------------------------------------------- export
def _arrow_type(pa: Any, f: Feature) -> Any:
    base = pa.from_numpy_dtype(np.dtype(f.dtype))
    n = int(np.prod(f.shape, dtype=np.int64))
    return base if f.shape in ((), (1,)) else pa.list_(base, n)


def _column(pa: Any, x: np.ndarray, f: Feature) -> Any:
    if f.shape in ((), (1,)):
        return pa.array(x.reshape(-1))
    n = int(np.prod(f.shape, dtype=np.int64))
    flat = pa.array(np.ascontiguousarray(x).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, n)


def _feature_info(key: str, f: Feature, video: bool, fps: float, codec: str) -> dict[str, Any]:
    if video:
        h, w, c = f.shape
        return {"dtype": "video", "shape": [h, w, c], "names": ["height", "width", "channels"],
                "info": {"video.height": h, "video.width": w, "video.codec": codec, "video.pix_fmt": "yuv420p",
                         "video.is_depth_map": False, "video.fps": int(round(fps)), "video.channels": c,
                         "has_audio": False}}
    shape = list(f.shape) if f.shape else [1]
    names = list(f.names) if f.names else None
    return {"dtype": f.dtype, "shape": shape, "names": names}


class _VideoOut:
    """One MP4 per image key; episodes appended back to back (pts = global frame index)."""

    def __init__(self, path: Path, fps: float, shape: tuple[int, ...], crf: int) -> None:
        av = require("av", "interop")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.av = av
        self.c = av.open(str(path), "w")
        self.s = self.c.add_stream("libx264", rate=int(round(fps)), options={"crf": str(crf), "g": "2"})
        self.s.height, self.s.width = shape[0] - shape[0] % 2, shape[1] - shape[1] % 2
        self.s.pix_fmt = "yuv420p"
        self.frames = 0

    def add(self, frames: np.ndarray) -> None:
        for img in frames:
            rgb = img[..., :3] if img.shape[-1] >= 3 else np.repeat(img, 3, axis=-1)
            vf = self.av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[: self.s.height, : self.s.width]),
                                                 format="rgb24")
            vf.pts = self.frames
            for p in self.s.encode(vf):
                self.c.mux(p)
            self.frames += 1

    def close(self) -> None:
        for p in self.s.encode():
            self.c.mux(p)
        self.c.close()


def export_lerobot(source: str | os.PathLike[str] | EpisodeStore, dest: str | os.PathLike[str], *,
                   task_text: str | None = None, robot_type: str | None = None, crf: int = 18,
                   data_file_mb: float = 100.0) -> Path:
    """Write a LeRobot v3.0 dataset at `dest` (a new directory, built beside it and renamed when complete)."""
    pa, pq = _pa()
    src = source if isinstance(source, EpisodeStore) else EpisodeStore(source)
    dest_p = Path(dest)
    if dest_p.exists():
        raise DatasetError(str(dest), "already exists; choose a new path (sources are never modified)")
    for k, f in src.features.items():
        if k in BOOKKEEPING:
            raise DatasetError(src.name, "is a LeRobot bookkeeping column name; rename the feature", key=k)
        if f.image and (f.shape[0] < 2 or f.shape[1] < 2):
            raise DatasetError(src.name, f"image {f.shape} too small for a video", key=k)
    fps = src.fps
    videos = [k for k, f in src.features.items() if f.image]
    plain = [k for k in src.features if k not in videos]
    tmp = dest_p.parent / f".{dest_p.name}.building-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        # tasks: one per session (its note, else its task name), or the given text for all
        def episode_task(e: int) -> str:
            if task_text is not None:
                return task_text
            p = src.provenance(e)
            return str(p.get("note") or p.get("task") or "robolearn episode")

        ep_tasks = [episode_task(e) for e in range(src.num_episodes)]
        tasks = list(dict.fromkeys(ep_tasks))
        task_index = {t: i for i, t in enumerate(tasks)}
        schema = pa.schema([pa.field(k, _arrow_type(pa, src.features[k])) for k in plain]
                           + [pa.field("timestamp", pa.float32()), pa.field("frame_index", pa.int64()),
                              pa.field("episode_index", pa.int64()), pa.field("index", pa.int64()),
                              pa.field("task_index", pa.int64())])
        outs = {k: _VideoOut(tmp / VIDEO_PATH.format(video_key=k, chunk_index=0, file_index=0), fps,
                             src.features[k].shape, crf) for k in videos}
        frame_bytes = sum(src.features[k].frame_bytes for k in plain) + 36
        per_file = max(1, int(data_file_mb * 1e6 // frame_bytes))
        writer, file_index, in_file, rows = None, -1, per_file, []
        for e in range(src.num_episodes):
            start, stop = src.episode_bounds(e)
            n = stop - start
            if in_file + n > per_file and in_file > 0 or writer is None:
                if writer is not None:
                    writer.close()
                file_index += 1
                in_file = 0
                path = tmp / DATA_PATH.format(chunk_index=file_index // CHUNKS_SIZE,
                                              file_index=file_index % CHUNKS_SIZE)
                path.parent.mkdir(parents=True, exist_ok=True)
                writer = pq.ParquetWriter(str(path), schema)
            d = src.read_episode(e)
            cols = [_column(pa, d[k], src.features[k]) for k in plain]
            cols += [pa.array((np.arange(n) / fps).astype(np.float32)), pa.array(np.arange(n, dtype=np.int64)),
                     pa.array(np.full(n, e, np.int64)), pa.array(np.arange(start, stop, dtype=np.int64)),
                     pa.array(np.full(n, task_index[ep_tasks[e]], np.int64))]
            writer.write_table(pa.Table.from_arrays(cols, schema=schema))
            row: dict[str, Any] = {"episode_index": e, "tasks": [ep_tasks[e]], "length": n,
                                   "data/chunk_index": file_index // CHUNKS_SIZE,
                                   "data/file_index": file_index % CHUNKS_SIZE,
                                   "dataset_from_index": start, "dataset_to_index": stop}
            for k in videos:
                t0 = outs[k].frames / fps
                outs[k].add(d[k])
                row.update({f"videos/{k}/chunk_index": 0, f"videos/{k}/file_index": 0,
                            f"videos/{k}/from_timestamp": t0, f"videos/{k}/to_timestamp": t0 + n / fps})
            row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
            rows.append(row)
            in_file += n
        if writer is not None:
            writer.close()
        for o in outs.values():
            o.close()
        ep_path = tmp / EPISODES_PATH.format(chunk_index=0, file_index=0)
        ep_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), str(ep_path))
        _write_tasks(pa, pq, tasks, tmp / "meta" / "tasks.parquet")
        (tmp / "meta" / "stats.json").write_text(json.dumps(_stats(src)))
        codec = "h264"
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": robot_type or (src.sessions[0].get("robot") if src.sessions else None) or "unknown",
            "total_episodes": src.num_episodes, "total_frames": src.num_frames, "total_tasks": len(tasks),
            "chunks_size": CHUNKS_SIZE, "data_files_size_in_mb": data_file_mb, "video_files_size_in_mb": 500,
            "fps": int(round(fps)) if float(fps).is_integer() else fps,
            "splits": {"train": f"0:{src.num_episodes}"},
            "data_path": DATA_PATH, "video_path": VIDEO_PATH if videos else None,
            "features": {**{k: _feature_info(k, f, k in videos, fps, codec) for k, f in src.features.items()},
                         "timestamp": {"dtype": "float32", "shape": [1], "names": None},
                         "frame_index": {"dtype": "int64", "shape": [1], "names": None},
                         "episode_index": {"dtype": "int64", "shape": [1], "names": None},
                         "index": {"dtype": "int64", "shape": [1], "names": None},
                         "task_index": {"dtype": "int64", "shape": [1], "names": None}},
            "robolearn": {"fps": fps, "features": {k: f.to_dict() for k, f in src.features.items()},
                          "sessions": src.sessions, "source": src.name},
        }
        (tmp / "meta" / "info.json").write_text(json.dumps(info, indent=2))
        os.rename(tmp, dest_p)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest_p


def _write_tasks(pa: Any, pq: Any, tasks: Sequence[str], path: Path) -> None:
    """tasks.parquet as pandas writes it: the task text is the index (named "task"), task_index a column."""
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(list(tasks))})
    pandas_meta = {"index_columns": ["task"], "column_indexes": [], "columns": [
        {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
         "metadata": None},
        {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object", "metadata": None}],
        "creator": {"library": "pyarrow", "version": pa.__version__}, "pandas_version": "2.2.0"}
    table = table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})
    pq.write_table(table, str(path))


def _stats(src: EpisodeStore) -> dict[str, Any]:
    from robolearn.data.stats import compute_stats

    out: dict[str, Any] = {}
    if src.num_frames == 0:
        return out
    for k, v in compute_stats(src, max_samples=100_000).items():
        f = src.features[k]
        entry = {}
        for name in ("mean", "std", "min", "max"):
            x = np.asarray(v[name], np.float64)
            entry[name] = (x / 255.0).reshape(-1, 1, 1).tolist() if f.image else np.atleast_1d(x).tolist()
        entry["count"] = [src.num_frames]
        out[k] = entry
    return out


# -------------------------------------------------------------------------------------------------------- import
def _read_info(root: Path) -> dict[str, Any]:
    p = root / "meta" / "info.json"
    if not p.is_file():
        raise DatasetError(str(root), "is not a LeRobot dataset (no meta/info.json)")
    try:
        info = json.loads(p.read_text())
    except ValueError as e:
        raise DatasetError(str(root), f"meta/info.json is not valid JSON: {e}") from None
    version = str(info.get("codebase_version", ""))
    if not version.startswith("v3"):
        raise DatasetError(str(root), f"is LeRobot {version or 'of unknown version'}; only v3.x is read "
                                      "(convert older datasets with lerobot's v2.1 -> v3.0 script first)")
    return info


def _feature_from_info(key: str, spec: dict[str, Any]) -> Feature:
    dtype = spec["dtype"]
    shape = tuple(int(s) for s in spec["shape"])
    if dtype in ("video", "image"):
        if len(shape) == 3 and shape[0] in (1, 3, 4) and shape[-1] not in (1, 3, 4):  # (C, H, W) in old datasets
            shape = (shape[1], shape[2], shape[0])
        return Feature(shape, "uint8", axes=("height", "width", "channel"))
    names = spec.get("names")
    if isinstance(names, dict):  # {"motors": [...]} style
        names = next(iter(names.values()), None)
    if names is not None and (len(names) != (shape[-1] if shape else 1) or not all(isinstance(n, str) for n in names)):
        names = None
    if shape == (1,):
        shape = ()
        names = None
    if dtype == "string":
        raise DatasetError(key, "string features are not supported")
    return Feature(shape, dtype, names=tuple(names) if names else None)


def _read_table(pq: Any, root: Path, pattern: str) -> Any:
    pa = require("pyarrow", "interop")
    files = sorted(root.glob(pattern))
    if not files:
        raise DatasetError(str(root), f"has no files matching {pattern}")
    return pa.concat_tables([pq.read_table(str(f)) for f in files])


def _decode_video(path: Path, start: float, stop: float, fps: float, n: int, dataset: str, key: str,
                  episode: int) -> np.ndarray:
    """Frames with timestamps in [start, stop) (to half a frame) of one video file, as (n, H, W, 3) uint8."""
    av = require("av", "interop")
    if not path.is_file():
        raise DatasetError(dataset, f"video file {path} is missing", key=key, episodes=episode)
    out = []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        if start > 0:
            c.seek(int(max(0.0, start - 1.0) / s.time_base), stream=s, backward=True)
        half = 0.5 / fps
        for frame in c.decode(s):
            t = float(frame.pts * s.time_base) if frame.pts is not None else float(frame.time)
            if t < start - half:
                continue
            if t >= stop - half or len(out) == n:
                break
            out.append(frame.to_ndarray(format="rgb24"))
    if len(out) != n:
        raise DatasetError(dataset, f"video {path.name} holds {len(out)} frames in [{start:.3f}, {stop:.3f}) s, "
                                    f"the episode has {n}", key=key, episodes=episode)
    return np.stack(out)


def _decode_image(cell: Any) -> np.ndarray:
    from PIL import Image

    data = cell.get("bytes") if isinstance(cell, dict) else cell
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def import_lerobot(source: str | os.PathLike[str], dest: str | os.PathLike[str],
                   storage: StorageOptions | None = None) -> EpisodeStore:
    """Read a LeRobot v3 dataset into a new episode store (one session per run of episodes with the same task)."""
    pa, pq = _pa()
    root = Path(source)
    name = str(root)
    info = _read_info(root)
    fps = float(info["fps"])
    specs = {k: v for k, v in info["features"].items() if k not in BOOKKEEPING}
    exact = (info.get("robolearn") or {}).get("features") or {}
    features = {}
    for k, v in specs.items():
        if v["dtype"] == "string":
            continue
        features[k] = Feature.from_dict(exact[k]) if k in exact else _feature_from_info(k, v)
    if Path(dest).exists():
        raise DatasetError(str(dest), "already exists; choose a new path (sources are never modified)")
    episodes = _read_table(pq, root, "meta/episodes/*/*.parquet").to_pylist()
    episodes.sort(key=lambda r: r["episode_index"])
    tasks_path = root / "meta" / "tasks.parquet"
    task_names: dict[int, str] = {}
    if tasks_path.is_file():
        t = pq.read_table(str(tasks_path)).to_pydict()
        text = t.get("task") or t.get("__index_level_0__") or []
        task_names = dict(zip(t.get("task_index", []), text, strict=False))
    data_cache: dict[tuple[int, int], Any] = {}

    def data_table(chunk: int, file: int) -> Any:
        if (chunk, file) not in data_cache:
            data_cache.clear()  # one file at a time in memory
            p = root / info.get("data_path", DATA_PATH).format(chunk_index=chunk, file_index=file)
            if not p.is_file():
                raise DatasetError(name, f"data file {p.relative_to(root)} is missing")
            tbl = pq.read_table(str(p))
            data_cache[(chunk, file)] = (tbl, np.asarray(tbl.column("index")) if "index" in tbl.column_names
                                         else None)
        return data_cache[(chunk, file)]

    tmp = Path(dest).parent / f".{Path(dest).name}.building-{uuid.uuid4().hex[:8]}"
    try:
        writer: EpisodeWriter | None = None
        last_task: str | None = None
        for row in episodes:
            e = int(row["episode_index"])
            tasks = row.get("tasks") or []
            task = ", ".join(tasks) if tasks else ""
            if writer is None or task != last_task:
                if writer is not None:
                    writer.close()
                sessions = (info.get("robolearn") or {}).get("sessions") or []
                base = {k: v for k, v in (sessions[0] if len(sessions) == 1 else {}).items() if k != "first_episode"}
                prov = {**base, **Provenance(source="lerobot", robot=str(info.get("robot_type") or ""),
                                             note=task, extra={"lerobot_dataset": name}).to_dict()} \
                    if not base else {**base, "note": base.get("note") or task}
                writer = EpisodeWriter(tmp, features, fps, provenance=prov, storage=storage, durable=False)
                writer.name = str(dest)
                last_task = task
            tbl, index = data_table(int(row["data/chunk_index"]), int(row["data/file_index"]))
            lo, hi = int(row["dataset_from_index"]), int(row["dataset_to_index"])
            if index is not None:
                sel = np.nonzero((index >= lo) & (index < hi))[0]
                part = tbl.take(pa.array(sel))
            else:
                part = tbl.slice(lo, hi - lo)
            n = part.num_rows
            if n != int(row.get("length", n)) or n == 0:
                raise DatasetCorrupt(name, f"data rows {n} differ from the episode length {row.get('length')}", e)
            ep: dict[str, np.ndarray] = {}
            for k, f in features.items():
                kind = specs[k]["dtype"]
                if kind == "video":
                    vpath = root / info["video_path"].format(video_key=k, chunk_index=row[f"videos/{k}/chunk_index"],
                                                             file_index=row[f"videos/{k}/file_index"])
                    ep[k] = _decode_video(vpath, float(row[f"videos/{k}/from_timestamp"]),
                                          float(row[f"videos/{k}/to_timestamp"]), fps, n, name, k, e)
                elif kind == "image":
                    ep[k] = np.stack([_decode_image(c) for c in part.column(k).to_pylist()])
                else:
                    if k not in part.column_names:
                        raise DatasetCorrupt(name, f"column '{k}' is missing from the data file", e)
                    col = part.column(k).combine_chunks()
                    vals = col.flatten() if pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type) \
                        else col
                    ep[k] = np.asarray(vals.to_numpy(zero_copy_only=False)).reshape(n, *f.shape).astype(f.dtype)
            writer.add_episode(ep)
        if writer is not None:
            writer.close()
        if not tmp.exists():
            raise DatasetError(name, "has no episodes")
        os.rename(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    _ = task_names
    return EpisodeStore(dest)


def DatasetCorrupt(name: str, what: str, episode: int) -> DatasetError:  # noqa: N802 - reads like the class
    """A DatasetCorruptError for a LeRobot source episode."""
    from robolearn.data.store import DatasetCorruptError

    return DatasetCorruptError(name, what, episodes=episode)
