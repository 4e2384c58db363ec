"""ROS bag import: ROS 2 bags (MCAP or sqlite3 storage) and ROS 1 bags through `rosbags`, resampled to a fixed rate.

A YAML map says which topics become which features::

    fps: 30
    align: hold            # hold (default) or linear
    stamp: receive         # receive (bag time, default) or header (msg.header.stamp where the message has one)
    topics:
      /joint_states:  {feature: observation.state, field: position, units: rad}
      /cmd_vel:       {feature: action, field: [linear.x, linear.y, angular.z]}
      /camera/image/compressed: {feature: observation.images.front, image: true, resize: [96, 96]}

Each bag (a file or a rosbag2 directory) becomes one episode. Alignment, documented: the episode spans from the
latest first message over all mapped topics to the earliest last message, so every feature has data at every
frame; frame k is at t0 + k / fps. `hold` gives each feature its latest message at or before that time
(zero-order hold: what a controller would have seen); `linear` interpolates numeric features between the two
surrounding messages (images are always held). `field` is an attribute path on the message (a list concatenates
several); numeric arrays are flattened to float32.
"""

from __future__ import annotations

import io
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from robolearn.core.errors import require
from robolearn.data.store import DatasetError, EpisodeStore, EpisodeWriter, Feature, Provenance, StorageOptions


@dataclass
class TopicMap:
    """One topic -> one feature."""

    topic: str
    feature: str
    fields: list[str] = field(default_factory=list)  # attribute paths; empty: the message itself (a number)
    image: bool = False
    resize: tuple[int, int] | None = None  # (H, W) for images
    units: str = ""
    names: list[str] | None = None


@dataclass
class BagMap:
    """A parsed topic map."""

    fps: float
    topics: list[TopicMap]
    align: str = "hold"
    stamp: str = "receive"
    source: str = "<map>"


_TOP = {"fps", "align", "stamp", "topics", "description"}
_TOPIC = {"feature", "field", "image", "resize", "units", "names"}


def load_bag_map(path_or_dict: str | os.PathLike[str] | dict[str, Any]) -> BagMap:
    """Parse a topic map (YAML file or dict); unknown keys are errors naming the file and topic."""
    if isinstance(path_or_dict, dict):
        raw, src = path_or_dict, "<map>"
    else:
        src = str(path_or_dict)
        try:
            raw = yaml.safe_load(Path(path_or_dict).read_text()) or {}
        except OSError as e:
            raise DatasetError(src, f"cannot read the topic map: {e}") from None
    if not isinstance(raw, dict) or set(raw) - _TOP:
        raise DatasetError(src, f"a topic map holds {sorted(_TOP)}; unknown: {sorted(set(raw) - _TOP)}")
    if "fps" not in raw or not raw.get("topics"):
        raise DatasetError(src, "a topic map needs fps and at least one topic")
    if raw.get("align", "hold") not in ("hold", "linear") or raw.get("stamp", "receive") not in ("receive", "header"):
        raise DatasetError(src, "align is hold or linear; stamp is receive or header")
    topics = []
    for topic, spec in raw["topics"].items():
        spec = spec or {}
        bad = set(spec) - _TOPIC
        if bad or "feature" not in spec:
            raise DatasetError(src, f"topic {topic}: needs 'feature'; known keys {sorted(_TOPIC)}, "
                                    f"unknown {sorted(bad)}")
        f = spec.get("field", [])
        resize = spec.get("resize")
        topics.append(TopicMap(topic, str(spec["feature"]), [f] if isinstance(f, str) else list(f),
                               bool(spec.get("image", False)), tuple(resize) if resize else None,
                               str(spec.get("units", "")), spec.get("names")))
    if len({t.feature for t in topics}) != len(topics):
        raise DatasetError(src, "two topics map to the same feature")
    return BagMap(float(raw["fps"]), topics, raw.get("align", "hold"), raw.get("stamp", "receive"), src)


def _get(msg: Any, path: str) -> Any:
    for part in path.split("."):
        msg = getattr(msg, part)
    return msg


def _numeric(msg: Any, fields: Sequence[str], where: str) -> np.ndarray:
    parts = [msg] if not fields else [_get(msg, f) for f in fields]
    out = []
    for p in parts:
        try:
            out.append(np.asarray(p, dtype=np.float64).reshape(-1))
        except (TypeError, ValueError):
            raise DatasetError(where, f"field value of type {type(p).__name__} is not numeric; "
                                      "name a numeric field (e.g. position, linear.x)") from None
    return np.concatenate(out) if out else np.zeros(0)


def _image(msg: Any, resize: tuple[int, int] | None, where: str) -> np.ndarray:
    from PIL import Image

    if hasattr(msg, "format") and hasattr(msg, "data") and not hasattr(msg, "encoding"):  # CompressedImage
        img = Image.open(io.BytesIO(bytes(msg.data))).convert("RGB")
    else:
        enc = str(msg.encoding).lower()
        data = np.frombuffer(bytes(msg.data), np.uint8)
        h, w, step = int(msg.height), int(msg.width), int(msg.step)
        rows = data.reshape(h, step)
        if enc in ("rgb8", "bgr8"):
            arr = rows[:, : w * 3].reshape(h, w, 3)
            arr = arr[..., ::-1] if enc == "bgr8" else arr
        elif enc in ("mono8", "8uc1"):
            arr = np.repeat(rows[:, :w, None], 3, axis=-1)
        elif enc in ("rgba8", "bgra8"):
            arr = rows[:, : w * 4].reshape(h, w, 4)[..., :3]
            arr = arr[..., ::-1] if enc == "bgra8" else arr
        else:
            raise DatasetError(where, f"image encoding '{msg.encoding}' is not supported (rgb8, bgr8, mono8, rgba8)")
        img = Image.fromarray(np.ascontiguousarray(arr))
    if resize is not None:
        img = img.resize((int(resize[1]), int(resize[0])))
    return np.asarray(img)


def _read_bag(path: Path, m: BagMap) -> dict[str, tuple[np.ndarray, list[Any]]]:
    """Topic -> (stamps in ns, decoded values) of the mapped topics."""
    hl = require("rosbags.highlevel", "interop")
    wanted = {t.topic: t for t in m.topics}
    out: dict[str, tuple[list[int], list[Any]]] = {t: ([], []) for t in wanted}
    try:
        reader = hl.AnyReader([path])
        reader.open()
    except Exception as e:  # noqa: BLE001 - rosbags raises several types for unreadable bags
        raise DatasetError(str(path), f"cannot open as a ROS bag: {type(e).__name__}: {e}") from None
    try:
        conns = [c for c in reader.connections if c.topic in wanted]
        missing = set(wanted) - {c.topic for c in conns}
        if missing:
            have = sorted({c.topic for c in reader.connections})
            raise DatasetError(str(path), f"has no topic {sorted(missing)}; its topics: {have}")
        for conn, t_ns, raw in reader.messages(connections=conns):
            tm = wanted[conn.topic]
            msg = reader.deserialize(raw, conn.msgtype)
            where = f"{path}: {conn.topic}"
            if m.stamp == "header" and hasattr(msg, "header"):
                t_ns = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
            value = _image(msg, tm.resize, where) if tm.image else _numeric(msg, tm.fields, where)
            out[conn.topic][0].append(int(t_ns))
            out[conn.topic][1].append(value)
    finally:
        reader.close()
    result = {}
    for topic, (ts, vals) in out.items():
        if not ts:
            raise DatasetError(str(path), f"topic {topic} has no messages")
        order = np.argsort(np.asarray(ts), kind="stable")
        result[topic] = (np.asarray(ts)[order], [vals[i] for i in order])
    return result


def _resample(ts: np.ndarray, vals: list[Any], grid: np.ndarray, linear: bool, where: str) -> np.ndarray:
    shapes = {np.shape(v) for v in vals}
    if len(shapes) != 1:
        raise DatasetError(where, f"messages change shape within the bag: {sorted(shapes)}")
    if linear:
        x = np.stack(vals).reshape(len(vals), -1).astype(np.float64)
        cols = [np.interp(grid, ts, x[:, j]) for j in range(x.shape[1])]
        return np.stack(cols, -1).reshape(len(grid), *np.shape(vals[0]))
    idx = np.searchsorted(ts, grid, side="right") - 1  # latest message at or before each frame time
    return np.stack([vals[i] for i in idx])


def import_bags(bags: Sequence[str | os.PathLike[str]], dest: str | os.PathLike[str],
                bag_map: BagMap | str | os.PathLike[str] | dict[str, Any],
                storage: StorageOptions | None = None, note: str = "") -> EpisodeStore:
    """One episode per bag into a new dataset at `dest` (built beside it, renamed when complete)."""
    m = bag_map if isinstance(bag_map, BagMap) else load_bag_map(bag_map)
    if Path(dest).exists():
        raise DatasetError(str(dest), "already exists; choose a new path (sources are never modified)")
    if not bags:
        raise DatasetError(str(dest), "no bags given")
    tmp = Path(dest).parent / f".{Path(dest).name}.building-{uuid.uuid4().hex[:8]}"
    dt_ns = 1e9 / m.fps
    writer: EpisodeWriter | None = None
    try:
        for bag in bags:
            data = _read_bag(Path(bag), m)
            t0 = max(int(ts[0]) for ts, _ in data.values())
            t1 = min(int(ts[-1]) for ts, _ in data.values())
            n = int(np.floor((t1 - t0) / dt_ns)) + 1
            if t1 < t0 or n < 1:
                raise DatasetError(str(bag), "the mapped topics do not overlap in time; nothing to align")
            grid = t0 + np.arange(n) * dt_ns
            ep = {}
            feats = {}
            for tm in m.topics:
                ts, vals = data[tm.topic]
                where = f"{bag}: {tm.topic}"
                x = _resample(ts, vals, grid, m.align == "linear" and not tm.image, where)
                if tm.image:
                    feats[tm.feature] = Feature(x.shape[1:], "uint8", axes=("height", "width", "channel"),
                                                description=f"{tm.topic}")
                    ep[tm.feature] = x.astype(np.uint8)
                else:
                    shape = x.shape[1:]
                    names = tuple(tm.names) if tm.names and shape and len(tm.names) == shape[-1] else None
                    feats[tm.feature] = Feature(shape, "float32", units=tm.units, names=names,
                                                description=f"{tm.topic} {','.join(tm.fields)}".strip())
                    ep[tm.feature] = x.astype(np.float32)
            if writer is None:
                prov = Provenance(source="rosbag", note=note, extra={"bags": [str(b) for b in bags], "map": m.source,
                                                                       "align": m.align, "stamp": m.stamp})
                writer = EpisodeWriter(tmp, feats, m.fps, provenance=prov, storage=storage, durable=False)
                writer.name = str(dest)
            writer.add_episode(ep)  # a bag whose messages have other shapes fails here with the key named
        assert writer is not None
        writer.close()
        os.rename(tmp, dest)
    finally:
        if writer is not None:
            writer.close()
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return EpisodeStore(dest)


def is_bag(path: str | os.PathLike[str]) -> bool:
    """A .mcap / .bag / .db3 file, or a rosbag2 directory (metadata.yaml)."""
    p = Path(path)
    return p.suffix in (".mcap", ".bag", ".db3") or (p / "metadata.yaml").is_file()
