"""LeRobot dataset format v3.0 import and export (pyarrow + PyAV; lerobot itself is not needed).

Layout written and read (LeRobot `CODEBASE_VERSION = "v3.0"`)::

    meta/info.json                                   codebase_version, fps, features, path templates, totals,
                                                     chunks_size, data_files_size_in_mb, video_files_size_in_mb
    meta/tasks.parquet                               task text (pandas index "task") -> task_index
    meta/stats.json                                  min/max/mean/std/count and q01/q10/q50/q90/q99 per feature
                                                     (cameras per channel in [0, 1], shaped (3, 1, 1))
    meta/episodes/chunk-XXX/file-YYY.parquet         one row per episode: length, tasks, data and video locations,
                                                     per-episode stats as stats/<feature>/<stat>
    data/chunk-XXX/file-YYY.parquet                  one row per frame, many episodes per file
    videos/<key>/chunk-XXX/file-YYY.mp4              one video per camera, episodes back to back

Data, episode-metadata and video files roll over to the next file when the next episode would take them past
their size limit, and to the next chunk directory after `chunks_size` files (LeRobot's rule; limits are export
parameters). Frame rows carry the features plus `timestamp`, `frame_index`, `episode_index`, `index` and
`task_index`. Vectors are fixed-size lists, scalars plain values (LeRobot shape [1]); arrays of more dimensions are
nested fixed-size lists (what LeRobot's Array2D..Array5D features read), and read back from any nesting by the
shape in info.json. Camera features (H, W, 3) uint8 become `video` features: a
camera the store holds as per-episode H.264 MP4 is concatenated by copying its packets with shifted timestamps
(no decoding or re-encoding, no generation loss); others are encoded (libx264, lossy). The episode's task is a
string feature of the store (`Feature((), "string")`), written as task_index + tasks.parquet and read back.
Images that are not RGB (depth, grey, RGBA uint8) are exported as uint8 arrays (nested lists), stats per channel.
On import both `video` and `image` (PNG/JPEG bytes in the parquet) features are decoded. Export also writes the
exact robolearn feature specs under info.json "robolearn", so a round trip keeps units, names and dtypes;
LeRobot ignores the extra key. Both directions build the result beside the destination and rename it when
complete, so a failed run leaves nothing that looks like a dataset.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from robolearn.core.errors import require
from robolearn.data.stats import LEROBOT_QUANTILES, compute_stats, uint8_hist
from robolearn.data.store import (
    DatasetCorruptError,
    DatasetError,
    EpisodeStore,
    EpisodeWriter,
    Feature,
    Provenance,
    StorageOptions,
)
from robolearn.data.video import VideoCodec, VideoWriter

CODEBASE_VERSION = "v3.0"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
BOOKKEEPING = ("timestamp", "frame_index", "episode_index", "index", "task_index")
DEFAULT_CHUNKS_SIZE = 1000  # files per chunk directory
DEFAULT_DATA_FILE_MB = 100.0  # LeRobot's defaults for data and video file sizes
DEFAULT_VIDEO_FILE_MB = 200.0


def is_lerobot(path: str | os.PathLike[str]) -> bool:
    """True for a directory with meta/info.json."""
    return (Path(path) / "meta" / "info.json").is_file()


def _pa() -> tuple[Any, Any]:
    pa = require("pyarrow", "interop")
    pq = require("pyarrow.parquet", "interop")
    return pa, pq


# -------------------------------------------------------------------------------------------------------- export
def _arrow_type(pa: Any, f: Feature) -> Any:
    if f.is_string:
        return pa.string()
    t = pa.from_numpy_dtype(np.dtype(f.dtype))
    if f.shape in ((), (1,)):
        return t
    for n in reversed(f.shape):  # (2, 3) -> list<list<float, 3>, 2>: what LeRobot's Array2D reads
        t = pa.list_(t, n)
    return t


def _column(pa: Any, x: np.ndarray, f: Feature) -> Any:
    if f.is_string:
        return pa.array([str(v) for v in x], pa.string())
    if f.shape in ((), (1,)):
        return pa.array(x.reshape(-1))
    col = pa.array(np.ascontiguousarray(x).reshape(-1))
    for n in reversed(f.shape):  # nested fixed-size lists, innermost axis first
        col = pa.FixedSizeListArray.from_arrays(col, n)
    return col


def _feature_info(f: Feature) -> dict[str, Any]:
    if f.is_string:
        return {"dtype": "string", "shape": [1], "names": None}
    shape = list(f.shape) if f.shape else [1]
    names = list(f.names) if f.names and len(f.shape) == 1 else None
    return {"dtype": f.dtype, "shape": shape, "names": names}


def _video_info(f: Feature, fps: float, pix_fmt: str) -> dict[str, Any]:
    h, w, c = f.shape
    return {"dtype": "video", "shape": [h, w, c], "names": ["height", "width", "channels"],
            "info": {"video.height": h, "video.width": w, "video.codec": "h264", "video.pix_fmt": pix_fmt,
                     "video.is_depth_map": False, "video.fps": _fps_json(fps), "video.channels": c,
                     "has_audio": False}}


def _fps_json(fps: float) -> int | float:
    return int(round(fps)) if float(fps).is_integer() else float(fps)


class _Rollover:
    """The chunk and file index of one stream of files (data, episode metadata, one camera).

    LeRobot's rule: a file takes episodes until the next would take it past `limit` bytes (a first episode always
    fits), a chunk directory takes `chunks_size` files.
    """

    def __init__(self, limit_bytes: float, chunks_size: int) -> None:
        self.limit, self.chunks_size = limit_bytes, chunks_size
        self.chunk, self.file, self.bytes = 0, -1, 0.0

    def place(self, nbytes: float) -> bool:
        """Account for an episode of `nbytes`; True when it starts a new file (chunk/file then name that file)."""
        if self.file >= 0 and (self.bytes == 0 or self.bytes + nbytes <= self.limit):
            self.bytes += nbytes
            return False
        if self.file < 0:
            self.file = 0
        elif self.file == self.chunks_size - 1:
            self.chunk, self.file = self.chunk + 1, 0
        else:
            self.file += 1
        self.bytes = nbytes
        return True


class _Concat:
    """One camera MP4 built from per-episode H.264 MP4s by copying their packets (no decoding, no re-encoding).

    Each episode's timestamps are shifted to follow the previous one's.
    """

    def __init__(self, path: Path, template: Path, fps: float) -> None:
        self.av = require("av", "interop")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = fps
        self.out = self.av.open(str(path), "w", format="mp4")
        with self.av.open(str(template)) as src:
            self.stream = self.out.add_stream_from_template(src.streams.video[0])
        self.frames = 0

    def append(self, path: Path) -> int:
        """Copy all packets of one episode's MP4; returns its frame count."""
        n = 0
        with self.av.open(str(path)) as src:
            s = src.streams.video[0]
            shift = round(self.frames / self.fps / s.time_base)
            for packet in src.demux(s):
                if packet.dts is None:  # the demuxer's empty flush packet
                    continue
                packet.pts += shift
                packet.dts += shift
                packet.stream = self.stream
                self.out.mux(packet)
                n += 1
        self.frames += n
        return n

    def close(self) -> None:
        """Write the MP4 index and close."""
        self.out.close()


def _stream_signature(av: Any, path: Path) -> tuple[Any, ...] | None:
    """What must agree between episode MP4s to copy their packets into one file: codec, size, pixels, extradata."""
    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            cc = s.codec_context
            return (cc.name, cc.width, cc.height, cc.pix_fmt, bytes(cc.extradata or b""))
    except Exception:  # noqa: BLE001 - an unreadable file is not remuxed; encoding reports it properly
        return None


def _remuxable(src: EpisodeStore, key: str) -> str | None:
    """The pix_fmt when every episode of a video feature is an H.264 MP4 with the same stream parameters, else None."""
    if not src.is_video(key) or src.num_episodes == 0:
        return None
    av = require("av", "interop")
    first = _stream_signature(av, src.video_path(key, 0))
    if first is None or first[0] != "h264":
        return None
    for e in range(1, src.num_episodes):
        if _stream_signature(av, src.video_path(key, e)) != first:
            return None
    return str(first[3])


def _array_stats(x: np.ndarray, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """LeRobot's per-feature stats of (T, *shape) numbers over time: min/max/mean/std/count and q01..q99."""
    from robolearn.data.stats import LEROBOT_QUANTILES, quantile_name

    v = np.asarray(x, np.float64).reshape(len(x), *(shape or (1,)))
    out = {"min": v.min(0), "max": v.max(0), "mean": v.mean(0), "std": v.std(0), "count": np.array([len(v)])}
    qs = np.quantile(v, list(LEROBOT_QUANTILES), axis=0)
    out.update({quantile_name(q): qv for q, qv in zip(LEROBOT_QUANTILES, qs, strict=True)})
    return out


def _per_channel(st: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-channel stats (C,) of an image exported as an array, shaped (1, 1, C) to broadcast over (H, W, C)."""
    return {n: v if n == "count" else v.reshape(1, 1, -1) for n, v in st.items()}


def _image_stats(hist: np.ndarray, frames: int) -> dict[str, np.ndarray]:
    """LeRobot's per-channel image stats from value histograms (C, 256): values in [0, 1], shaped (C, 1, 1).

    count is in frames, as LeRobot counts images.
    """
    from robolearn.data.stats import LEROBOT_QUANTILES, hist_stats

    st = {k: (v / 255.0).reshape(-1, 1, 1) for k, v in hist_stats(hist, LEROBOT_QUANTILES).items()}
    return {**st, "count": np.array([frames])}


def stats_sample(n: int) -> np.ndarray:
    """Frames of an n-frame episode that camera stats are computed on, sampled as LeRobot does.

    All frames up to 100, then n ** 0.75 of them (100 at least, 10,000 at most), evenly spaced.
    """
    k = n if n < 100 else max(100, min(int(n**0.75), 10_000))
    return np.unique(np.round(np.linspace(0, n - 1, k)).astype(np.int64))


def _sampled_frames(path: Path, picks: np.ndarray, dataset: str, key: str, episode: int) -> np.ndarray:
    """Frames `picks` (sorted) of one episode MP4 as RGB; every frame is decoded, only these are converted."""
    av = require("av", "interop")
    want = set(picks.tolist())
    out = []
    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            rgb = av.video.reformatter.VideoReformatter()
            for i, frame in enumerate(c.decode(s)):
                if i in want:
                    out.append(rgb.reformat(frame, format="rgb24").to_ndarray())
    except av.FFmpegError as e:
        raise DatasetCorruptError(dataset, f"video file {path.name} cannot be decoded ({e})", key=key,
                                  episodes=episode) from None
    if len(out) != len(picks):
        raise DatasetCorruptError(dataset, f"video file {path.name} has fewer frames than the episode", key=key,
                                  episodes=episode)
    return np.stack(out)


def _task_key(src: EpisodeStore, task_key: str | None) -> str | None:
    strings = [k for k, f in src.features.items() if f.is_string]
    if task_key is not None:
        if task_key not in strings:
            raise DatasetError(src.name, "is not a string feature; --task-key names the task text", key=task_key)
        return task_key
    if "task" in strings:
        return "task"
    return strings[0] if len(strings) == 1 else None


def export_lerobot(source: str | os.PathLike[str] | EpisodeStore, dest: str | os.PathLike[str], *,
                   task_text: str | None = None, task_key: str | None = None, robot_type: str | None = None,
                   crf: int = 18, gop: int = 2, remux: bool = True, chunks_size: int = DEFAULT_CHUNKS_SIZE,
                   data_files_size_in_mb: float = DEFAULT_DATA_FILE_MB,
                   video_files_size_in_mb: float = DEFAULT_VIDEO_FILE_MB) -> Path:
    """Write a LeRobot v3.0 dataset at `dest` (a new directory, built beside it and renamed when complete).

    Episode task: `task_text` for all, else the string feature `task_key` (default: "task", or the only string
    feature), else the session's note or task name. Cameras stored as per-episode H.264 MP4 are concatenated by
    copying packets (`remux`); others are encoded (libx264, `crf`, keyframe every `gop` frames, yuv420p).
    Statistics are exact for every non-camera feature; camera statistics use the frames LeRobot samples
    (`stats_sample`: all of an episode up to 100 frames), their pixels exact through histograms.
    """
    pa, pq = _pa()
    src = source if isinstance(source, EpisodeStore) else EpisodeStore(source)
    dest_p = Path(dest)
    if dest_p.exists():
        raise DatasetError(str(dest), "already exists; choose a new path (sources are never modified)")
    if chunks_size < 1 or data_files_size_in_mb <= 0 or video_files_size_in_mb <= 0:
        raise DatasetError(str(dest), "chunks_size and the file size limits must be positive")
    if src.num_episodes == 0:
        raise DatasetError(src.name, "has no episodes; nothing to export")
    tkey = None if task_text is not None else _task_key(src, task_key)
    for k in src.features:
        if k in BOOKKEEPING:
            raise DatasetError(src.name, "is a LeRobot bookkeeping column name; rename the feature", key=k)
    fps = src.fps
    cams = [k for k, f in src.features.items() if f.image and f.shape[-1] == 3]
    # other images (depth, grey, RGBA) are arrays to LeRobot: nested uint8 lists (its Array3D), stats per channel
    # shaped (1, 1, C) so they broadcast over the image instead of one value per pixel
    grids = {k: f.shape[-1] for k, f in src.features.items() if f.image and k not in cams}
    plain = [k for k in src.features if k not in cams and k != tkey]
    numeric = [k for k in plain if not src.features[k].is_string]
    copy_fmt = {k: _remuxable(src, k) if remux else None for k in cams}
    pix_fmt = {k: copy_fmt[k] or ("yuv420p" if src.features[k].shape[0] % 2 == 0 and src.features[k].shape[1] % 2 == 0
                                  else "yuv444p") for k in cams}
    tmp = dest_p.parent / f".{dest_p.name}.building-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        def episode_task(e: int) -> str:
            if task_text is not None:
                return task_text
            if tkey is not None:
                return src.episode_string(tkey, e)
            p = src.provenance(e)
            return str(p.get("note") or p.get("task") or "robolearn episode")

        ep_tasks = [episode_task(e) for e in range(src.num_episodes)]
        tasks = list(dict.fromkeys(ep_tasks))
        task_index = {t: i for i, t in enumerate(tasks)}
        schema = pa.schema([pa.field(k, _arrow_type(pa, src.features[k])) for k in plain]
                           + [pa.field("timestamp", pa.float32()), pa.field("frame_index", pa.int64()),
                              pa.field("episode_index", pa.int64()), pa.field("index", pa.int64()),
                              pa.field("task_index", pa.int64())])
        data_roll = _Rollover(data_files_size_in_mb * 1e6, chunks_size)
        video_roll = {k: _Rollover(video_files_size_in_mb * 1e6, chunks_size) for k in cams}
        videos: dict[str, _Concat] = {}
        codec = VideoCodec(crf=crf, gop=gop, preset="veryfast")
        writer: Any = None
        rows: list[dict[str, Any]] = []
        hists: dict[str, np.ndarray] = {}
        counts: dict[str, int] = {}
        books: dict[str, list[np.ndarray]] = {k: [] for k in BOOKKEEPING}
        for e in range(src.num_episodes):
            start, stop = src.episode_bounds(e)
            n = stop - start
            d = {k: src.read(k, start, stop) for k in plain}
            book = {"timestamp": (np.arange(n) / fps).astype(np.float32), "frame_index": np.arange(n, dtype=np.int64),
                    "episode_index": np.full(n, e, np.int64), "index": np.arange(start, stop, dtype=np.int64),
                    "task_index": np.full(n, task_index[ep_tasks[e]], np.int64)}
            table = pa.Table.from_arrays([_column(pa, d[k], src.features[k]) for k in plain]
                                         + [pa.array(book[k]) for k in BOOKKEEPING], schema=schema)
            if data_roll.place(table.nbytes):
                if writer is not None:
                    writer.close()
                path = tmp / DATA_PATH.format(chunk_index=data_roll.chunk, file_index=data_roll.file)
                path.parent.mkdir(parents=True, exist_ok=True)
                writer = pq.ParquetWriter(str(path), schema)
            writer.write_table(table)
            row: dict[str, Any] = {"episode_index": e, "tasks": [ep_tasks[e]], "length": n,
                                   "data/chunk_index": data_roll.chunk, "data/file_index": data_roll.file,
                                   "dataset_from_index": start, "dataset_to_index": stop}
            stats: dict[str, dict[str, np.ndarray]] = {
                k: _array_stats(d[k], src.features[k].shape) if k not in grids else
                _per_channel(_array_stats(d[k].reshape(-1, grids[k]), (grids[k],))) for k in numeric}
            picks = stats_sample(n)
            for k in cams:
                if copy_fmt[k]:  # only the sampled frames are converted to RGB, for stats
                    mp4 = src.video_path(k, e)
                    sample = _sampled_frames(mp4, picks, src.name, k, e)
                else:
                    frames = src.read(k, start, stop)
                    sample = frames[picks]
                h = uint8_hist(sample, True)
                hists[k] = hists[k] + h if k in hists else h
                counts[k] = counts.get(k, 0) + len(picks)
                stats[k] = _image_stats(h, len(picks))
                if not copy_fmt[k]:  # encode this episode alone, then append it like a stored one
                    mp4 = tmp / ".encode" / f"{k}.mp4"
                    vw = VideoWriter(mp4, fps, src.features[k].shape, replace(codec, pix_fmt=pix_fmt[k]))
                    vw.add(frames)
                    vw.finish()
                roll = video_roll[k]
                if roll.place(mp4.stat().st_size):
                    if k in videos:
                        videos[k].close()
                    videos[k] = _Concat(tmp / VIDEO_PATH.format(video_key=k, chunk_index=roll.chunk,
                                                                file_index=roll.file), mp4, fps)
                t0 = videos[k].frames / fps
                got = videos[k].append(mp4)
                if got != n:
                    raise DatasetCorruptError(src.name, f"video holds {got} frames, the episode {n}", key=k,
                                              episodes=e)
                row.update({f"videos/{k}/chunk_index": roll.chunk, f"videos/{k}/file_index": roll.file,
                            f"videos/{k}/from_timestamp": t0, f"videos/{k}/to_timestamp": t0 + n / fps})
            for k in BOOKKEEPING:
                stats[k] = _array_stats(book[k], ())
                books[k].append(book[k])
            row.update({f"stats/{k}/{name}": np.asarray(v).tolist() for k, st in stats.items()
                        for name, v in st.items()})
            rows.append(row)
        if writer is not None:
            writer.close()
        for v in videos.values():
            v.close()
        shutil.rmtree(tmp / ".encode", ignore_errors=True)
        _write_episodes(pa, pq, rows, tmp, data_files_size_in_mb * 1e6, chunks_size)
        _write_tasks(pa, pq, tasks, tmp / "meta" / "tasks.parquet")
        glob = compute_stats(src, numeric, quantiles=LEROBOT_QUANTILES) if numeric else {}
        stats_json: dict[str, Any] = {}
        for k in numeric:
            shape = (1, 1, grids[k]) if k in grids else src.features[k].shape or (1,)
            stats_json[k] = {n: (np.asarray(v).reshape(shape) if n != "count" else np.array([int(v)])).tolist()
                             for n, v in glob[k].items()}
        for k in cams:
            stats_json[k] = {n: v.tolist() for n, v in _image_stats(hists[k], counts[k]).items()}
        for k in BOOKKEEPING:
            stats_json[k] = {n: v.tolist() for n, v in _array_stats(np.concatenate(books[k]), ()).items()}
        (tmp / "meta" / "stats.json").write_text(json.dumps(stats_json, indent=2))
        features = {}
        for k, f in src.features.items():
            if k != tkey:
                features[k] = _video_info(f, fps, pix_fmt[k]) if k in cams else _feature_info(f)
        features.update({"timestamp": {"dtype": "float32", "shape": [1], "names": None},
                         **{k: {"dtype": "int64", "shape": [1], "names": None} for k in BOOKKEEPING[1:]}})
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": robot_type or (src.sessions[0].get("robot") if src.sessions else None) or "unknown",
            "total_episodes": src.num_episodes, "total_frames": src.num_frames, "total_tasks": len(tasks),
            "chunks_size": chunks_size, "data_files_size_in_mb": data_files_size_in_mb,
            "video_files_size_in_mb": video_files_size_in_mb, "fps": _fps_json(fps),
            "splits": {"train": f"0:{src.num_episodes}"},
            "data_path": DATA_PATH, "video_path": VIDEO_PATH if cams else None, "features": features,
            "robolearn": {"fps": fps, "features": {k: f.to_dict() for k, f in src.features.items()},
                          "task_key": tkey, "sessions": src.sessions, "source": src.name,
                          "videos": {k: "copied" if copy_fmt[k] else "encoded" for k in cams}},
        }
        (tmp / "meta" / "info.json").write_text(json.dumps(info, indent=2))
        os.rename(tmp, dest_p)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest_p


def _write_episodes(pa: Any, pq: Any, rows: list[dict[str, Any]], root: Path, limit: float, chunks_size: int) -> None:
    """meta/episodes/chunk-*/file-*.parquet, rolling over like the data files."""
    per_row = pa.Table.from_pylist(rows).nbytes / len(rows)
    roll = _Rollover(limit, chunks_size)
    files: list[tuple[int, int, list[dict[str, Any]]]] = []
    for row in rows:
        if roll.place(per_row):
            files.append((roll.chunk, roll.file, []))
        row.update({"meta/episodes/chunk_index": roll.chunk, "meta/episodes/file_index": roll.file})
        files[-1][2].append(row)
    for chunk, file, part in files:
        path = root / EPISODES_PATH.format(chunk_index=chunk, file_index=file)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(part), str(path))


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


# -------------------------------------------------------------------------------------------------------- import
V21_HELP = ("convert it to v3.0 first with lerobot's script: python -m lerobot.datasets.v30.convert_dataset_v21_to_v30 "
            "--repo-id=<id> (lerobot >= 0.4)")


def _read_info(root: Path) -> dict[str, Any]:
    p = root / "meta" / "info.json"
    if not root.is_dir():
        raise DatasetError(str(root), "does not exist or is not a directory")
    if not p.is_file():
        raise DatasetError(str(root), "is not a LeRobot dataset: meta/info.json is missing")
    try:
        info = json.loads(p.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise DatasetError(str(root), f"meta/info.json is not valid JSON: {e}") from None
    if not isinstance(info, dict):
        raise DatasetError(str(root), "meta/info.json is not a JSON object")
    version = str(info.get("codebase_version", ""))
    if not version.startswith("v3"):
        raise DatasetError(str(root), f"meta/info.json says LeRobot {version or 'of unknown version'}; only v3.x is "
                                      f"read: {V21_HELP}")
    for k in ("fps", "features", "total_episodes", "total_frames"):
        if k not in info:
            raise DatasetError(str(root), f"meta/info.json has no '{k}'")
    return info


def _feature_from_info(key: str, spec: dict[str, Any]) -> Feature:
    dtype = spec["dtype"]
    shape = tuple(int(s) for s in spec["shape"])
    if dtype == "string":
        return Feature((), "string")
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
    return Feature(shape, dtype, names=tuple(names) if names else None)


def _read_table(pa: Any, pq: Any, root: Path, pattern: str) -> Any:
    files = sorted(root.glob(pattern))
    if not files:
        raise DatasetError(str(root), f"has no files matching {pattern}")
    tables = []
    for f in files:
        try:
            tables.append(pq.read_table(str(f)))
        except Exception as e:  # noqa: BLE001 - pyarrow's errors for damaged files are many
            raise DatasetError(str(root), f"{f.relative_to(root)} cannot be read ({type(e).__name__}: {e})") from None
    return pa.concat_tables(tables, promote_options="default")


def _decode_video(path: Path, rel: str, start: float, stop: float, fps: float, n: int, dataset: str, key: str,
                  episode: int) -> np.ndarray:
    """Frames with timestamps in [start, stop) (to half a frame) of one video file, as (n, H, W, 3) uint8."""
    av = require("av", "interop")
    if not path.is_file():
        raise DatasetError(dataset, f"video file {rel} is missing", key=key, episodes=episode)
    out = []
    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            rgb = av.video.reformatter.VideoReformatter()  # shared: to_ndarray(format=...) rebuilds one per frame
            if start > 0:
                c.seek(int(max(0.0, start - 1.0) / s.time_base), stream=s, backward=True)
            half = 0.5 / fps
            for frame in c.decode(s):
                t = float(frame.pts * s.time_base) if frame.pts is not None else float(frame.time)
                if t < start - half:
                    continue
                if t >= stop - half or len(out) == n:
                    break
                out.append(rgb.reformat(frame, format="rgb24").to_ndarray())
    except av.FFmpegError as e:
        raise DatasetError(dataset, f"video file {rel} cannot be decoded ({e})", key=key, episodes=episode) from None
    if len(out) != n:
        raise DatasetError(dataset, f"video file {rel} holds {len(out)} frames in [{start:.3f}, {stop:.3f}) s, the "
                                    f"episode has {n}", key=key, episodes=episode)
    return np.stack(out)


def _decode_image(cell: Any) -> np.ndarray:
    from PIL import Image

    data = cell.get("bytes") if isinstance(cell, dict) else cell
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _read_tasks(pq: Any, root: Path) -> dict[int, str]:
    """task_index -> text from meta/tasks.parquet (the text is the pandas index, or a "task" column)."""
    p = root / "meta" / "tasks.parquet"
    if not p.is_file():
        raise DatasetError(str(root), "meta/tasks.parquet is missing")
    t = pq.read_table(str(p)).to_pydict()
    text = t.get("task") or t.get("__index_level_0__")
    if text is None or "task_index" not in t:
        raise DatasetError(str(root), "meta/tasks.parquet has no task text and task_index columns")
    return {int(i): str(s) for i, s in zip(t["task_index"], text, strict=True)}


def _import_stats(stats_path: Path, features: dict[str, Feature], episodes: int, frames: int,
                  store: Path) -> dict[str, Any] | None:
    """meta/stats.json as the store's stats attribute (images back to 0..255 per channel); None if there is none.

    A feature whose stats are missing or do not have its shape is computed from the imported `store` instead
    (LeRobot reduces 2-D features to their last axis, where robolearn keeps one value per entry).
    """
    from robolearn.data.stats import STAT_NAMES

    if not stats_path.is_file():
        return None
    try:
        raw = json.loads(stats_path.read_text())
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    out: dict[str, dict[str, Any]] = {}
    redo = []
    for k, f in features.items():
        if f.is_string:
            continue
        st = raw.get(k)
        shape = (f.shape[-1],) if f.image else f.shape
        size = int(np.prod(shape, dtype=np.int64))
        try:
            fits = isinstance(st, dict) and all(n in st for n in STAT_NAMES) and all(
                np.asarray(v, np.float64).size == size for n, v in st.items() if n != "count")
        except (TypeError, ValueError):
            fits = False
        if not fits:
            redo.append(k)
            continue
        out[k] = {n: int(np.asarray(v).reshape(-1)[0]) if n == "count" else
                  (np.asarray(v, np.float64).reshape(shape) * (255.0 if f.image else 1.0)).tolist()
                  for n, v in st.items()}
    computed = "meta/stats.json of the LeRobot dataset"
    if redo:
        for k, st in compute_stats(EpisodeStore(store), redo, quantiles=LEROBOT_QUANTILES).items():
            out[k] = {n: np.asarray(v).tolist() for n, v in st.items()}
        computed += f"; computed on import: {', '.join(redo)}"
    return {"episodes": episodes, "frames": frames, "computed": computed, "features": out}


def import_lerobot(source: str | os.PathLike[str], dest: str | os.PathLike[str],
                   storage: StorageOptions | None = None) -> EpisodeStore:
    """Read a LeRobot v3 dataset into a new episode store.

    Every file the episode metadata points at (data and video files of any chunk, rolled over or not) is read;
    the episode's task becomes the string feature "task" (or, for a dataset this exporter wrote, the feature it
    came from), and a new session starts at each change of task. Global stats (quantiles included) are kept.
    """
    pa, pq = _pa()
    root = Path(source)
    name = str(root)
    info = _read_info(root)
    fps = float(info["fps"])
    specs = {k: v for k, v in info["features"].items() if k not in BOOKKEEPING}
    ours = info.get("robolearn") or {}
    exact = ours.get("features") or {}
    try:
        features = {k: Feature.from_dict(exact[k]) if k in exact else _feature_from_info(k, v)
                    for k, v in specs.items()}
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetError(name, f"meta/info.json has a feature spec robolearn cannot read: {e!r}") from None
    task_key = ours.get("task_key") if ours else ("task" if "task" not in features else None)
    if task_key is not None:
        features[task_key] = Feature.from_dict(exact[task_key]) if task_key in exact else Feature((), "string")
    if not features:
        raise DatasetError(name, "meta/info.json lists no features besides the bookkeeping columns")
    if Path(dest).exists():
        raise DatasetError(str(dest), "already exists; choose a new path (sources are never modified)")
    episodes = _read_table(pa, pq, root, "meta/episodes/*/*.parquet").to_pylist()
    episodes.sort(key=lambda r: r["episode_index"])
    need = ("episode_index", "length", "data/chunk_index", "data/file_index", "dataset_from_index", "dataset_to_index")
    for r in episodes[:1]:
        for c in need:
            if c not in r:
                raise DatasetError(name, f"meta/episodes files have no column '{c}'")
    if len(episodes) != int(info["total_episodes"]):
        raise DatasetError(name, f"meta/info.json says {info['total_episodes']} episodes, meta/episodes lists "
                                 f"{len(episodes)}")
    if sum(int(r["length"]) for r in episodes) != int(info["total_frames"]):
        raise DatasetError(name, f"meta/info.json says {info['total_frames']} frames, the episode lengths in "
                                 f"meta/episodes add up to {sum(int(r['length']) for r in episodes)}")
    task_names = _read_tasks(pq, root)
    data_path = info.get("data_path") or DATA_PATH
    data_cache: dict[tuple[int, int], Any] = {}

    def data_table(chunk: int, file: int) -> tuple[Any, np.ndarray | None, str]:
        if (chunk, file) not in data_cache:
            data_cache.clear()  # one file at a time in memory
            rel = data_path.format(chunk_index=chunk, file_index=file)
            if not (root / rel).is_file():
                raise DatasetError(name, f"data file {rel} is missing")
            try:
                tbl = pq.read_table(str(root / rel))
            except Exception as e:  # noqa: BLE001
                raise DatasetError(name, f"data file {rel} cannot be read ({type(e).__name__}: {e})") from None
            data_cache[(chunk, file)] = (tbl, np.asarray(tbl.column("index")) if "index" in tbl.column_names
                                         else None, rel)
        return data_cache[(chunk, file)]

    tmp = Path(dest).parent / f".{Path(dest).name}.building-{uuid.uuid4().hex[:8]}"
    try:
        writer: EpisodeWriter | None = None
        last_task: str | None = None
        for row in episodes:
            e = int(row["episode_index"])
            tbl, index, rel = data_table(int(row["data/chunk_index"]), int(row["data/file_index"]))
            lo, hi = int(row["dataset_from_index"]), int(row["dataset_to_index"])
            if index is not None:
                sel = np.nonzero((index >= lo) & (index < hi))[0]
                part = tbl.take(pa.array(sel))
            else:
                part = tbl.slice(lo, hi - lo)
            n = part.num_rows
            if n != int(row["length"]) or n == 0:
                raise DatasetCorruptError(name, f"data file {rel} holds {n} rows with index in [{lo}, {hi}), "
                                                f"meta/episodes says length {row['length']}", episodes=e)
            if "task_index" in part.column_names:
                idx = list(dict.fromkeys(int(i) for i in part.column("task_index").to_pylist()))
                unknown = [i for i in idx if i not in task_names]
                if unknown:
                    raise DatasetCorruptError(name, f"data file {rel} has task_index {unknown[0]}, not in "
                                                    "meta/tasks.parquet", episodes=e)
                texts = [task_names[i] for i in idx]
            else:
                texts = [str(t) for t in row.get("tasks") or []]
            task = "; ".join(texts)  # LeRobot allows several tasks in one episode; robolearn keeps one text
            if writer is None or task != last_task:
                if writer is not None:
                    writer.close()
                sessions = ours.get("sessions") or []
                base = {k: v for k, v in (sessions[0] if len(sessions) == 1 else {}).items() if k != "first_episode"}
                prov = {**base, **Provenance(source="lerobot", robot=str(info.get("robot_type") or ""),
                                             note=task, extra={"lerobot_dataset": name}).to_dict()} \
                    if not base else {**base, "note": base.get("note") or task}
                writer = EpisodeWriter(tmp, features, fps, provenance=prov, storage=storage, durable=False)
                writer.name = str(dest)
                last_task = task
            ep: dict[str, Any] = {}
            for k, f in features.items():
                if k == task_key:
                    ep[k] = task
                    continue
                kind = specs[k]["dtype"]
                if kind == "video":
                    vrel = info["video_path"].format(video_key=k, chunk_index=row[f"videos/{k}/chunk_index"],
                                                     file_index=row[f"videos/{k}/file_index"])
                    ep[k] = _decode_video(root / vrel, vrel, float(row[f"videos/{k}/from_timestamp"]),
                                          float(row[f"videos/{k}/to_timestamp"]), fps, n, name, k, e)
                    continue
                if k not in part.column_names:
                    raise DatasetCorruptError(name, f"data file {rel} has no column '{k}'", key=k, episodes=e)
                if kind == "image":
                    ep[k] = np.stack([_decode_image(c) for c in part.column(k).to_pylist()])
                elif f.is_string:
                    ep[k] = np.array(part.column(k).to_pylist(), dtype=object)
                else:
                    col = part.column(k).combine_chunks()
                    vals = col
                    while pa.types.is_list(vals.type) or pa.types.is_fixed_size_list(vals.type):
                        vals = vals.flatten()  # vectors are lists, 2-D arrays (LeRobot's Array2D) lists of lists
                    x = np.asarray(vals.to_numpy(zero_copy_only=False))
                    if x.size != n * max(1, int(np.prod(f.shape, dtype=np.int64))):
                        raise DatasetCorruptError(name, f"data file {rel} column '{k}' holds {x.size} values for "
                                                        f"{n} frames of shape {f.shape}", key=k, episodes=e)
                    ep[k] = x.reshape(n, *f.shape).astype(f.dtype)
            writer.add_episode(ep)
        if writer is not None:
            writer.close()
        if not tmp.exists():
            raise DatasetError(name, "has no episodes")
        st = _import_stats(root / "meta" / "stats.json", features, len(episodes), int(info["total_frames"]), tmp)
        if st is not None:
            EpisodeStore(tmp).set_attributes(stats=st)
        os.rename(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return EpisodeStore(dest)
