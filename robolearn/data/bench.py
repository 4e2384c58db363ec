"""Dataset benchmarks: recording speed and size, training windows per second, LeRobot export.

`dataset-write` records, `dataset-windows` samples training windows, `lerobot-export` exports to LeRobot v3.0 with
cameras copied (remux) or re-encoded.

Camera frames are synthetic but camera-like (smooth gradients, a moving blob, +-1 sensor noise), so compression
ratios are indicative, not those of a real scene. Both write to a temporary directory unless `--dir` is given.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from robolearn.data.store import EpisodeStore, EpisodeWriter, Feature, Provenance, StorageOptions


def camera_frames(n: int, size: int, seed: int) -> np.ndarray:
    """(n, size, size, 3) uint8 frames that compress like a camera's, not like noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.empty((n, size, size, 3), np.uint8)
    phase = rng.uniform(0, 2 * np.pi, 3)
    for t in range(n):
        cx, cy = 0.5 + 0.3 * np.sin(t / 20 + phase[0]), 0.5 + 0.3 * np.cos(t / 15 + phase[1])
        base = 80 + 60 * np.sin(3 * xx + 2 * yy + phase[2]) + 40 * yy
        img = np.stack([base, 0.7 * base + 30, 200 - 0.5 * base], -1)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < 0.01] = (200, 40, 40)
        out[t] = np.clip(img + rng.integers(-1, 2, img.shape), 0, 255).astype(np.uint8)
    return out


def _features(cameras: int, size: int) -> dict[str, Feature]:
    feats = {f"observation.images.cam{i}": Feature((size, size, 3), "uint8", axes=("height", "width", "channel"))
             for i in range(cameras)}
    feats["observation.state"] = Feature((14,), "float32", units="rad")
    feats["action"] = Feature((7,), "float32", units="rad")
    return feats


def _workdir(arg: str | None) -> tuple[Path, bool]:
    if arg:
        Path(arg).mkdir(parents=True, exist_ok=True)
        return Path(arg), False
    return Path(tempfile.mkdtemp(prefix="robolearn-bench-")), True


def dataset_write(args: list[str]) -> dict:
    """Frames per second recorded frame by frame (cameras + state + action), commit latency, and bytes on disk."""
    p = argparse.ArgumentParser(prog="robolearn bench dataset-write", description=__doc__)
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--steps", type=int, default=200, help="frames per episode")
    p.add_argument("--cameras", type=int, default=2)
    p.add_argument("--size", type=int, default=96, help="camera images are SIZE x SIZE x 3")
    p.add_argument("--compression", default="zstd", choices=["zstd", "blosc-zstd", "blosc-lz4", "none"])
    p.add_argument("--no-durable", action="store_true", help="skip fsync (crash-safe still; not power-loss-safe)")
    p.add_argument("--dir", help="where to write (default: a temporary directory, removed afterwards)")
    a = p.parse_args(args)
    feats = _features(a.cameras, a.size)
    pool = 64
    cams = [camera_frames(pool, a.size, seed=i) for i in range(a.cameras)]
    rng = np.random.default_rng(0)
    state = rng.normal(size=(pool, 14)).astype(np.float32)
    action = rng.normal(size=(pool, 7)).astype(np.float32)
    work, tmp = _workdir(a.dir)
    path = work / "dataset-write.zarr"
    try:
        frame_s, commit_s = [], []
        start = time.perf_counter()
        with EpisodeWriter(path, feats, fps=30, storage=StorageOptions(compression=a.compression),
                           provenance=Provenance(source="sim", task="bench"), durable=not a.no_durable) as w:
            for e in range(a.episodes):
                for t in range(a.steps):
                    i = (t + 7 * e) % pool
                    frame = {f"observation.images.cam{c}": cams[c][i] for c in range(a.cameras)}
                    frame["observation.state"] = state[i]
                    frame["action"] = action[i]
                    t0 = time.perf_counter()
                    w.add_frame(frame)
                    frame_s.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                w.end_episode()
                commit_s.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
        store = EpisodeStore(path)
        size = store.size_on_disk()
        frames = store.num_frames
        raw = sum(f.frame_bytes for f in feats.values())
    finally:
        if tmp:
            shutil.rmtree(work, ignore_errors=True)
    return {
        "frames_per_s": round(frames / elapsed, 1),
        "bytes_on_disk": size,
        "frames": frames,
        "episodes": a.episodes,
        "bytes_per_frame": round(size / frames, 1),
        "raw_bytes_per_frame": raw,
        "compression_ratio": round(raw * frames / size, 2),
        "add_frame_ms_p99": round(1e3 * float(np.quantile(frame_s, 0.99)), 3),
        "add_frame_ms_max": round(1e3 * max(frame_s), 3),
        "end_episode_ms_mean": round(1e3 * float(np.mean(commit_s)), 2),
        "compression": a.compression,
        "durable": not a.no_durable,
        "stream": f"{a.cameras}x{a.size}x{a.size}x3 uint8 + state(14) + action(7) float32",
    }


def _mp4_baseline(path: Path, pool: list[np.ndarray], steps: int, episodes: int, samples: int,
                  fps: int = 30) -> float:
    """Windows/s of a LeRobot-style loader that opens, seeks and decodes MP4s for every sample.

    One AV1 file per episode and camera (g=2, crf=30: LeRobot's defaults), 2 frames per camera per sample; the
    low-dim reads LeRobot also does per sample are not counted, so this flatters the baseline.
    """
    import av

    os.environ.setdefault("SVT_LOG", "1")  # errors only
    videos = {}
    for e in range(episodes):
        for c, frames in enumerate(pool):
            file = path / f"ep{e}_cam{c}.mp4"
            with av.open(str(file), "w") as out:
                st = out.add_stream("libsvtav1", rate=fps, options={"g": "2", "crf": "30", "preset": "12"})
                st.width, st.height, st.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
                for f in frames[e % 64:e % 64 + steps]:
                    out.mux(st.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
                out.mux(st.encode())
            videos[(e, c)] = file
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(samples):
        e, t = int(rng.integers(episodes)), int(rng.integers(steps))
        want = [max(t - 1, 0) / fps, t / fps]
        for c in range(len(pool)):
            with av.open(str(videos[(e, c)])) as cont:
                st = cont.streams.video[0]
                cont.seek(int(want[0] / st.time_base), stream=st, backward=True, any_frame=False)
                for frame in cont.decode(st):
                    ts = float(frame.pts * st.time_base)
                    if ts >= want[0] - 1e-4:
                        frame.to_ndarray(format="rgb24")
                    if ts >= want[-1] - 1e-4:
                        break
    return samples / (time.perf_counter() - start)


def dataset_windows(args: list[str]) -> dict:
    """Training windows per second through the DataLoader, for each worker count (lists aligned with `workers`)."""
    import torch

    from robolearn.data.windows import WindowDataset

    p = argparse.ArgumentParser(prog="robolearn bench dataset-windows", description=__doc__)
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--steps", type=int, default=100, help="frames per episode")
    p.add_argument("--cameras", type=int, default=2)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--batches", type=int, default=50, help="timed batches per worker count (after one warm-up)")
    p.add_argument("--workers", default="0,2", help="comma-separated worker counts")
    p.add_argument("--cache", choices=["auto", "on", "off"], default="auto", help="decode the store into memory")
    p.add_argument("--mp4-baseline", type=int, default=100, metavar="N",
                   help="also time N samples of per-sample MP4 decoding, as LeRobot does (0: skip; needs PyAV)")
    p.add_argument("--video", action="store_true",
                   help="store the cameras as per-episode MP4 in the store (decoded per window; use --cache off)")
    p.add_argument("--block", type=int, default=1,
                   help="training order: 1 uniform; N > 1 block order with blocks of N windows (data/windows.py); "
                        "0: the dataset's suggestion (1 when cached, else its camera chunk length, at least 32), "
                        "as imitation training")
    p.add_argument("--lerobot-python", metavar="PYTHON",
                   help="also time LeRobot's own loader: export the store to LeRobot v3.0 and run LeRobotDataset + "
                        "DataLoader on the same windows in PYTHON, an interpreter with lerobot installed")
    p.add_argument("--lerobot-backend", default="torchcodec", choices=["torchcodec", "pyav"],
                   help="LeRobot's video backend (its default is torchcodec)")
    p.add_argument("--dir", help="where to write (default: a temporary directory, removed afterwards)")
    a = p.parse_args(args)
    workers = [int(w) for w in a.workers.split(",")]
    feats = _features(a.cameras, a.size)
    work, tmp = _workdir(a.dir)
    path = work / ("dataset-windows-mp4.zarr" if a.video else "dataset-windows.zarr")
    storage = StorageOptions(video=tuple(k for k in feats if k.startswith("observation.images."))) if a.video else None
    try:
        t0 = time.perf_counter()
        rng = np.random.default_rng(0)
        pool = [camera_frames(a.steps + 64, a.size, seed=c) for c in range(a.cameras)]
        if not path.exists():
            with EpisodeWriter(path, feats, fps=30, durable=False, storage=storage) as w:
                for e in range(a.episodes):
                    ep = {f"observation.images.cam{c}": pool[c][e % 64:e % 64 + a.steps] for c in range(a.cameras)}
                    ep["observation.state"] = rng.normal(size=(a.steps, 14)).astype(np.float32)
                    ep["action"] = rng.normal(size=(a.steps, 7)).astype(np.float32)
                    w.add_episode(ep)
        build_s = time.perf_counter() - t0
        size_mb = round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6, 1)
        deltas: dict[str, list[int]] = {k: [-1, 0] for k in feats if k != "action"}
        deltas["action"] = list(range(16))
        t0 = time.perf_counter()
        ds = WindowDataset(path, deltas, cache={"auto": None, "on": True, "off": False}[a.cache])
        load_s = time.perf_counter() - t0
        block = a.block or ds.suggested_block()
        rates = []
        for nw in workers:
            loader = ds.loader(a.batch_size, shuffle=True, num_workers=nw, drop_last=True,
                               generator=torch.Generator().manual_seed(0), block=block)
            it = iter(loader)
            next(it)  # warm-up: worker start-up is not counted
            n, t0 = 0, time.perf_counter()
            for _ in range(a.batches):
                try:
                    batch = next(it)
                except StopIteration:
                    it = iter(loader)
                    batch = next(it)
                n += batch["action"].shape[0]
            rates.append(round(n / (time.perf_counter() - t0), 1))
            del it, loader
        sample = ds.get_batch([0])
        shapes = {k: list(v.shape[1:]) for k, v in sample.items() if not k.endswith("_is_pad") and v.ndim > 1}
        baseline: float | str = "skipped"
        if a.mp4_baseline > 0:
            try:
                videos = work / "mp4-baseline"
                videos.mkdir(exist_ok=True)
                baseline = round(_mp4_baseline(videos, pool, a.steps, min(a.episodes, 10), a.mp4_baseline), 1)
            except ImportError:
                baseline = "skipped: PyAV is not installed (pip install 'robolearn[viz]')"
        lerobot = {} if not a.lerobot_python else _lerobot_loader(
            a.lerobot_python, path, work / "lerobot", deltas, a.batch_size, a.batches, workers, a.lerobot_backend)
    finally:
        if tmp:
            shutil.rmtree(work, ignore_errors=True)
    return {
        "windows_per_s": rates,
        "workers": workers,
        "batch_size": a.batch_size,
        "episodes": a.episodes,
        "frames": a.episodes * a.steps,
        "cached": ds.cached,
        "block": block,
        "storage": "mp4 (per-episode H.264 in the store)" if a.video else "zstd arrays",
        "size_mb": size_mb,
        "cache_load_s": round(load_s, 2),
        "build_s": round(build_s, 2),
        "window": shapes,
        "mp4_per_sample_windows_per_s": baseline,
        **lerobot,
    }


def _lerobot_loader(python: str, store: Path, dest: Path, deltas: dict[str, list[int]], batch_size: int,
                    batches: int, workers: list[int], backend: str) -> dict:
    """LeRobot's own loader on the same episodes and windows, run in `python` (see `lerobot_loader_timing`).

    The store is exported with `export_lerobot`, cameras encoded with libx264 and a keyframe every 2 frames
    (LeRobot's gop), also when the store holds them as MP4 with a longer gop. H.264 decodes faster than the AV1
    LeRobot records by default, so this is LeRobot's loader at its fastest codec.
    """
    import json
    import subprocess

    from robolearn.core.errors import ConfigError
    from robolearn.data.lerobot import export_lerobot

    if not dest.exists():
        export_lerobot(store, dest, gop=2, remux=False)
    script = Path(__file__).with_name("lerobot_loader_timing.py")
    rates, fps = [], EpisodeStore(store).fps
    for nw in workers:  # a fresh process per worker count, as in LeRobot's training: its decoders open in the
        # parent do not survive a fork into DataLoader workers ("Could not push packet to decoder")
        spec = {"deltas": deltas, "fps": fps, "batch_size": batch_size, "batches": batches,
                "workers": [nw], "video_backend": backend}
        r = subprocess.run([python, str(script), str(dest), json.dumps(spec)], capture_output=True, text=True)
        if r.returncode != 0:
            tail = "\n".join(r.stderr.strip().splitlines()[-5:])
            raise ConfigError(f"--lerobot-python {python}: LeRobot's loader failed on {dest}:\n{tail}")
        out = json.loads(r.stdout.strip().splitlines()[-1])
        rates += out["windows_per_s"]
    return {"lerobot_windows_per_s": rates, "lerobot_version": out["lerobot_version"],
            "lerobot_video_backend": out["video_backend"], "lerobot_torch": out["torch"],
            "lerobot_window": out["window"]}


def lerobot_export(args: list[str]) -> dict:
    """Seconds to export a store to LeRobot v3.0 with its MP4 cameras copied (remux) and re-encoded, same store."""
    from robolearn.data.lerobot import export_lerobot

    p = argparse.ArgumentParser(prog="robolearn bench lerobot-export", description=lerobot_export.__doc__)
    p.add_argument("--episodes", type=int, default=6)
    p.add_argument("--steps", type=int, default=300, help="frames per episode (10 s at 30 fps)")
    p.add_argument("--cameras", type=int, default=2)
    p.add_argument("--size", type=int, default=96, help="camera images are SIZE x SIZE x 3")
    p.add_argument("--repeats", type=int, default=2, help="best of this many exports per path")
    p.add_argument("--dir", help="where to write (default: a temporary directory, removed afterwards)")
    a = p.parse_args(args)
    work, remove = _workdir(a.dir)
    try:
        store_path = work / "lerobot-export.zarr"
        if store_path.exists():
            shutil.rmtree(store_path)
        feats = _features(a.cameras, a.size)
        cams = tuple(k for k, f in feats.items() if f.image)
        feats["task"] = Feature((), "string")
        pool = camera_frames(a.steps, a.size, 0)
        rng = np.random.default_rng(0)
        with EpisodeWriter(store_path, feats, 30.0, storage=StorageOptions(video=cams), durable=False) as w:
            for e in range(a.episodes):
                w.add_episode({**{k: np.roll(pool, e * 7 + i, axis=0) for i, k in enumerate(cams)},
                               "observation.state": rng.normal(size=(a.steps, 14)).astype(np.float32),
                               "action": rng.normal(size=(a.steps, 7)).astype(np.float32),
                               "task": f"task {e % 3}"})
        src = EpisodeStore(store_path)
        times: dict[str, float] = {}
        size = 0
        for mode in ("remux", "encode"):
            best = float("inf")
            for r in range(a.repeats):
                out = work / f"lerobot-{mode}-{r}"
                if out.exists():
                    shutil.rmtree(out)
                t0 = time.perf_counter()
                export_lerobot(src, out, remux=mode == "remux")
                best = min(best, time.perf_counter() - t0)
                if mode == "remux":
                    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
                shutil.rmtree(out)
            times[mode] = best
        frames = src.num_frames
        return {"episodes": a.episodes, "frames": frames, "cameras": a.cameras, "size": a.size,
                "remux_s": round(times["remux"], 3), "encode_s": round(times["encode"], 3),
                "remux_frames_per_s": round(frames / times["remux"], 1),
                "encode_frames_per_s": round(frames / times["encode"], 1),
                "speedup": round(times["encode"] / times["remux"], 2), "bytes_on_disk": size}
    finally:
        if remove:
            shutil.rmtree(work, ignore_errors=True)
