"""Camera features stored as per-episode MP4 (H.264) files: the episode store's encoder and seeking decoder.

Written with PyAV (FFmpeg's libx264 and decoders): frame i of an episode has pts i at the store's fps, a keyframe
every `gop` frames and no B-frames, so frame i is found by seeking to the keyframe at or before it and decoding at
most gop - 1 frames more; consecutive reads continue without seeking. H.264 is lossy: with the default crf 18 and
yuv420p a decoded pixel is typically within a few levels of the recorded one (the tests state the bound); choose
`crf=0` with `pix_fmt="yuv444p"` for lossless frames in exchange for larger files.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from robolearn.core.errors import require


@dataclass(frozen=True, kw_only=True)
class VideoCodec:
    """How a camera feature is encoded: libx264 quality, keyframe interval and chroma format."""

    crf: int = 18  # 0 = lossless; 18 ≈ visually lossless; each +6 roughly halves the size
    gop: int = 8  # keyframe interval in frames: the worst-case extra decoding for one random frame is gop - 1
    preset: str = "veryfast"
    pix_fmt: str = "yuv420p"  # "yuv444p": full-resolution colour (needed for crf 0 to be lossless)

    def __post_init__(self) -> None:
        if not 0 <= self.crf <= 51:
            raise ValueError(f"video crf must be in 0..51, got {self.crf}")
        if self.gop < 1:
            raise ValueError(f"video gop must be >= 1, got {self.gop}")
        if self.pix_fmt not in ("yuv420p", "yuv444p"):
            raise ValueError(f"video pix_fmt must be yuv420p or yuv444p, got {self.pix_fmt!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored in the dataset's attributes)."""
        return {"codec": "h264", **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VideoCodec:
        """Inverse of `to_dict`."""
        return cls(**{k: d[k] for k in ("crf", "gop", "preset", "pix_fmt") if k in d})

    def problem(self, shape: tuple[int, ...], dtype: str) -> str | None:
        """Why a feature of this shape/dtype cannot be stored as video, or None."""
        if dtype != "uint8" or len(shape) != 3 or shape[-1] != 3:
            return f"only (H, W, 3) uint8 camera images can be stored as video, not {dtype} {shape}"
        if self.pix_fmt == "yuv420p" and (shape[0] % 2 or shape[1] % 2):
            return f"yuv420p video needs an even height and width, not {shape[:2]} (use pix_fmt yuv444p)"
        return None


def _rate(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


class VideoWriter:
    """One episode of one camera into `path` (an MP4 container); `finish()` flushes and closes it."""

    def __init__(self, path: str | os.PathLike[str], fps: float, shape: tuple[int, ...], codec: VideoCodec) -> None:
        self.av = require("av", "viz")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.shape = tuple(shape)
        self.container = self.av.open(str(self.path), "w", format="mp4")
        s = self.container.add_stream("libx264", rate=_rate(fps),
                                      options={"crf": str(codec.crf), "g": str(codec.gop), "bf": "0",
                                               "preset": codec.preset, "sc_threshold": "0"})
        s.height, s.width = self.shape[0], self.shape[1]
        s.pix_fmt = codec.pix_fmt
        s.codec_context.time_base = 1 / _rate(fps)
        s.thread_count = 1  # small frames: threads add latency, not throughput, on the recorder's cores
        self.stream = s
        self.frames = 0

    def add(self, frames: np.ndarray) -> None:
        """Encode (T, H, W, 3) uint8 frames."""
        for img in frames:
            vf = self.av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            vf.pts = self.frames
            self.container.mux(self.stream.encode(vf))
            self.frames += 1

    def finish(self) -> int:
        """Flush the encoder and close the file; returns the number of frames."""
        self.container.mux(self.stream.encode())
        self.container.close()
        return self.frames

    def abort(self) -> None:
        """Close without flushing and delete the file."""
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - a half-written container may refuse to close cleanly; it is deleted
            pass
        self.path.unlink(missing_ok=True)


class VideoReader:
    """Frames of one MP4 file by index, seeking to the nearest keyframe; keeps the file open between reads."""

    def __init__(self, path: str | os.PathLike[str], fps: float) -> None:
        self.av = require("av", "viz")
        self.path = Path(path)
        self.fps = float(fps)
        self.container = self.av.open(str(self.path))
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "NONE"
        self._pts_to_index = float(self.stream.time_base) * self.fps  # a float: Fraction arithmetic per frame was 10 %
        # one reformatter for the file: `frame.to_ndarray(format=...)` builds a new swscale context for every frame,
        # which costs ~10x the conversion itself for small camera frames
        self._rgb = self.av.video.reformatter.VideoReformatter()
        self._next: int | None = None  # index the decoder will produce next without seeking
        self._frames: Any = None

    def _index(self, frame: Any) -> int:
        return round(frame.pts * self._pts_to_index)

    def read(self, lo: int, hi: int) -> np.ndarray:
        """Frames [lo, hi) as (hi - lo, H, W, 3) uint8; raises ValueError when the file holds fewer."""
        out: list[np.ndarray] = []
        if self._next is None or not self._next <= lo < self._next + 2 * max(1, hi - lo):
            self.container.seek(int(lo / self.fps / self.stream.time_base), stream=self.stream, backward=True,
                                any_frame=False)
            self._frames = self.container.decode(self.stream)
        for frame in self._frames:
            i = self._index(frame)
            self._next = i + 1
            if i < lo:
                continue
            out.append(self._rgb.reformat(frame, format="rgb24").to_ndarray())
            if i >= hi - 1:
                break
        if len(out) != hi - lo:
            self._next = None
            raise ValueError(f"{self.path.name} holds no frames {lo + len(out)}..{hi - 1}")
        return np.stack(out)

    def count(self) -> int:
        """Frames in the file (decodes all of them: validation, not training)."""
        self.container.seek(0, stream=self.stream)
        self._next = None
        return sum(1 for _ in self.container.decode(self.stream))

    def close(self) -> None:
        """Close the file."""
        self.container.close()
