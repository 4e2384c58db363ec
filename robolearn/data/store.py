"""Crash-safe zarr v3 episode store: `data/<key>` chunked in time, `meta/episode_ends`, one atomic commit record.

On disk (one directory per dataset, a zarr v3 group)::

    zarr.json                  attributes["robolearn"]: schema_version, fps, features, sessions (provenance), stats,
                               lineage and the commit record {"episodes": E, "frames": N}
    data/<key>/zarr.json       one array per feature, shape (>= N, *feature.shape), chunked along time only
    data/<key>/c.<t>.0...      chunk files (zstd with a content checksum in every chunk by default)
    videos/<key>/<episode>.mp4 camera features chosen for video storage (StorageOptions.video): one H.264 file per
                               episode (robolearn/data/video.py), instead of data/<key>
    meta/episode_ends/         int64 (>= E,): exclusive end frame of each episode
    meta/checksums/            uint32 (>= E, K): crc32 of each episode's bytes per key (order: its "keys" attribute)
    meta/strings/<key>/        int32 (>= E,): for a string feature (a task or language instruction, one value per
                               episode), the index of each episode's text in attributes["strings"][key]

Crash safety. Every file is written to a temporary name, optionally fsynced, then renamed over the old one, so each
file is always either its old or its new version, never torn; a killed writer leaves at most `*.partial` files.
An episode streams into the arrays beyond the committed frame count (whole chunks as they fill, the rest at the end),
then `meta/episode_ends` and `meta/checksums` get their row, and only then is the root `zarr.json` replaced with
the new commit record. Readers trust only the commit record: data and meta rows beyond it are ignored, and the next
writer (holding an flock on the store directory) deletes that tail before appending. Rewriting a chunk that also
holds committed frames (an episode that starts mid-chunk) is safe for the same reason: old and new file hold the
same committed bytes. A store is created in a temporary sibling directory and renamed into place when complete.
A video feature's episode is encoded into `<episode>.mp4.partial`, closed, flushed and renamed before the commit;
files of episodes beyond the commit record are deleted like any uncommitted tail. Its checksum is the MP4 file's.
A string feature (`Feature((), "string")`) holds one text per episode, the same in every frame: the episode's row of
`meta/strings/<key>` is written before the commit and its text joins the vocabulary in the commit record itself, so
a string becomes visible exactly with its episode. Its checksum is the crc32 of the UTF-8 text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import time
import uuid
import zlib
from collections import OrderedDict, deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, ZstdCodec
from zarr.storage import LocalStore

from robolearn import __version__
from robolearn.core.errors import RobolearnError
from robolearn.data.video import VideoCodec, VideoReader, VideoWriter

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no writer lock
    fcntl = None  # type: ignore[assignment]

SCHEMA_VERSION = 1
ATTR = "robolearn"
_RESERVED = {"schema_version", "fps", "features", "episodes", "frames", "sessions", "video", "strings"}
_KEY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_DTYPES = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
           "float16", "float32", "float64", "string"}
_CHUNK_KEY = {"name": "default", "separator": "."}
_META_CHUNK = 4096

Episodes = int | tuple[int, int] | None
_INHERITED: list[Any] = []  # video readers a forked process got from its parent: never freed there (see _after_fork)


# ---------------------------------------------------------------------------------------------------------- errors
def _where(dataset: str, key: str | None = None, episodes: Episodes = None, frame: int | None = None) -> str:
    parts = [f"dataset '{dataset}'"]
    if key is not None:
        parts.append(f"key '{key}'")
    if isinstance(episodes, tuple):
        first, last = episodes
        parts.append(f"episode {first}" if first == last else f"episodes {first}-{last}")
    elif episodes is not None:
        parts.append(f"episode {episodes}")
    if frame is not None:
        parts.append(f"frame {frame}")
    return ", ".join(parts)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset, located by dataset, key and episode(s)."""

    dataset: str
    what: str
    key: str | None = None
    episodes: Episodes = None
    frame: int | None = None

    def __str__(self) -> str:
        return f"{_where(self.dataset, self.key, self.episodes, self.frame)}: {self.what}"


class DatasetError(RobolearnError):
    """A dataset is missing, unreadable, or does not match what is written to or read from it."""

    def __init__(self, dataset: str, what: str | None = None, *, key: str | None = None, episodes: Episodes = None,
                 frame: int | None = None) -> None:
        if what is None:  # a bare message: how a DataLoader worker's exception is rebuilt in the main process
            self.problem = Problem("", str(dataset))
            super().__init__(str(dataset))
            return
        self.problem = Problem(str(dataset), what, key, episodes, frame)
        super().__init__(str(self.problem))


class DatasetCorruptError(DatasetError):
    """Stored bytes are missing, truncated or inconsistent with the commit record."""


class SchemaMismatchError(DatasetError):
    """Features or fps differ between two datasets, or between a store and the writer appending to it."""


class FrameError(DatasetError):
    """A frame from a device has a missing or unknown key, or a wrong shape or dtype."""


# --------------------------------------------------------------------------------------------------------- schema
@dataclass(frozen=True)
class Feature:
    """One per-frame array: shape without time, dtype, units, entry names and axis names; images are (H, W, C) uint8.

    dtype "string" (shape ()) is a per-episode text such as a task or language instruction: every frame of an
    episode holds the same value, stored once per episode.
    """

    shape: tuple[int, ...]
    dtype: str = "float32"
    units: str | tuple[str, ...] = ""  # one unit for all entries, or one per entry of the last axis
    names: tuple[str, ...] | None = None  # entries of the last axis, e.g. joint names
    axes: tuple[str, ...] | None = None  # one name per dimension, e.g. ("height", "width", "channel")
    description: str = ""

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        if any(s <= 0 for s in shape):
            raise ValueError(f"feature shape {shape} has a non-positive dimension")
        try:
            dtype = "string" if self.dtype in ("string", "str", str) else np.dtype(self.dtype).name
        except TypeError as e:
            raise ValueError(f"feature dtype {self.dtype!r}: {e}") from None
        if dtype == "string" and shape != ():
            raise ValueError(f"a string feature has shape (), not {shape} (one text per episode)")
        if dtype not in _DTYPES:
            raise ValueError(f"feature dtype {dtype} is not one of {sorted(_DTYPES)}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "dtype", dtype)
        last = shape[-1] if shape else 1
        if not isinstance(self.units, str):
            object.__setattr__(self, "units", tuple(self.units))
            if len(self.units) != last:
                raise ValueError(f"{len(self.units)} units for a last axis of {last} entries")
        if self.names is not None:
            object.__setattr__(self, "names", tuple(self.names))
            if len(self.names) != last:
                raise ValueError(f"{len(self.names)} names for a last axis of {last} entries")
        if self.axes is not None:
            object.__setattr__(self, "axes", tuple(self.axes))
            if len(self.axes) != len(shape):
                raise ValueError(f"{len(self.axes)} axis names for {len(shape)} dimensions")

    @property
    def image(self) -> bool:
        """True for (H, W, C) uint8 with 1, 3 or 4 channels: stored and summarized per channel."""
        return self.dtype == "uint8" and len(self.shape) == 3 and self.shape[-1] in (1, 3, 4)

    @property
    def is_string(self) -> bool:
        """True for a per-episode text (dtype "string")."""
        return self.dtype == "string"

    @property
    def frame_bytes(self) -> int:
        """Bytes of one frame uncompressed (0 for a string: stored once per episode)."""
        if self.is_string:
            return 0
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        d = asdict(self)
        d["shape"] = list(self.shape)
        for k in ("units", "names", "axes"):
            if isinstance(d[k], tuple):
                d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Feature:
        """Inverse of `to_dict`."""
        units = d.get("units", "")
        return cls(shape=tuple(d["shape"]), dtype=d["dtype"], units=units if isinstance(units, str) else tuple(units),
                   names=d.get("names"), axes=d.get("axes"), description=d.get("description", ""))

    def describe(self) -> str:
        """'float32 (7,)'."""
        return f"{self.dtype} {self.shape}"


@dataclass(kw_only=True)
class Provenance:
    """Where one recording session's episodes came from; stored per session, looked up per episode."""

    source: str = ""  # "teleop", "sim", "rosbag", "replay", ...
    task: str = ""
    robot: str = ""
    device: str = ""  # teleop device or simulator backend
    operator: str = ""
    note: str = ""
    software: str = f"robolearn {__version__}"
    started: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class StorageOptions:
    """How arrays are chunked along time and compressed; never changes what is stored, only how."""

    compression: str = "zstd"  # "zstd" (content checksum per chunk), "blosc-zstd", "blosc-lz4" or "none"
    level: int = 3
    chunk_frames: Mapping[str, int] = field(default_factory=dict)  # per-key override
    chunk_bytes: int = 1 << 20  # target uncompressed bytes per chunk
    max_chunk_frames: int = 1024
    max_image_chunk_frames: int = 64
    video: tuple[str, ...] = ()  # camera keys stored as per-episode MP4 (H.264) instead of compressed arrays
    video_codec: VideoCodec = field(default_factory=VideoCodec)

    def frames_per_chunk(self, key: str, feature: Feature) -> int:
        """Frames per chunk: the override, else the power of two nearest below `chunk_bytes`, capped."""
        if key in self.chunk_frames:
            return max(1, int(self.chunk_frames[key]))
        cap = self.max_image_chunk_frames if feature.image else self.max_chunk_frames
        n = max(1, self.chunk_bytes // max(1, feature.frame_bytes))
        return max(1, min(cap, 1 << (n.bit_length() - 1)))

    def codecs(self, feature: Feature) -> list[Any]:
        """Zarr v3 compressors for one feature."""
        if self.compression == "zstd":
            return [ZstdCodec(level=self.level, checksum=True)]
        if self.compression in ("blosc-zstd", "blosc-lz4"):
            shuffle = "bitshuffle" if np.dtype(feature.dtype).itemsize == 1 else "shuffle"
            return [BloscCodec(cname=self.compression[6:], clevel=self.level, shuffle=shuffle)]
        if self.compression == "none":
            return []
        raise ValueError(f"compression {self.compression!r} is not one of zstd, blosc-zstd, blosc-lz4, none")


# -------------------------------------------------------------------------------------------------- atomic files
def _fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _put_atomic(path: str, data: Any, durable: bool) -> None:
    tmp = f"{path}.{uuid.uuid4().hex[:12]}.partial"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class _SafeStore(LocalStore):
    """LocalStore whose every write goes to a temporary file, is optionally fsynced, then renamed into place."""

    def __init__(self, root: Path | str, *, read_only: bool = False, durable: bool = False) -> None:
        super().__init__(root, read_only=read_only)
        self.durable = durable
        self._dirty: set[str] = set()

    def with_read_only(self, read_only: bool = False) -> _SafeStore:
        """Same store, other mode."""
        return type(self)(self.root, read_only=read_only, durable=self.durable)

    def put_bytes(self, key: str, data: Any) -> None:
        """Write one file atomically; remember its directory for `sync`."""
        path = os.path.join(self.root, key)
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            os.makedirs(parent, exist_ok=True)
            d = parent
            while self.durable and len(d) > len(str(self.root)):
                d = os.path.dirname(d)
                self._dirty.add(d)
        _put_atomic(path, data, self.durable)
        if self.durable:
            self._dirty.add(parent)

    async def set(self, key: str, value: Any) -> None:
        """Zarr's write entry point."""
        if not self._is_open:
            await self._open()
        self._check_writable()
        await asyncio.to_thread(self.put_bytes, key, value.as_buffer_like())

    async def set_if_not_exists(self, key: str, value: Any) -> None:
        """Zarr's create entry point (callers hold the writer lock)."""
        if not await self.exists(key):
            await self.set(key, value)

    def sync(self) -> None:
        """Flush to disk every directory that got a new file since the last sync (durable mode)."""
        for d in sorted(self._dirty, key=len, reverse=True):
            _fsync_dir(d)
        self._dirty.clear()


class _WriterLock:
    """An exclusive flock on the store directory, held by one writer at a time; released if the process dies."""

    def __init__(self, path: Path, dataset: str) -> None:
        self.fd: int | None = os.open(path, os.O_RDONLY)
        if fcntl is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(self.fd)
                self.fd = None
                raise DatasetError(dataset, "another writer holds its lock (one writer at a time)") from None

    def release(self) -> None:
        """Unlock (closing the descriptor releases the flock)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


# ------------------------------------------------------------------------------------------------ commit record
def _read_root(path: Path, dataset: str) -> dict[str, Any]:
    if not path.exists():
        raise DatasetError(dataset, "does not exist")
    if not path.is_dir():
        raise DatasetError(dataset, "is not a directory (a dataset is a zarr v3 directory store)")
    p = path / "zarr.json"
    if not p.exists():
        raise DatasetCorruptError(dataset, "zarr.json is missing: not a zarr v3 store, or an incomplete copy of one")
    try:
        meta = json.loads(p.read_bytes())
    except (ValueError, UnicodeDecodeError) as e:
        raise DatasetCorruptError(dataset, f"zarr.json is not valid JSON (truncated or damaged): {e}") from None
    attrs = meta.get("attributes", {}).get(ATTR) if isinstance(meta, dict) else None
    if not isinstance(attrs, dict):
        raise DatasetError(dataset, "is a zarr store but not a robolearn dataset (no 'robolearn' attributes)")
    return meta


@dataclass
class _Header:
    fps: float
    features: dict[str, Feature]
    episodes: int
    frames: int
    sessions: list[dict[str, Any]]
    attrs: dict[str, Any]
    video: dict[str, VideoCodec] = field(default_factory=dict)  # keys stored as per-episode MP4
    strings: dict[str, list[str]] = field(default_factory=dict)  # string key -> vocabulary (committed texts)


def _parse_header(attrs: dict[str, Any], dataset: str) -> _Header:
    version = attrs.get("schema_version")
    if not isinstance(version, int):
        raise DatasetCorruptError(dataset, "zarr.json has no integer schema_version")
    if version > SCHEMA_VERSION:
        raise DatasetError(dataset, f"has schema version {version}, written by a newer robolearn; this one reads "
                                    f"up to {SCHEMA_VERSION}")
    features: dict[str, Feature] = {}
    for key, spec in dict(attrs.get("features") or {}).items():
        try:
            features[key] = Feature.from_dict(spec)
        except (KeyError, TypeError, ValueError) as e:
            raise DatasetCorruptError(dataset, f"feature spec is invalid: {e}", key=key) from None
    if not features:
        raise DatasetCorruptError(dataset, "zarr.json lists no features")
    try:
        fps, episodes, frames = float(attrs["fps"]), int(attrs["episodes"]), int(attrs["frames"])
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetCorruptError(dataset, f"commit record in zarr.json is incomplete: {e!r}") from None
    if episodes < 0 or frames < 0 or fps <= 0 or (episodes == 0) != (frames == 0):
        raise DatasetCorruptError(dataset, f"commit record is inconsistent: {episodes} episodes, {frames} frames, "
                                           f"fps {fps}")
    video: dict[str, VideoCodec] = {}
    for key, spec in dict(attrs.get("video") or {}).items():
        try:
            if key not in features:
                raise ValueError("not a feature")
            video[key] = VideoCodec.from_dict(spec)
        except (TypeError, ValueError) as e:
            raise DatasetCorruptError(dataset, f"video spec is invalid: {e}", key=key) from None
    strings: dict[str, list[str]] = {}
    vocab = attrs.get("strings") or {}
    for key, f in features.items():
        if f.is_string:
            texts = vocab.get(key, [])
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                raise DatasetCorruptError(dataset, "string vocabulary in zarr.json is not a list of strings", key=key)
            strings[key] = list(texts)
    return _Header(fps, features, episodes, frames, list(attrs.get("sessions") or []), attrs, video, strings)


def _video_path(root: Path, key: str, episode: int) -> Path:
    return root / "videos" / key / f"{episode:06d}.mp4"


def _file_crc(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            crc = zlib.crc32(block, crc)
    return crc


def _episodes_overlapping(ends: np.ndarray, start: int, stop: int) -> tuple[int, int] | None:
    if len(ends) == 0 or stop <= start:
        return None
    first = int(np.searchsorted(ends, start, side="right"))
    last = int(np.searchsorted(ends, stop - 1, side="right"))
    return (min(first, len(ends) - 1), min(last, len(ends) - 1))


def _chunk_path(root: Path, key: str, arr: Any, chunk: int) -> Path:
    coords = (chunk,) + (0,) * (len(arr.shape) - 1)
    return root / "data" / key / arr.metadata.encode_chunk_key(coords)


def _chunk_decoder(arr: Any) -> Any:
    """A bytes -> bytes decoder of the chunk files of `arr` when its codecs are plain bytes (+ zstd), else None.

    Reading such chunks directly costs 0.9 ms where zarr's async pipeline costs 2.1 ms (an 8-frame 96x96 camera
    chunk); random training windows from a store too large to cache read little else. zstd verifies the content
    checksum the store writes.
    """
    from zarr.codecs import BytesCodec, ZstdCodec

    codecs = tuple(arr.metadata.codecs)
    if not codecs or not isinstance(codecs[0], BytesCodec):
        return None
    endian = getattr(codecs[0].endian, "value", codecs[0].endian)
    if endian not in (None, "little") or (endian is None and np.dtype(arr.dtype).itemsize > 1):
        return None
    if len(codecs) == 1:
        return bytes
    if len(codecs) == 2 and isinstance(codecs[1], ZstdCodec):
        from numcodecs import Zstd

        return Zstd().decode
    return None


def _structure_problems(name: str, h: _Header, arrays: dict[str, Any],
                        open_array: Any) -> tuple[list[Problem], np.ndarray]:
    """episode_ends consistent with the commit record; arrays present with the declared dtype/shape, long enough."""
    problems: list[Problem] = []
    all_eps = (0, h.episodes - 1) if h.episodes else None
    ends = np.zeros(0, np.int64)
    try:
        ends_arr = open_array("meta/episode_ends")
        if ends_arr.shape[0] < h.episodes:
            problems.append(Problem(name, f"meta/episode_ends has {ends_arr.shape[0]} entries but {h.episodes} "
                                          "episodes are committed", episodes=(ends_arr.shape[0], h.episodes - 1)))
        else:
            ends = np.asarray(ends_arr[: h.episodes], dtype=np.int64)
            lengths = np.diff(np.concatenate([[0], ends]))
            if h.episodes and (np.any(lengths <= 0) or ends[-1] != h.frames):
                bad = int(np.argmax(lengths <= 0)) if np.any(lengths <= 0) else h.episodes - 1
                problems.append(Problem(name, f"meta/episode_ends is not strictly increasing up to the {h.frames} "
                                              f"committed frames (near: {ends[max(0, bad - 1):bad + 2].tolist()})",
                                        episodes=bad))
                ends = np.zeros(0, np.int64)
    except Exception as e:  # noqa: BLE001 - any failure to open is reported the same way
        problems.append(Problem(name, f"meta/episode_ends is missing or unreadable ({type(e).__name__}: {e})"))
    for key, f in h.features.items():
        if key in h.video:  # per-episode files: checked by missing_chunks / validate
            continue
        if f.is_string:
            try:
                idx = open_array(f"meta/strings/{key}")
                rows = np.asarray(idx[: h.episodes], np.int64) if idx.shape[0] >= h.episodes else None
            except Exception as e:  # noqa: BLE001
                problems.append(Problem(name, f"meta/strings/{key} is missing or unreadable ({type(e).__name__}: "
                                              f"{e})", key, all_eps))
                continue
            if rows is None:
                problems.append(Problem(name, f"meta/strings/{key} has {idx.shape[0]} entries but {h.episodes} "
                                              "episodes are committed", key, (idx.shape[0], h.episodes - 1)))
            elif len(rows) and (rows.min() < 0 or rows.max() >= len(h.strings[key])):
                bad = int(np.argmax((rows < 0) | (rows >= len(h.strings[key]))))
                problems.append(Problem(name, f"meta/strings/{key} points outside the {len(h.strings[key])} "
                                              "stored texts", key, bad))
            continue
        try:
            arr = open_array(f"data/{key}")
        except Exception as e:  # noqa: BLE001
            problems.append(Problem(name, f"array data/{key} is missing or unreadable ({type(e).__name__}: {e})",
                                    key, all_eps))
            continue
        if np.dtype(arr.dtype) != np.dtype(f.dtype) or tuple(arr.shape[1:]) != f.shape:
            problems.append(Problem(name, f"array is {np.dtype(arr.dtype).name} {tuple(arr.shape[1:])} per frame "
                                          f"but the feature spec says {f.describe()}", key, all_eps))
            continue
        if arr.shape[0] < h.frames:
            eps = _episodes_overlapping(ends, arr.shape[0], h.frames) if len(ends) else all_eps
            problems.append(Problem(name, f"array holds {arr.shape[0]} frames but {h.frames} are committed", key,
                                    eps))
            continue
        arrays[key] = arr
    return problems, ends


# ---------------------------------------------------------------------------------------------------------- reader
class EpisodeStore:
    """Read-only view of the episodes committed in one dataset directory (safe to open while a writer appends)."""

    #: MP4 files kept open per process (one file descriptor and a small decoder each). Opening one costs ~3 ms, ~20x
    #: decoding a 96x96 frame, so random windows over a store with more files than this are dominated by opens.
    max_open_videos = 256

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.name = str(path)
        self._arrays: dict[str, Any] = {}
        self._decoders: dict[str, Any] = {}  # per key: a direct chunk decoder, or None (zarr reads it)
        self._videos: OrderedDict[tuple[str, int], VideoReader] = OrderedDict()  # open MP4 files, per process
        self._pid = os.getpid()
        self.refresh()

    @classmethod
    def create(cls, path: str | os.PathLike[str], features: Mapping[str, Feature], fps: float, *,
               storage: StorageOptions | None = None) -> EpisodeStore:
        """Create an empty dataset (atomically: it appears complete or not at all); fails if `path` exists."""
        if Path(path).exists():
            raise DatasetError(str(path), "already exists")
        _create(Path(path), str(path), features, fps, storage or StorageOptions())
        return cls(path)

    def refresh(self) -> None:
        """Re-read the commit record, e.g. to see episodes a writer committed since opening."""
        h = _parse_header(_read_root(self.path, self.name)["attributes"][ATTR], self.name)
        self._h = h
        self._arrays, self._decoders = {}, {}
        problems, ends = _structure_problems(self.name, h, self._arrays, self._open_array)
        if problems:
            p = problems[0]
            raise DatasetCorruptError(p.dataset, p.what, key=p.key, episodes=p.episodes, frame=p.frame)
        self.episode_ends = ends
        self.episode_starts = np.concatenate([[0], ends[:-1]]).astype(np.int64) if len(ends) else ends
        self._string_rows = {k: np.asarray(self._open_array(f"meta/strings/{k}")[: h.episodes], np.int64)
                             for k, f in h.features.items() if f.is_string}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arrays": {}, "_decoders": {}, "_videos": OrderedDict()}

    def _open_array(self, name: str) -> Any:
        return zarr.open_array(store=LocalStore(self.path, read_only=True), path=name, mode="r")

    def _array(self, key: str) -> Any:
        if self._pid != os.getpid():  # a DataLoader worker: zarr objects and open files are per process
            self._after_fork()
        if key not in self._arrays:
            if key not in self.features:
                raise DatasetError(self.name, f"is not a feature (features: {', '.join(self.features)})", key=key)
            if key in self._h.video:
                raise DatasetError(self.name, "is stored as video (per-episode MP4), not as an array", key=key)
            if self.features[key].is_string:
                raise DatasetError(self.name, "is a string feature (one text per episode), not an array", key=key)
            self._arrays[key] = self._open_array(f"data/{key}")
        return self._arrays[key]

    def is_video(self, key: str) -> bool:
        """Whether `key` is stored as per-episode MP4 files."""
        return key in self._h.video

    def episode_string(self, key: str, episode: int) -> str:
        """The text of a string feature (task, language instruction) for one episode."""
        self._check_episode(episode)
        if key not in self.features or not self.features[key].is_string:
            raise DatasetError(self.name, "is not a string feature", key=key)
        return self._h.strings[key][int(self._string_rows[key][episode])]

    def string_values(self, key: str) -> list[str]:
        """The distinct texts of a string feature, in the order first committed."""
        if key not in self.features or not self.features[key].is_string:
            raise DatasetError(self.name, "is not a string feature", key=key)
        return list(self._h.strings[key])

    def video_path(self, key: str, episode: int) -> Path:
        """The MP4 file of one episode of a video feature."""
        return _video_path(self.path, key, episode)

    def _after_fork(self) -> None:
        """A forked process (DataLoader worker) opens its own arrays and files.

        The parent's open MP4 readers are kept alive, not closed: freeing an FFmpeg context the parent created
        deadlocks in the child (its locks were copied in whatever state the parent held them).
        """
        _INHERITED.append(self._videos)
        self._arrays, self._videos, self._pid = {}, OrderedDict(), os.getpid()

    def _video_reader(self, key: str, episode: int) -> VideoReader:
        if self._pid != os.getpid():
            self._after_fork()
        hit = self._videos.get((key, episode))
        if hit is not None:
            self._videos.move_to_end((key, episode))
            return hit
        path = self.video_path(key, episode)
        if not path.is_file():
            raise DatasetCorruptError(self.name, f"video file {path.name} is missing", key=key, episodes=episode)
        try:
            r = VideoReader(path, self.fps)
        except Exception as e:  # noqa: BLE001 - FFmpeg's errors for damaged containers are many
            raise DatasetCorruptError(self.name, f"video file {path.name} cannot be opened ({type(e).__name__}: "
                                      f"{e})", key=key, episodes=episode) from None
        self._videos[(key, episode)] = r
        while len(self._videos) > self.max_open_videos:
            self._videos.popitem(last=False)[1].close()
        return r

    # ---- what is stored
    @property
    def fps(self) -> float:
        """Frames per second of every feature."""
        return self._h.fps

    @property
    def features(self) -> dict[str, Feature]:
        """Feature specs by key, in store order."""
        return self._h.features

    @property
    def num_episodes(self) -> int:
        """Committed episodes."""
        return self._h.episodes

    @property
    def num_frames(self) -> int:
        """Committed frames over all episodes."""
        return self._h.frames

    @property
    def sessions(self) -> list[dict[str, Any]]:
        """Recording sessions: provenance plus `first_episode`."""
        return self._h.sessions

    @property
    def attributes(self) -> dict[str, Any]:
        """All robolearn attributes (stats, lineage, ...) as stored."""
        return self._h.attrs

    def episode_bounds(self, episode: int) -> tuple[int, int]:
        """[start, stop) frame range of one episode."""
        self._check_episode(episode)
        return int(self.episode_starts[episode]), int(self.episode_ends[episode])

    def episode_length(self, episode: int) -> int:
        """Frames in one episode."""
        start, stop = self.episode_bounds(episode)
        return stop - start

    def provenance(self, episode: int) -> dict[str, Any]:
        """Provenance of the session that recorded `episode`."""
        self._check_episode(episode)
        found: dict[str, Any] = {}
        for s in self.sessions:
            if int(s.get("first_episode", 0)) <= episode:
                found = s
        return found

    def chunk_frames(self, key: str) -> int:
        """Frames per chunk of one key (for a video feature: its keyframe interval; for a string: 0)."""
        if key in self.features and self.features[key].is_string:
            return 0
        if self.is_video(key):
            return self._h.video[key].gop
        return int(self._array(key).chunks[0])

    def storage(self, key: str) -> str:
        """Codec summary of one key, e.g. 'zstd(level=3, checksum)' or 'mp4 h264(crf=18, gop=8, yuv420p)'."""
        if key in self.features and self.features[key].is_string:
            return f"text per episode ({len(self._h.strings[key])} distinct)"
        if self.is_video(key):
            c = self._h.video[key]
            return f"mp4 h264(crf={c.crf}, gop={c.gop}, {c.pix_fmt})"
        arr = self._array(key)
        out = []
        for c in arr.compressors:
            d = c.to_dict()
            cfg = d.get("configuration", {})
            out.append(f"{d['name']}({', '.join(f'{k}={v}' for k, v in cfg.items() if k not in ('typesize',))})")
        return " + ".join(out) or "none"

    def size_on_disk(self) -> int:
        """Bytes of all files under the store directory."""
        return sum(e.stat().st_size for e in _walk_files(self.path))

    def _check_episode(self, episode: int) -> None:
        if not 0 <= episode < self.num_episodes:
            raise DatasetError(self.name, f"out of range (0..{self.num_episodes - 1})", episodes=episode)

    # ---- reading
    def read(self, key: str, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) of one key; a missing or undecodable chunk raises an error naming key and episodes."""
        if key in self.features and self.is_video(key):
            return self._read_video(key, start, stop)
        if key in self.features and self.features[key].is_string:
            return self._read_string(key, start, stop)
        arr = self._array(key)
        if not 0 <= start <= stop <= self.num_frames:
            raise DatasetError(self.name, f"frames [{start}, {stop}) outside the {self.num_frames} committed", key=key)
        if stop == start:
            return np.zeros((0, *self.features[key].shape), self.features[key].dtype)
        cf = int(arr.chunks[0])
        for c in range(start // cf, (stop - 1) // cf + 1):
            if not _chunk_path(self.path, key, arr, c).exists():
                raise DatasetCorruptError(self.name, f"chunk file {_chunk_path(self.path, key, arr, c).name} "
                                          f"(frames {c * cf}-{(c + 1) * cf - 1}) is missing", key=key,
                                          episodes=self._eps(max(start, c * cf), min(stop, (c + 1) * cf)))
        if key not in self._decoders:
            self._decoders[key] = _chunk_decoder(arr)
        if self._decoders[key] is not None and tuple(arr.chunks[1:]) == tuple(arr.shape[1:]):
            try:
                return self._read_chunks(key, arr, start, stop)
            except Exception:  # noqa: BLE001 - zarr's own read below names the chunk that fails
                pass
        try:
            return np.asarray(arr[start:stop])
        except Exception:  # noqa: BLE001 - find which chunk fails to decode, then report it
            pass
        for c in range(start // cf, (stop - 1) // cf + 1):
            lo, hi = max(start, c * cf), min(stop, (c + 1) * cf)
            try:
                arr[lo:hi]
            except Exception as e:  # noqa: BLE001
                raise DatasetCorruptError(self.name, f"chunk file {_chunk_path(self.path, key, arr, c).name} "
                                          f"(frames {c * cf}-{(c + 1) * cf - 1}) cannot be decoded "
                                          f"({type(e).__name__}: {e})", key=key, episodes=self._eps(lo, hi)) from None
        raise DatasetCorruptError(self.name, f"frames [{start}, {stop}) cannot be read", key=key,
                                  episodes=self._eps(start, stop))

    def _read_chunks(self, key: str, arr: Any, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) decoded straight from the chunk files (see `_chunk_decoder`)."""
        cf, dtype = int(arr.chunks[0]), np.dtype(arr.dtype).newbyteorder("<")
        out = np.empty((stop - start, *arr.shape[1:]), arr.dtype)
        for c in range(start // cf, (stop - 1) // cf + 1):
            lo, hi = max(start, c * cf), min(stop, (c + 1) * cf)
            raw = self._decoders[key](_chunk_path(self.path, key, arr, c).read_bytes())
            out[lo - start:hi - start] = np.frombuffer(raw, dtype).reshape(cf, *arr.shape[1:])[lo - c * cf:hi - c * cf]
        return out

    def _read_string(self, key: str, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) of a string feature: each frame holds its episode's text (object array)."""
        if not 0 <= start <= stop <= self.num_frames:
            raise DatasetError(self.name, f"frames [{start}, {stop}) outside the {self.num_frames} committed", key=key)
        eps = np.searchsorted(self.episode_ends, np.arange(start, stop), side="right")
        texts = np.array(self._h.strings[key] + [""], dtype=object)
        return texts[self._string_rows[key][eps]] if stop > start else np.zeros(0, object)

    def _read_video(self, key: str, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) of a video feature, decoded episode by episode."""
        if not 0 <= start <= stop <= self.num_frames:
            raise DatasetError(self.name, f"frames [{start}, {stop}) outside the {self.num_frames} committed", key=key)
        out = np.empty((stop - start, *self.features[key].shape), np.uint8)
        e = int(np.searchsorted(self.episode_ends, start, side="right")) if stop > start else self.num_episodes
        while e < self.num_episodes and int(self.episode_starts[e]) < stop:
            first = int(self.episode_starts[e])
            lo, hi = max(start, first), min(stop, int(self.episode_ends[e]))
            try:
                out[lo - start:hi - start] = self._video_reader(key, e).read(lo - first, hi - first)
            except DatasetError:
                raise
            except Exception as e2:  # noqa: BLE001
                self._videos.pop((key, e), None)
                raise DatasetCorruptError(self.name, f"video file {self.video_path(key, e).name} cannot be decoded "
                                          f"({type(e2).__name__}: {e2})", key=key, episodes=e) from None
            e += 1
        return out

    def _eps(self, start: int, stop: int) -> tuple[int, int] | None:
        return _episodes_overlapping(self.episode_ends, start, stop)

    def read_episode(self, episode: int, keys: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """All frames of one episode, (T, *shape) per key."""
        start, stop = self.episode_bounds(episode)
        return {k: self.read(k, start, stop) for k in (keys if keys is not None else self.features)}

    def checksums(self) -> dict[str, np.ndarray]:
        """crc32 recorded at write time for each committed episode, (E,) per key."""
        arr = self._open_array("meta/checksums")
        keys = list(arr.attrs.get("keys", []))
        table = np.asarray(arr[: self.num_episodes], dtype=np.uint32)
        return {k: table[:, i] for i, k in enumerate(keys)}

    def validate(self, data: bool = True) -> list[Problem]:
        """Checksums recorded, no chunk file missing and, with `data`, every episode decodes to its checksum."""
        problems: list[Problem] = []
        try:
            crcs = self.checksums()
            for key in self.features:
                if key not in crcs:
                    problems.append(Problem(self.name, "no checksums recorded in meta/checksums", key))
        except Exception as e:  # noqa: BLE001
            problems.append(Problem(self.name, f"meta/checksums is missing or unreadable ({type(e).__name__}: {e})"))
            crcs = {}
        flagged: set[tuple[str, int]] = set()
        for key in self.features:
            for p in self.missing_chunks(key):
                problems.append(p)
                assert isinstance(p.episodes, tuple)
                flagged.update((key, e) for e in range(p.episodes[0], p.episodes[1] + 1))
        for key in self._h.video:  # a video's recorded checksum is its file's: cheap, so checked always
            for e in range(self.num_episodes):
                if (key, e) not in flagged and key in crcs and _file_crc(self.video_path(key, e)) != int(crcs[key][e]):
                    problems.append(Problem(self.name, f"video file {self.video_path(key, e).name} does not match the "
                                                       "checksum recorded when it was written", key, e))
                    flagged.add((key, e))
        if not data:
            return problems
        seen: set[str] = set()
        for key in self.features:
            for e in range(self.num_episodes):
                if (key, e) in flagged:
                    continue
                if self.is_video(key):
                    try:
                        frames = VideoReader(self.video_path(key, e), self.fps).count()
                    except Exception as err:  # noqa: BLE001
                        problems.append(Problem(self.name, f"video file cannot be decoded ({type(err).__name__}: "
                                                           f"{err})", key, e))
                        continue
                    if frames != self.episode_length(e):
                        problems.append(Problem(self.name, f"video file holds {frames} frames, the episode "
                                                           f"{self.episode_length(e)}", key, e))
                    continue
                if self.features[key].is_string:
                    text = self.episode_string(key, e).encode()
                    if key in crcs and zlib.crc32(text) != int(crcs[key][e]):
                        problems.append(Problem(self.name, "text does not match the checksum recorded when it was "
                                                           "written", key, e))
                    continue
                start, stop = self.episode_bounds(e)
                try:
                    x = self.read(key, start, stop)
                except DatasetError as err:
                    if str(err) not in seen:
                        seen.add(str(err))
                        problems.append(err.problem)
                    continue
                if key in crcs and zlib.crc32(np.ascontiguousarray(x).data) != int(crcs[key][e]):
                    problems.append(Problem(self.name, "data does not match the checksum recorded when it was "
                                                       "written", key, e))
        return problems

    def missing_chunks(self, key: str) -> list[Problem]:
        """One problem per chunk file (video: episode file) of the committed frames that does not exist."""
        if self.num_frames == 0 or self.features[key].is_string:
            return []
        if self.is_video(key):
            return [Problem(self.name, f"video file {self.video_path(key, e).name} is missing", key, (e, e))
                    for e in range(self.num_episodes) if not self.video_path(key, e).is_file()]
        arr = self._array(key)
        cf = int(arr.chunks[0])
        present = set(os.listdir(self.path / "data" / key))
        out = []
        for c in range((self.num_frames - 1) // cf + 1):
            name = _chunk_path(self.path, key, arr, c).name
            if name not in present:
                eps = self._eps(c * cf, min(self.num_frames, (c + 1) * cf))
                out.append(Problem(self.name, f"chunk file {name} (frames {c * cf}-{(c + 1) * cf - 1}) is missing",
                                   key, eps))
        return out

    def set_attributes(self, **values: Any) -> None:
        """Store extra JSON attributes (stats, notes) under the writer lock; the commit record is untouched."""
        bad = _RESERVED.intersection(values)
        if bad:
            raise DatasetError(self.name, f"attributes {sorted(bad)} are managed by the writer")
        lock = _WriterLock(self.path, self.name)
        try:
            meta = _read_root(self.path, self.name)
            meta["attributes"][ATTR].update(values)
            _write_root(self.path, meta, durable=True)
        finally:
            lock.release()
        self.refresh()

    def writer(self, **kwargs: Any) -> EpisodeWriter:
        """An EpisodeWriter appending to this dataset."""
        return EpisodeWriter(self.path, **kwargs)

    def __repr__(self) -> str:
        return (f"EpisodeStore('{self.name}', episodes={self.num_episodes}, frames={self.num_frames}, "
                f"fps={self.fps:g}, features={list(self.features)})")


def _walk_files(path: Path) -> Iterator[os.DirEntry[str]]:
    stack = [str(path)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif e.is_file(follow_symlinks=False):
                    yield e


def _fsync_tree(path: Path) -> None:
    dirs = {str(path)}
    for e in _walk_files(path):
        fd = os.open(e.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        dirs.add(os.path.dirname(e.path))
    for d in sorted(dirs, key=len, reverse=True):
        _fsync_dir(d)


def _write_root(path: Path, meta: dict[str, Any], durable: bool) -> None:
    _put_atomic(str(path / "zarr.json"), json.dumps(meta, indent=2).encode(), durable)
    if durable:
        _fsync_dir(path)


def validate(path: str | os.PathLike[str], data: bool = True) -> list[Problem]:
    """Problems of a dataset, including those that prevent opening it; empty when it is sound."""
    if not Path(path).exists():
        raise DatasetError(str(path), "does not exist")
    try:
        store = EpisodeStore(path)
    except DatasetError as e:
        # report every structural problem, not only the first
        try:
            h = _parse_header(_read_root(Path(path), str(path))["attributes"][ATTR], str(path))
        except DatasetError as e2:
            return [e2.problem]
        ro = LocalStore(Path(path), read_only=True)
        problems, _ = _structure_problems(str(path), h, {},
                                          lambda n: zarr.open_array(store=ro, path=n, mode="r"))
        return problems or [e.problem]
    return store.validate(data)


# ------------------------------------------------------------------------------------------------------ creation
def _create(path: Path, name: str, features: Mapping[str, Feature], fps: float, storage: StorageOptions,
            extra: Mapping[str, Any] | None = None) -> bool:
    """Build an empty store beside `path` and rename it into place; False when another process created it first."""
    if not features:
        raise DatasetError(name, "needs at least one feature")
    for key, f in features.items():
        if not _KEY_RE.match(key):
            raise DatasetError(name, "is not a valid key (letters, digits, '_', '.', '-'; no '/')", key=key)
        if not isinstance(f, Feature):
            raise DatasetError(name, f"spec must be a Feature, got {type(f).__name__}", key=key)
    if not fps > 0:
        raise DatasetError(name, f"fps must be positive, got {fps}")
    for key in storage.video:
        if key not in features:
            raise DatasetError(name, f"is named for video storage but is not a feature (features: "
                                     f"{', '.join(features)})", key=key)
        why = storage.video_codec.problem(features[key].shape, features[key].dtype)
        if why:
            raise DatasetError(name, why, key=key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.creating-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    zs = _SafeStore(tmp)
    try:
        root = zarr.open_group(store=zs, mode="w-", zarr_format=3)
        root.create_group("data")
        root.create_group("meta")
        for key, f in features.items():
            if f.is_string:
                zarr.create_array(store=zs, name=f"meta/strings/{key}", shape=(0,), chunks=(_META_CHUNK,),
                                  dtype="int32", compressors=[ZstdCodec(level=3, checksum=True)], fill_value=0,
                                  chunk_key_encoding=_CHUNK_KEY)
                continue
            if key in storage.video:
                continue
            zarr.create_array(
                store=zs, name=f"data/{key}", shape=(0, *f.shape), chunks=(storage.frames_per_chunk(key, f), *f.shape),
                dtype=f.dtype, compressors=storage.codecs(f), fill_value=False if f.dtype == "bool" else 0,
                chunk_key_encoding=_CHUNK_KEY, dimension_names=("time", *(f.axes or (None,) * len(f.shape))))
        zarr.create_array(store=zs, name="meta/episode_ends", shape=(0,), chunks=(_META_CHUNK,), dtype="int64",
                          compressors=[ZstdCodec(level=3, checksum=True)], fill_value=0, chunk_key_encoding=_CHUNK_KEY)
        zarr.create_array(store=zs, name="meta/checksums", shape=(0, len(features)),
                          chunks=(_META_CHUNK, len(features)), dtype="uint32", fill_value=0,
                          compressors=[ZstdCodec(level=3, checksum=True)], chunk_key_encoding=_CHUNK_KEY,
                          attributes={"keys": list(features)})
        meta = json.loads((tmp / "zarr.json").read_bytes())
        meta.setdefault("attributes", {})[ATTR] = {
            "schema_version": SCHEMA_VERSION, "fps": float(fps),
            "features": {k: f.to_dict() for k, f in features.items()},
            "episodes": 0, "frames": 0, "sessions": [], **(extra or {}),
        }
        if storage.video:
            meta["attributes"][ATTR]["video"] = {k: storage.video_codec.to_dict() for k in storage.video}
        if any(f.is_string for f in features.values()):
            meta["attributes"][ATTR]["strings"] = {k: [] for k, f in features.items() if f.is_string}
        _write_root(tmp, meta, durable=False)
        try:
            os.rename(tmp, path)
        except OSError:
            if path.exists():
                return False
            raise
        return True
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------- writer
def _coerce(value: Any, f: Feature, block: bool, where: dict[str, Any]) -> np.ndarray:
    """A frame (or block of frames) as a new array of the feature's dtype; refuses lossy or wrong-shaped input."""
    if hasattr(value, "detach"):  # torch tensor, possibly on a GPU
        value = value.detach().cpu().numpy()
    x = np.asarray(value)
    if (x.shape[1:] if block and x.ndim else x.shape) != f.shape or (block and x.ndim == 0):
        what = f"(T, {', '.join(map(str, f.shape))})" if block else str(f.shape)
        raise FrameError(**where, what=f"shape {x.shape} but the feature expects {what}")
    dst = np.dtype(f.dtype)
    if x.dtype != dst:
        src = x.dtype
        ok = False
        if dst.kind == "f":
            ok = src.kind in "fiub"
        elif dst.kind in "iu":
            if np.can_cast(src, dst, "safe"):
                ok = True
            elif src.kind in "iu":
                info = np.iinfo(dst)
                ok = x.size == 0 or (int(x.min()) >= info.min and int(x.max()) <= info.max)
        elif dst.kind == "b":
            ok = False
        if not ok:
            raise FrameError(**where, what=f"dtype {src} cannot be stored as {dst} without loss")
    return np.array(x, dtype=dst, copy=True, order="C")


class EpisodeWriter:
    """Appends episodes to a dataset (creating it if absent); an episode is visible only once `end_episode` commits it.

    One writer per store at a time (flock). A frame is a dict key -> array with every feature; values are checked
    against the spec (shape exactly, dtype castable without loss) and rejected with an error naming key and episode.
    Full chunks are compressed and written by one background thread (at most `max_pending` blocks queued), so
    `add_frame` costs a copy and a checksum update, not a compression; `end_episode` waits for them, then commits.
    """

    def __init__(self, path: str | os.PathLike[str], features: Mapping[str, Feature] | None = None,
                 fps: float | None = None, *, provenance: Provenance | Mapping[str, Any] | None = None,
                 storage: StorageOptions | None = None, durable: bool = True, max_pending: int = 16) -> None:
        self.path = Path(path)
        self.name = str(path)
        self.durable = durable
        self.max_pending = max_pending
        self._io: ThreadPoolExecutor | None = None
        self._inflight: deque[Future[None]] = deque()
        if not self.path.exists():
            if features is None or fps is None:
                raise DatasetError(self.name, "does not exist; give features and fps to create it")
            _create(self.path, self.name, features, fps, storage or StorageOptions())
        self._lock: _WriterLock | None = _WriterLock(self.path, self.name)
        try:
            self._open(features, fps)
        except BaseException:
            self._lock.release()
            self._lock = None
            raise
        if isinstance(provenance, Provenance):
            provenance = provenance.to_dict()
        self._session = {**Provenance().to_dict(), **(provenance or {})}
        self._session_added = False

    def _open(self, features: Mapping[str, Feature] | None, fps: float | None) -> None:
        self._meta = _read_root(self.path, self.name)
        h = _parse_header(self._meta["attributes"][ATTR], self.name)
        # schema checks come before anything is touched: a mismatch leaves the store byte-for-byte unchanged
        if features is not None:
            _check_same_features(h.features, dict(features), self.name, "the writer", h.episodes, "; nothing written")
        if fps is not None and float(fps) != h.fps:
            raise SchemaMismatchError(self.name, f"fps is {h.fps:g} in the store but {float(fps):g} in the writer; "
                                                  "nothing written",
                                      episodes=h.episodes)
        self.features = h.features
        self.fps = h.fps
        self.video = h.video  # key -> codec of the features stored as per-episode MP4
        self._zs = _SafeStore(self.path, durable=self.durable)
        arrays: dict[str, Any] = {}

        def open_rw(name: str) -> Any:
            return zarr.open_array(store=self._zs, path=name, mode="r+").with_config({"write_empty_chunks": True})

        problems, _ = _structure_problems(self.name, h, arrays, open_rw)
        if problems:
            p = problems[0]
            raise DatasetCorruptError(p.dataset, p.what + "; not appending (run `robolearn dataset validate`)",
                                      key=p.key, episodes=p.episodes)
        self._arrays = arrays
        self._ends = open_rw("meta/episode_ends")
        self._crc_arr = open_rw("meta/checksums")
        self._str_arr = {k: open_rw(f"meta/strings/{k}") for k, f in self.features.items() if f.is_string}
        self._vocab = {k: list(v) for k, v in h.strings.items()}
        if list(self._crc_arr.attrs.get("keys", [])) != list(self.features):
            raise DatasetCorruptError(self.name, "meta/checksums keys do not match the features")
        self._episodes, self._frames = h.episodes, h.frames
        self._discard_tail()
        self._chunk = {k: int(a.chunks[0]) for k, a in self._arrays.items()}
        self._reset_episode()

    def _discard_tail(self) -> None:
        """Drop what a killed writer left beyond the commit record: `*.partial` files and uncommitted rows/videos."""
        for e in list(_walk_files(self.path)):
            if e.name.endswith(".partial"):
                os.unlink(e.path)
        for key in self.video:
            d = self.path / "videos" / key
            for f in (d.iterdir() if d.is_dir() else ()):
                if f.suffix == ".mp4" and f.stem.isdigit() and int(f.stem) >= self._episodes:
                    f.unlink()
        for arr in self._arrays.values():
            if arr.shape[0] != self._frames:
                arr.resize((self._frames, *arr.shape[1:]))
        for arr in (self._ends, self._crc_arr, *self._str_arr.values()):
            if arr.shape[0] != self._episodes:
                arr.resize((self._episodes, *arr.shape[1:]))

    def _reset_episode(self) -> None:
        self._enc: dict[str, VideoWriter] = {}  # video keys: the episode's encoder (used on the writer thread)
        self._video_files: dict[str, tuple[Path, int]] = {}  # video keys supplied as finished files (merge)
        self._pending: dict[str, list[np.ndarray]] = {k: [] for k in self.features}
        self._pending_n = dict.fromkeys(self.features, 0)
        self._written = dict.fromkeys(self.features, self._frames)  # next frame index to write per key
        self._crc = dict.fromkeys(self.features, 0)
        self._text: dict[str, str | None] = {k: None for k in self._str_arr}  # string keys: the episode's text
        self._n = 0

    # ---- state
    @property
    def episode_index(self) -> int:
        """Index the episode in progress will get when committed."""
        return self._episodes

    @property
    def num_episodes(self) -> int:
        """Committed episodes."""
        return self._episodes

    @property
    def frames_in_episode(self) -> int:
        """Frames added to the episode in progress."""
        return self._n

    def _where(self, key: str | None, frame: int | None = None) -> dict[str, Any]:
        return {"dataset": self.name, "key": key, "episodes": self._episodes, "frame": frame}

    def _check_keys(self, keys: Any) -> None:
        if self._lock is None:
            raise DatasetError(self.name, "writer is closed")
        keys = set(keys) | set(self._video_files)
        for k in self.features:
            if k not in keys:
                raise FrameError(**self._where(k, self._n), what="missing from the frame")
        for k in sorted(keys - set(self.features)):
            raise FrameError(**self._where(k, self._n),
                             what=f"is not a feature of this dataset (features: {', '.join(self.features)})")

    # ---- writing
    def add_frame(self, frame: Mapping[str, Any]) -> None:
        """Append one frame (key -> array of the feature's shape) to the episode in progress."""
        self._check_keys(frame.keys())
        for k in self._str_arr:
            self._set_text(k, [frame[k]])
        xs = {k: _coerce(frame[k], f, False, self._where(k, self._n)) for k, f in self.features.items()
              if k not in self._video_files and not f.is_string}
        for k, x in xs.items():
            self._crc[k] = zlib.crc32(x.data, self._crc[k])  # of the frames given (a video's is replaced on commit)
            if k in self.video:
                self._submit(self._encode, k, x[None], self._episodes)
                continue
            self._pending[k].append(x[None])
            self._pending_n[k] += 1
        self._n += 1
        for k in self._arrays:
            if (self._written[k] + self._pending_n[k]) % self._chunk[k] == 0:
                self._flush(k, final=False)

    def add_frames(self, block: Mapping[str, Any]) -> None:
        """Append T frames at once (key -> (T, *shape)) to the episode in progress."""
        self._check_keys(block.keys())
        for k in self._str_arr:
            v = block[k]
            self._set_text(k, [v] if isinstance(v, str | bytes) else list(np.asarray(v, dtype=object).reshape(-1)))
        xs = {k: _coerce(block[k], f, True, self._where(k, self._n)) for k, f in self.features.items()
              if k not in self._video_files and not f.is_string}
        lengths = {k: len(x) for k, x in xs.items()}
        for k, t in lengths.items():
            if t != next(iter(lengths.values())):
                raise FrameError(**self._where(k, self._n), what=f"block lengths differ between keys: {lengths}")
        for k, x in xs.items():
            self._crc[k] = zlib.crc32(x.data, self._crc[k])
            if len(x) and k in self.video:
                self._submit(self._encode, k, x, self._episodes)
            elif len(x):
                self._pending[k].append(x)
                self._pending_n[k] += len(x)
        self._n += next(iter(lengths.values()), 0)
        for k in self._arrays:
            self._flush(k, final=False)

    def _set_text(self, key: str, values: Sequence[Any]) -> None:
        """Check the texts given for a string feature: one str, the same in every frame of the episode."""
        for v in values:
            if isinstance(v, np.ndarray) and v.shape == ():
                v = v.item()
            if isinstance(v, bytes):
                try:
                    v = v.decode()
                except UnicodeDecodeError:
                    raise FrameError(**self._where(key, self._n), what="bytes are not UTF-8 text") from None
            if not isinstance(v, str):
                raise FrameError(**self._where(key, self._n), what=f"expects a str, got {type(v).__name__}")
            if self._text[key] is None:
                self._text[key] = v
                self._crc[key] = zlib.crc32(v.encode())
            elif v != self._text[key]:
                raise FrameError(**self._where(key, self._n),
                                 what=f"text changed within the episode ({self._text[key]!r} -> {v!r}); a string "
                                      "feature holds one text per episode")

    def use_video_file(self, key: str, path: str | os.PathLike[str], frames: int) -> None:
        """Supply a video feature of the episode in progress as a finished MP4 of `frames` frames (copied as is).

        Merge/split/convert use it to move a video between stores with the same codec settings without
        re-encoding (no generation loss); the episode's other features come through `add_frames` as usual.
        """
        if key not in self.video:
            raise DatasetError(self.name, "is not stored as video here; add its frames instead", key=key)
        if self._n and self._n != frames:
            raise FrameError(**self._where(key), what=f"video file has {frames} frames, the episode {self._n}")
        self._video_files[key] = (Path(path), int(frames))

    def _submit(self, fn: Any, *args: Any) -> None:
        """Run `fn(*args)` on the writer thread after everything queued before it (bounded queue)."""
        if self._io is None:
            self._io = ThreadPoolExecutor(1, thread_name_prefix="robolearn-writer")
        self._reap(block=False)
        self._inflight.append(self._io.submit(fn, *args))
        while len(self._inflight) > self.max_pending:  # back-pressure: bounded memory if the disk is slow
            self._inflight.popleft().result()

    def _encode(self, key: str, frames: np.ndarray, episode: int) -> None:
        """Writer thread: encode frames of a video feature into the episode's `.partial` MP4."""
        try:
            enc = self._enc.get(key)
            if enc is None:
                partial = _video_path(self.path, key, episode).with_suffix(".mp4.partial")
                enc = self._enc[key] = VideoWriter(partial, self.fps, self.features[key].shape, self.video[key])
            enc.add(frames)
        except Exception as e:  # noqa: BLE001 - reported where the recorder sees it
            raise DatasetError(self.name, f"encoding video failed: {type(e).__name__}: {e}", key=key,
                               episodes=episode) from e

    def _finish_video(self, key: str, episode: int) -> None:
        """Writer thread: close the episode's MP4 (or copy the supplied file) and rename it to its final name."""
        final = _video_path(self.path, key, episode)
        partial = final.with_suffix(".mp4.partial")
        try:
            if key in self._video_files:
                final.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self._video_files[key][0], partial)
            else:
                self._enc.pop(key).finish()
            if self.durable:
                fd = os.open(partial, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            os.replace(partial, final)
            if self.durable:
                _fsync_dir(final.parent)
        except Exception as e:  # noqa: BLE001
            raise DatasetError(self.name, f"finishing video {final.name} failed: {type(e).__name__}: {e}", key=key,
                               episodes=episode) from e

    def _abort_videos(self) -> None:
        for enc in self._enc.values():
            enc.abort()
        self._enc = {}

    def _flush(self, key: str, final: bool) -> None:
        """Queue pending frames of one key for writing beyond the committed length: whole chunks, or all if final."""
        n = self._pending_n[key]
        start = self._written[key]
        end = start + n
        cut = end if final else (end // self._chunk[key]) * self._chunk[key]
        if n == 0 or cut <= start:
            return
        pend = self._pending[key]
        block = pend[0] if len(pend) == 1 else np.concatenate(pend)
        rest = block[cut - start:]
        self._pending[key] = [rest] if len(rest) else []
        self._pending_n[key] = len(rest)
        self._written[key] = cut
        self._submit(self._write, key, start, cut, block[: cut - start], self._episodes)

    def _write(self, key: str, start: int, stop: int, data: np.ndarray, episode: int) -> None:
        """Runs on the writer thread, one block after another, in order."""
        try:
            arr = self._arrays[key]
            if arr.shape[0] < stop:
                arr.resize((stop, *arr.shape[1:]))
            arr[start:stop] = data
        except Exception as e:  # noqa: BLE001 - reported where the recorder sees it
            raise DatasetError(self.name, f"writing frames {start}-{stop - 1} failed: {type(e).__name__}: {e}",
                               key=key, episodes=episode) from e

    def _reap(self, block: bool) -> None:
        """Raise the first error of finished background writes; with `block`, wait for all of them."""
        while self._inflight and (block or self._inflight[0].done()):
            self._inflight.popleft().result()

    def end_episode(self) -> int:
        """Write the rest of the episode, then commit it; returns its index."""
        if self._lock is None:
            raise DatasetError(self.name, "writer is closed")
        if self._n == 0 and self._video_files:  # every feature came as a finished video file
            self._n = next(iter(self._video_files.values()))[1]
        if self._n == 0:
            raise DatasetError(self.name, "has no frames; nothing to commit", episodes=self._episodes)
        for k, (_, n) in self._video_files.items():
            if n != self._n:
                raise FrameError(**self._where(k), what=f"video file has {n} frames, the episode {self._n}")
        end = self._frames + self._n
        for k in self._arrays:
            self._flush(k, final=True)
        for k in self.video:
            self._submit(self._finish_video, k, self._episodes)
        self._reap(block=True)
        for k in self.video:
            self._crc[k] = _file_crc(_video_path(self.path, k, self._episodes))
        for arr in self._arrays.values():
            if arr.shape[0] != end:
                arr.resize((end, *arr.shape[1:]))
        e = self._episodes
        self._ends.resize((e + 1,))
        self._ends[e] = end
        self._crc_arr.resize((e + 1, len(self.features)))
        self._crc_arr[e] = np.array([self._crc[k] for k in self.features], np.uint32)
        vocab = {k: list(v) for k, v in self._vocab.items()}
        for k, arr in self._str_arr.items():
            text = self._text[k]
            assert text is not None  # every frame carries every key
            if text not in vocab[k]:
                vocab[k].append(text)
            arr.resize((e + 1,))
            arr[e] = vocab[k].index(text)
        if self.durable:
            self._zs.sync()
        # the commit: one atomic replace of the root zarr.json
        attrs = self._meta["attributes"][ATTR]
        sessions = list(attrs.get("sessions") or [])
        if not self._session_added:
            sessions.append({"first_episode": e, **self._session})
        new = {**attrs, "episodes": e + 1, "frames": end, "sessions": sessions}
        if vocab:
            new["strings"] = vocab
        meta = {**self._meta, "attributes": {**self._meta["attributes"], ATTR: new}}
        _write_root(self.path, meta, self.durable)
        self._meta, self._session_added, self._vocab = meta, True, vocab
        self._episodes, self._frames = e + 1, end
        self._reset_episode()
        return e

    def discard_episode(self) -> None:
        """Drop the episode in progress; what was already streamed stays invisible and is overwritten next."""
        try:
            self._reap(block=True)
        finally:
            self._inflight.clear()
            self._abort_videos()
            self._reset_episode()

    def add_episode(self, data: Mapping[str, Any]) -> int:
        """Append and commit a whole episode (key -> (T, *shape)); returns its index."""
        if self._n:
            raise DatasetError(self.name, "an episode is in progress; end or discard it first", episodes=self._episodes)
        try:
            self.add_frames(data)
        except BaseException:
            with contextlib.suppress(Exception):
                self.discard_episode()
            raise
        return self.end_episode()

    def close(self) -> None:
        """Discard any episode in progress, trim the uncommitted tail and release the lock."""
        if self._lock is None:
            return
        try:
            for f in self._inflight:
                f.exception()  # wait; errors of an episode that is being discarded do not matter
            self._inflight.clear()
            if self._io is not None:
                self._io.shutdown()
                self._io = None
            self._abort_videos()
            self._reset_episode()
            self._discard_tail()
        finally:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _check_same_features(have: Mapping[str, Feature], want: Mapping[str, Feature], dataset: str, other: str,
                         episode: int | None = None, suffix: str = "") -> None:
    for k in have:
        if k not in want:
            raise SchemaMismatchError(dataset, f"is a feature of the store but not of {other}{suffix}", key=k,
                                      episodes=episode)
    for k, f in want.items():
        if k not in have:
            raise SchemaMismatchError(dataset, f"is a feature of {other} but not of the store{suffix}", key=k,
                                      episodes=episode)
        if have[k] != f:
            diffs = [n for n in ("shape", "dtype", "units", "names", "axes") if getattr(have[k], n) != getattr(f, n)]
            verb = "differs" if len(diffs) == 1 else "differ"
            raise SchemaMismatchError(dataset, f"{', '.join(diffs)} {verb}: the store has {_spec(have[k], diffs)}, "
                                               f"{other} has {_spec(f, diffs)}{suffix}", key=k, episodes=episode)


def _spec(f: Feature, fields: Sequence[str]) -> str:
    return " ".join(f"{n}={getattr(f, n)!r}" for n in fields) if fields else f.describe()


# ----------------------------------------------------------------------------------------- merge / split / convert
def _copy_episode(src: EpisodeStore, episode: int, w: EpisodeWriter, crcs: dict[str, np.ndarray],
                  block_bytes: int = 64 << 20) -> None:
    start, stop = src.episode_bounds(episode)
    for k in src.features:  # a video is checked before use: its recorded checksum is the file's
        if src.is_video(k) and k in crcs and _file_crc(src.video_path(k, episode)) != int(crcs[k][episode]):
            raise DatasetCorruptError(src.name, "video file does not match its recorded checksum; not copied", key=k,
                                      episodes=episode)
    # same codec on both sides: the MP4 moves as is (no re-encoding, no generation loss)
    files = [k for k in src.features if src.is_video(k) and w.video.get(k) == src._h.video[k]]
    for k in files:
        w.use_video_file(k, src.video_path(k, episode), stop - start)
    keys = [k for k in src.features if k not in files]
    step = max(1, block_bytes // max(1, sum(src.features[k].frame_bytes for k in keys)))
    for lo in range(start, stop, step) if keys else ():
        w.add_frames({k: src.read(k, lo, min(stop, lo + step)) for k in keys})
    for k in keys:
        if k in crcs and not src.is_video(k) and int(crcs[k][episode]) != w._crc[k]:
            w.discard_episode()
            raise DatasetCorruptError(src.name, "data does not match its recorded checksum; not copied", key=k,
                                      episodes=episode)
    w.end_episode()


def _derive(dest: str | os.PathLike[str], sources: Sequence[tuple[EpisodeStore, Sequence[int]]],
            storage: StorageOptions | None, lineage: dict[str, Any]) -> EpisodeStore:
    """Copy episodes of sources into a new store built beside `dest` and renamed into place when complete."""
    dest_p = Path(dest)
    if dest_p.exists():
        raise DatasetError(str(dest), "already exists; choose a new path (sources are never modified)")
    first = sources[0][0]
    if storage is None and first._h.video:  # keep the source's videos as videos (copied, not re-encoded)
        storage = StorageOptions(video=tuple(first._h.video), video_codec=next(iter(first._h.video.values())))
    tmp = dest_p.parent / f".{dest_p.name}.building-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        _create(tmp, str(dest), first.features, first.fps, storage or StorageOptions())
        sessions: list[dict[str, Any]] = []
        with EpisodeWriter(tmp, durable=False) as w:
            w.name = str(dest)
            for src, episodes in sources:
                crcs = src.checksums()
                last_session: int | None = None
                for e in episodes:
                    sess = _session_index(src, e)
                    if sess != last_session:
                        base = dict(src.sessions[sess]) if sess is not None else {}
                        base.update(first_episode=w.num_episodes, dataset=src.name)
                        sessions.append(base)
                        last_session = sess
                    _copy_episode(src, e, w, crcs)
        meta = _read_root(tmp, str(dest))
        attrs = meta["attributes"][ATTR]
        attrs["sessions"] = sessions
        lineage_list = [lineage]
        if len(sources) == 1:
            lineage_list = list(first.attributes.get("lineage", [])) + lineage_list
        attrs["lineage"] = lineage_list
        _write_root(tmp, meta, durable=False)
        _fsync_tree(tmp)  # everything on disk before the store appears under its name
        os.rename(tmp, dest_p)
        _fsync_dir(dest_p.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return EpisodeStore(dest)


def _session_index(src: EpisodeStore, episode: int) -> int | None:
    idx = None
    for i, s in enumerate(src.sessions):
        if int(s.get("first_episode", 0)) <= episode:
            idx = i
    return idx


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def merge(dest: str | os.PathLike[str], sources: Sequence[str | os.PathLike[str]],
          storage: StorageOptions | None = None) -> EpisodeStore:
    """Concatenate the episodes of datasets with identical features and fps into a new dataset."""
    if not sources:
        raise DatasetError(str(dest), "merge needs at least one source")
    stores = [s if isinstance(s, EpisodeStore) else EpisodeStore(s) for s in sources]
    for s in stores[1:]:
        _check_same_features(stores[0].features, s.features, s.name, f"'{stores[0].name}'")
        if s.fps != stores[0].fps:
            raise SchemaMismatchError(s.name, f"fps {s.fps:g} differs from {stores[0].fps:g} in '{stores[0].name}'")
    return _derive(dest, [(s, range(s.num_episodes)) for s in stores], storage,
                   {"op": "merge", "sources": [s.name for s in stores], "at": _now()})


def split(source: str | os.PathLike[str], dest_a: str | os.PathLike[str], dest_b: str | os.PathLike[str],
          fraction: float = 0.9, seed: int = 0) -> tuple[EpisodeStore, EpisodeStore]:
    """Shuffle episodes with `seed`; round(fraction * E) (1 to E - 1) go to dest_a, the rest to dest_b."""
    src = source if isinstance(source, EpisodeStore) else EpisodeStore(source)
    if not 0.0 < fraction < 1.0:
        raise DatasetError(src.name, f"split fraction must be in (0, 1), got {fraction}")
    perm = np.random.default_rng(seed).permutation(src.num_episodes)
    if src.num_episodes < 2:
        raise DatasetError(src.name, f"has {src.num_episodes} episode(s); a split needs at least 2")
    n_a = min(max(int(round(fraction * src.num_episodes)), 1), src.num_episodes - 1)  # neither side empty
    a, b = sorted(perm[:n_a].tolist()), sorted(perm[n_a:].tolist())
    for p in (dest_a, dest_b):
        if Path(p).exists():
            raise DatasetError(str(p), "already exists; choose a new path (sources are never modified)")
    info = {"op": "split", "source": src.name, "fraction": fraction, "seed": seed, "at": _now()}
    sa = _derive(dest_a, [(src, a)], None, {**info, "episodes": a})
    sb = _derive(dest_b, [(src, b)], None, {**info, "episodes": b})
    return sa, sb


def convert(source: str | os.PathLike[str], dest: str | os.PathLike[str], storage: StorageOptions) -> EpisodeStore:
    """Copy a dataset with other chunking or compression; stats and provenance are kept."""
    src = source if isinstance(source, EpisodeStore) else EpisodeStore(source)
    out = _derive(dest, [(src, range(src.num_episodes))], storage,
                  {"op": "convert", "source": src.name, "storage": asdict(storage), "at": _now()})
    if "stats" in src.attributes:
        out.set_attributes(stats=src.attributes["stats"])
    return out
