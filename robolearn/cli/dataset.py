"""`robolearn dataset info|validate|stats|merge|split|convert PATH ...`: inspect, check and reshape episode stores.

Every command reads only committed episodes; merge, split and convert write a new dataset (built beside the
destination and renamed into place when complete) and never modify their sources.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from robolearn.data.store import DatasetCorruptError, DatasetError, EpisodeStore, StorageOptions
from robolearn.data.video import VideoCodec


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the `dataset` command and its sub-commands."""
    p = sub.add_parser("dataset", help="inspect, validate and reshape datasets", description=__doc__)
    dsub = p.add_subparsers(dest="dataset_command", required=True, metavar="{info,validate,stats,merge,split,convert}")

    q = dsub.add_parser("info", help="episodes, frames, fps, features, provenance, size")
    q.add_argument("path")
    q.add_argument("--json", action="store_true", help="print one JSON object")

    q = dsub.add_parser("validate", help="check every committed episode; one line per problem")
    q.add_argument("path")
    q.add_argument("--quick", action="store_true", help="structure and chunk files only; do not decode data")

    q = dsub.add_parser("stats", help="compute normalization statistics and store them in the dataset")
    q.add_argument("path")
    q.add_argument("--keys", nargs="+", help="only these keys (default: all)")
    q.add_argument("--max-samples", type=int, default=1_000_000, help="values per column kept for quantiles")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--no-save", action="store_true", help="print only; leave the dataset unchanged")

    q = dsub.add_parser("merge", help="concatenate datasets with identical features into a new one")
    q.add_argument("dest")
    q.add_argument("sources", nargs="+")
    _storage_args(q)

    q = dsub.add_parser("split", help="split episodes at random into two new datasets")
    q.add_argument("source")
    q.add_argument("dest_a", help="gets round(fraction * episodes) episodes")
    q.add_argument("dest_b", help="gets the rest")
    q.add_argument("--fraction", type=float, default=0.9)
    q.add_argument("--seed", type=int, default=0)

    q = dsub.add_parser("convert", help="copy with other chunking or compression; import/export LeRobot v3 and "
                                        "ROS bags", description="Copy a dataset with other storage options, or "
                        "convert between formats: a LeRobot v3 directory (meta/info.json) or a ROS bag (.mcap, "
                        ".db3, .bag, or a rosbag2 directory) as the source is detected and imported; --to lerobot "
                        "exports a robolearn dataset.")
    q.add_argument("source")
    q.add_argument("dest")
    q.add_argument("--from", dest="from_format", choices=["auto", "zarr", "lerobot", "rosbag"], default="auto",
                   help="source format (default: detected)")
    q.add_argument("--to", dest="to_format", choices=["zarr", "lerobot"], default="zarr")
    q.add_argument("--topics", help="rosbag: YAML map from topics to features (see robolearn/data/mcap.py)")
    q.add_argument("--bags", nargs="*", default=[], help="rosbag: more bags, one episode each")
    q.add_argument("--task-text", help="lerobot export: task description for every episode (default: session note "
                                       "or task name)")
    q.add_argument("--crf", type=int, default=18,
                   help="H.264 quality (0-51) of video features (--video) and of a lerobot export")
    q.add_argument("--task-key", help="lerobot export: the string feature holding each episode's task (default: "
                                      "'task', or the only string feature)")
    q.add_argument("--no-remux", action="store_true",
                   help="lerobot export: re-encode cameras even when they are stored as H.264 MP4 (default: copy "
                        "their packets)")
    q.add_argument("--chunks-size", type=int, default=1000, help="lerobot export: files per chunk directory")
    q.add_argument("--data-file-mb", type=float, default=100.0,
                   help="lerobot export: a data (and episode metadata) file rolls over past this size")
    q.add_argument("--video-file-mb", type=float, default=200.0,
                   help="lerobot export: a camera's MP4 rolls over past this size")
    _storage_args(q)


def _storage_args(q: argparse.ArgumentParser) -> None:
    d = StorageOptions()
    q.add_argument("--compression", choices=["zstd", "blosc-zstd", "blosc-lz4", "none"], default=d.compression)
    q.add_argument("--level", type=int, default=d.level, help="compression level")
    q.add_argument("--chunk-frames", action="append", default=[], metavar="KEY=N", help="frames per chunk of a key")
    q.add_argument("--chunk-bytes", type=int, default=d.chunk_bytes, help="target uncompressed bytes per chunk")
    q.add_argument("--image-chunk-frames", type=int, default=d.max_image_chunk_frames, help="cap for image chunks")
    q.add_argument("--video", action="append", default=[], metavar="KEY",
                   help="store this camera key as per-episode MP4 (H.264 with --crf, --gop); repeatable")
    q.add_argument("--gop", type=int, default=VideoCodec().gop, help="video: keyframe interval in frames")
    q.add_argument("--pix-fmt", choices=["yuv420p", "yuv444p"], default=VideoCodec().pix_fmt,
                   help="video: chroma format (yuv444p with --crf 0 is lossless)")


def _storage(args: argparse.Namespace) -> StorageOptions:
    chunks: dict[str, int] = {}
    for item in args.chunk_frames:
        key, _, n = item.partition("=")
        if not n.isdigit() or int(n) <= 0:
            raise DatasetError(getattr(args, "source", args.dest), f"--chunk-frames wants KEY=N, got '{item}'")
        chunks[key] = int(n)
    try:
        codec = VideoCodec(crf=getattr(args, "crf", 18), gop=args.gop, pix_fmt=args.pix_fmt)
    except ValueError as e:
        raise DatasetError(getattr(args, "source", args.dest), str(e)) from None
    return StorageOptions(compression=args.compression, level=args.level, chunk_frames=chunks,
                          chunk_bytes=args.chunk_bytes, max_image_chunk_frames=args.image_chunk_frames,
                          video=tuple(args.video), video_codec=codec)


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _fail_on(problems: list[Any], hint: str) -> None:
    if problems:
        p = problems[0]
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise DatasetCorruptError(p.dataset, f"{p.what}{more}; {hint}", key=p.key, episodes=p.episodes)


def info(path: str, as_json: bool = False) -> int:
    """Print what a dataset holds."""
    s = EpisodeStore(path)
    lengths = np.diff(np.concatenate([[0], s.episode_ends]))
    size = s.size_on_disk()
    raw = s.num_frames * sum(f.frame_bytes for f in s.features.values())
    stats = s.attributes.get("stats")
    if as_json:
        print(json.dumps({
            "dataset": s.name, "episodes": s.num_episodes, "frames": s.num_frames, "fps": s.fps,
            "bytes_on_disk": size, "bytes_raw": raw,
            "features": {k: {**f.to_dict(), "chunk_frames": s.chunk_frames(k), "codec": s.storage(k)}
                         for k, f in s.features.items()},
            "sessions": s.sessions, "lineage": s.attributes.get("lineage", []),
            "stats_episodes": stats.get("episodes") if stats else None,
        }))
    else:
        print(f"dataset   {s.name}")
        print(f"episodes  {s.num_episodes}    frames {s.num_frames}    fps {s.fps:g}    "
              f"duration {s.num_frames / s.fps:.1f} s")
        if len(lengths):
            print(f"length    min {lengths.min()} / mean {lengths.mean():.1f} / max {lengths.max()} frames")
        ratio = f", {raw / size:.1f}x compressed" if size else ""
        print(f"size      {_size(size)} on disk ({_size(raw)} raw{ratio})")
        print()
        rows = [["key", "dtype", "shape", "units", "chunk", "codec", "names"]]
        for k, f in s.features.items():
            units = f.units if isinstance(f.units, str) else ",".join(f.units)
            names = ",".join(f.names or ()) or ",".join(f.axes or ())
            rows.append([k, f.dtype, str(f.shape), units or "-", str(s.chunk_frames(k)), s.storage(k),
                         names if len(names) <= 40 else names[:37] + "..."])
        print("\n".join(_table(rows)))
        print()
        if stats:
            fresh = "current" if stats.get("episodes") == s.num_episodes else \
                f"STALE: {s.num_episodes - int(stats.get('episodes', 0))} episodes added since"
            print(f"stats     computed {stats.get('computed', '?')} over {stats.get('episodes')} episodes ({fresh})")
        else:
            print(f"stats     none (run: robolearn dataset stats {s.name})")
        print("sessions")
        for i, sess in enumerate(s.sessions):
            first = int(sess.get("first_episode", 0))
            last = (int(s.sessions[i + 1]["first_episode"]) if i + 1 < len(s.sessions) else s.num_episodes) - 1
            fields = " ".join(f"{k}={v!r}" if isinstance(v, str) and " " in v else f"{k}={v}"
                              for k, v in sess.items() if k != "first_episode" and v not in ("", {}, None))
            print(f"  episodes {first}-{last}  {fields}")
        for step in s.attributes.get("lineage", []):
            print(f"lineage   {json.dumps(step)}")
    _fail_on(s.validate(data=False), f"run `robolearn dataset validate {s.name}`")
    return 0


def validate(path: str, quick: bool = False) -> int:
    """Print one line per problem; a non-empty list is an error."""
    from robolearn.data.store import validate as check

    problems = check(path, data=not quick)
    for p in problems:
        print(p)
    _fail_on(problems, "episodes not named here are intact")
    s = EpisodeStore(path)
    what = "structure and chunk files" if quick else "every frame decoded, checksums equal"
    print(f"ok: {s.name}: {s.num_episodes} episodes, {s.num_frames} frames, {len(s.features)} keys ({what})")
    return 0


def stats(args: argparse.Namespace) -> int:
    """Compute, print and store statistics."""
    from robolearn.data.stats import STAT_NAMES, compute_stats, save_stats

    s = EpisodeStore(args.path)
    st = compute_stats(s, args.keys, max_samples=args.max_samples, seed=args.seed)
    rows = [["key", "over", *STAT_NAMES]]
    for k, v in st.items():
        f = s.features[k]
        over = "channel" if f.image else ("entry" if f.shape else "scalar")
        for i in range(int(np.prod(v["mean"].shape))):
            label = k if i == 0 else ""
            name = f"{over} {i}" if v["mean"].shape else over
            if f.names and not f.image and len(v["mean"].shape) == 1:
                name = f.names[i]
            rows.append([label, name, *(f"{float(v[n].reshape(-1)[i]):.4g}" for n in STAT_NAMES)])
            if i == 7 and v["mean"].size > 9:
                rows.append(["", f"... {v['mean'].size - 8} more", *[""] * len(STAT_NAMES)])
                break
    print("\n".join(_table(rows)))
    if not args.no_save:
        save_stats(s, st)
        print(f"saved in {s.name} (covers {s.num_episodes} episodes)")
    return 0


def _foreign(path: str) -> bool:
    from robolearn.data.lerobot import is_lerobot
    from robolearn.data.mcap import is_bag

    return is_lerobot(path) or is_bag(path)


def _convert_format(args: argparse.Namespace) -> int:
    """LeRobot v3 import/export and ROS bag import."""
    from robolearn.data import lerobot, mcap

    fmt = args.from_format
    if fmt == "auto":
        fmt = "lerobot" if lerobot.is_lerobot(args.source) else "rosbag" if mcap.is_bag(args.source) else "zarr"
    if fmt != "zarr" and args.to_format != "zarr":
        raise DatasetError(args.source, f"converts {fmt} -> robolearn (zarr) only; export from that dataset next")
    if args.to_format == "lerobot":
        out = lerobot.export_lerobot(args.source, args.dest, task_text=args.task_text, task_key=args.task_key,
                                     crf=args.crf, remux=not args.no_remux, chunks_size=args.chunks_size,
                                     data_files_size_in_mb=args.data_file_mb,
                                     video_files_size_in_mb=args.video_file_mb)
        src = EpisodeStore(args.source)
        info = json.loads((out / "meta" / "info.json").read_text())
        how = ", ".join(f"{k} {v}" for k, v in info["robolearn"]["videos"].items())
        files = len(list(out.glob("data/*/*.parquet")))
        print(f"exported {src.name} ({src.num_episodes} episodes, {src.num_frames} frames) -> LeRobot v3.0 at {out}: "
              f"{files} data file(s), {info['total_tasks']} task(s)" + (f"; videos: {how}" if how else ""))
        return 0
    if fmt == "lerobot":
        s = lerobot.import_lerobot(args.source, args.dest, _storage(args))
        print(f"imported LeRobot {args.source} -> {s.name}: {s.num_episodes} episodes, {s.num_frames} frames, "
              f"fps {s.fps:g}, keys {', '.join(s.features)}")
        return 0
    if not args.topics:
        raise DatasetError(args.source, "a ROS bag import needs --topics MAP.yaml (topics -> features, fps)")
    s = mcap.import_bags([args.source, *args.bags], args.dest, args.topics, _storage(args))
    print(f"imported {1 + len(args.bags)} bag(s) -> {s.name}: {s.num_episodes} episodes, {s.num_frames} frames at "
          f"{s.fps:g} fps, keys {', '.join(s.features)}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Dispatch a `dataset` sub-command."""
    from robolearn.data import store

    cmd = args.dataset_command
    if cmd == "info":
        return info(args.path, args.json)
    if cmd == "validate":
        return validate(args.path, args.quick)
    if cmd == "stats":
        return stats(args)
    if cmd == "merge":
        out = store.merge(args.dest, args.sources, _storage(args))
        print(f"merged {len(args.sources)} datasets: {out.num_episodes} episodes, {out.num_frames} frames -> "
              f"{out.name} ({_size(out.size_on_disk())})")
        return 0
    if cmd == "split":
        a, b = store.split(args.source, args.dest_a, args.dest_b, args.fraction, args.seed)
        print(f"split {args.source} (seed {args.seed}): {a.num_episodes} episodes -> {a.name}, "
              f"{b.num_episodes} episodes -> {b.name}")
        return 0
    if cmd == "convert" and (args.from_format in ("lerobot", "rosbag") or args.to_format != "zarr"
                             or (args.from_format == "auto" and _foreign(args.source))):
        return _convert_format(args)
    if cmd == "convert":
        src = EpisodeStore(args.source)
        out = store.convert(src, args.dest, _storage(args))
        chunks = ", ".join(f"{k}={out.chunk_frames(k)}" for k in out.features)
        print(f"converted {src.name} ({_size(src.size_on_disk())}) -> {out.name} ({_size(out.size_on_disk())}); "
              f"{args.compression} level {args.level}; frames per chunk: {chunks}")
        return 0
    raise DatasetError(getattr(args, "path", "?"), f"unknown dataset command {cmd}")
