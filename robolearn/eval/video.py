"""MP4 videos of quadrotor flights: a small perspective renderer on a PIL canvas, encoded to H.264 with PyAV.

Why not matplotlib 3-D: even reusing one figure and updating artists it costs ~45 ms a frame on a laptop core
(~70 ms with a grid and rotor discs), so a 5 s clip takes 7-10 s. Projecting a few hundred points with numpy and
drawing them with PIL at 2x (box-filtered down for antialiasing) costs a few ms a frame, and the static scene
(ground grid, reference, goal) is drawn once and copied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robolearn.core.errors import require

_SS = 2  # supersampling: draw at 2x, box-filter down to 1x -> antialiased lines
# drone colors (trail, body, z-axis); red/orange is kept for the front rotors
_PALETTE = [(31, 119, 180), (44, 160, 44), (148, 103, 189), (140, 86, 75), (23, 190, 207), (188, 189, 34),
            (227, 119, 194), (127, 127, 127)]  # fmt: skip
_FRONT = (230, 85, 40)
_REAR = (95, 100, 112)
_ARM = (35, 38, 45)
_REF = (60, 60, 60)
_GOAL = (214, 39, 40)
_TEXT = (25, 28, 35)
_SKY_TOP, _SKY_BOTTOM = (244, 247, 251), (226, 232, 240)
_GROUND, _GRID = (214, 220, 228), (188, 196, 207)
_ROTOR_SEGMENTS = 18


def quat_to_rotmat_np(q: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3), body to world, from quaternions (..., 4) in (w, x, y, z) order."""
    import torch

    from robolearn.core.math import quat_normalize, quat_to_rotmat

    return quat_to_rotmat(quat_normalize(torch.as_tensor(q, dtype=torch.float64))).numpy()


def _nice_step(span: float, lines: int = 8) -> float:
    """A 1/2/2.5/5 x 10^k grid spacing giving about `lines` lines over `span`."""
    raw = max(span, 1e-6) / lines
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if raw <= m * mag * 1.0001)


class _Camera:
    """Fixed perspective camera looking at a box from (azim, elev), scaled so `points` fill the image."""

    def __init__(self, points: np.ndarray, size: tuple[int, int], margins: tuple[float, float, float, float],
                 azim_deg: float = -60.0, elev_deg: float = 28.0) -> None:  # fmt: skip
        lo, hi = points.min(0), points.max(0)
        center, radius = (lo + hi) / 2, max(float(np.linalg.norm(hi - lo)) / 2, 1e-3)
        az, el = math.radians(azim_deg), math.radians(elev_deg)
        d = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
        self.eye = center + 3.5 * radius * d  # far enough for mild perspective, close enough for depth cues
        fwd = -d
        right = np.cross(fwd, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        self.basis = np.stack([right, np.cross(right, fwd), fwd])  # rows: right, up, forward
        uv = self._raw(points)
        uv_lo, uv_hi = uv.min(0), uv.max(0)
        left, top, rgt, bottom = margins
        w, h = size[0] - left - rgt, size[1] - top - bottom
        self.scale = min(w / max(uv_hi[0] - uv_lo[0], 1e-9), h / max(uv_hi[1] - uv_lo[1], 1e-9))
        self.uv_mid = (uv_lo + uv_hi) / 2
        self.px_mid = np.array([left + w / 2, top + h / 2])

    def _raw(self, p: np.ndarray) -> np.ndarray:
        c = (p - self.eye) @ self.basis.T  # (..., 3): right, up, depth
        return np.stack([c[..., 0] / c[..., 2], -c[..., 1] / c[..., 2]], -1)  # image y points down

    def project(self, p: np.ndarray) -> np.ndarray:
        """Pixel coordinates (..., 2) of world points (..., 3)."""
        return (self._raw(p) - self.uv_mid) * self.scale + self.px_mid

    def depth(self, p: np.ndarray) -> np.ndarray:
        """Distance along the viewing direction, (...)."""
        return (p - self.eye) @ self.basis[2]


@dataclass
class _Fonts:
    title: Any
    text: Any
    small: Any
    mono: Any


def _load_fonts(image_font: Any, height: int) -> _Fonts:
    """DejaVu from matplotlib's data when it is there, else PIL's built-in scalable font."""
    s = height / 480

    def font(name: str, px: float) -> Any:
        try:
            import matplotlib

            return image_font.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), round(px))
        except (ImportError, OSError):
            return image_font.load_default(round(px))

    return _Fonts(font("DejaVuSans-Bold.ttf", 17 * s), font("DejaVuSans.ttf", 14 * s),
                  font("DejaVuSans.ttf", 11.5 * s), font("DejaVuSansMono.ttf", 15 * s))  # fmt: skip


def _flat(p: np.ndarray) -> list[float]:
    return p.reshape(-1).tolist()


def _dashed(draw: Any, xy: np.ndarray, fill: tuple[int, ...], width: int, dash: float) -> None:
    """Polyline (N, 2) drawn as dashes of `dash` pixels (PIL has no dash pattern)."""
    if len(xy) < 2:
        return
    seg = np.linalg.norm(np.diff(xy, axis=0), axis=1)
    on = (np.floor(np.concatenate([[0.0], np.cumsum(seg)[:-1]]) / dash) % 2 == 0).astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], on, [0]])))  # starts and ends of "on" runs
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        draw.line(_flat(xy[a : b + 1]), fill=fill, width=width, joint="curve")


def _rotor(draw: Any, ring: np.ndarray, color: tuple[int, int, int]) -> None:
    """A translucent rotor disc from its projected outline (N, 2)."""
    draw.polygon(_flat(ring), fill=(*color, 95), outline=(*color, 255), width=_SS)


def _check_inputs(
    t: np.ndarray,
    pos: np.ndarray,
    quat: np.ndarray,
    ref: np.ndarray | None,
    goal: np.ndarray | None,
    size: tuple[int, int],
    fps: int,
    speedup: float,
) -> tuple[Any, ...]:
    """Arrays as (K, T, ...) float64, or a ValueError that says what is wrong."""
    t = np.asarray(t, dtype=np.float64)
    pos, quat = np.asarray(pos, dtype=np.float64), np.asarray(quat, dtype=np.float64)
    if pos.ndim == 2:
        pos, quat = pos[None], quat[None]
    k, n = pos.shape[:2]
    if t.ndim != 1 or len(t) < 2 or np.any(np.diff(t) <= 0):
        raise ValueError(f"t must be increasing with shape (T,), T >= 2; got shape {t.shape}")
    if pos.shape != (k, len(t), 3) or quat.shape != (k, len(t), 4):
        raise ValueError(f"pos/quat must be (T,3)/(T,4) or (K,T,3)/(K,T,4) with T={len(t)}; "
                         f"got {pos.shape} and {quat.shape}")  # fmt: skip
    try:
        ref = None if ref is None else np.broadcast_to(np.asarray(ref, dtype=np.float64), (k, n, 3))
        goal = None if goal is None else np.broadcast_to(np.asarray(goal, dtype=np.float64), (k, 3))
    except ValueError:
        raise ValueError(f"ref must be (T,3) or (K,T,3) and goal (3,) or (K,3) with K={k}, T={n}") from None
    if size[0] % 2 or size[1] % 2 or min(size) < 64:
        raise ValueError(f"size must be even and at least 64 px for H.264 yuv420p, got {size}")
    if fps <= 0 or speedup <= 0:
        raise ValueError(f"fps and speedup must be positive, got fps={fps}, speedup={speedup}")
    return t, pos, quat, ref, goal


def render_flight_video(
    t: np.ndarray,
    pos: np.ndarray,
    quat: np.ndarray,
    out: Path,
    *,
    ref: np.ndarray | None = None,
    goal: np.ndarray | None = None,
    arm_length: float = 0.046,
    fps: int = 30,
    size: tuple[int, int] = (640, 480),
    title: str = "",
    speedup: float = 1.0,
    trail_s: float = 1.0,
    arm_scale: float = 3.0,
) -> Path:
    """Write an H.264 MP4 of one flight (pos (T,3), quat (T,4) wxyz) or K overlaid flights ((K,T,3), (K,T,4))."""
    av = require("av", "viz")
    require("PIL", "viz")
    from PIL import Image, ImageDraw, ImageFont

    t, pos, quat, ref, goal = _check_inputs(t, pos, quat, ref, goal, size, fps, speedup)
    n_drones, n_steps = pos.shape[:2]
    w, h = size
    W, H = w * _SS, h * _SS  # canvas size while drawing (supersampled)
    fonts = _load_fonts(ImageFont, h)
    colors = [_PALETTE[i % len(_PALETTE)] for i in range(n_drones)]

    # --- scene geometry: the ground sits at z=0 unless the flight goes below it --------------------------------
    reach = arm_length * arm_scale * 1.5
    content = [pos.reshape(-1, 3)] + ([ref.reshape(-1, 3)] if ref is not None else [])
    content += [goal] if goal is not None else []
    pts = np.concatenate(content)
    lo, hi = pts.min(0), pts.max(0)
    step = _nice_step(float(max(hi[0] - lo[0], hi[1] - lo[1], 4 * reach)), 8)
    ground_z = 0.0 if lo[2] >= 0 else math.floor((lo[2] - reach) / step) * step
    pad = max(0.5 * reach, 0.2 * step)  # the grid covers the flights' shadows with a little room, on whole cells
    gx = np.arange(math.floor((lo[0] - pad) / step), math.ceil((hi[0] + pad) / step) + 1) * step
    gy = np.arange(math.floor((lo[1] - pad) / step), math.ceil((hi[1] + pad) / step) + 1) * step
    corners = np.array([[gx[0], gy[0]], [gx[-1], gy[0]], [gx[-1], gy[-1]], [gx[0], gy[-1]]])
    ground = np.column_stack([corners, np.full(4, ground_z)])
    # fit the camera to what is drawn: the ground grid, the flights and a drone-sized margin above them
    tops = pts + [0, 0, reach]
    fit = np.concatenate([ground, tops, ground + [0, 0, step]])  # the z axis arrow
    margins = (0.03 * W, 0.12 * H, 0.03 * W, 0.08 * H)  # left, top, right, bottom: room for the overlays
    cam = _Camera(fit, (W, H), margins)

    def shadow(p: np.ndarray) -> np.ndarray:
        return np.concatenate([p[..., :2], np.full((*p.shape[:-1], 1), ground_z)], -1)

    # --- static background, drawn once at 2x -----------------------------------------------------------------
    ramp = np.linspace(0.0, 1.0, H)[:, None, None]
    sky = (np.array(_SKY_TOP) * (1 - ramp) + np.array(_SKY_BOTTOM) * ramp).astype(np.uint8)
    bg = Image.fromarray(np.ascontiguousarray(np.broadcast_to(sky, (H, W, 3))))
    d = ImageDraw.Draw(bg, "RGBA")
    d.polygon(_flat(cam.project(ground)), fill=_GROUND)
    for x in gx:
        d.line(_flat(cam.project(np.array([[x, gy[0], ground_z], [x, gy[-1], ground_z]]))), fill=_GRID, width=_SS)
    for y in gy:
        d.line(_flat(cam.project(np.array([[gx[0], y, ground_z], [gx[-1], y, ground_z]]))), fill=_GRID, width=_SS)
    # world axes at the grid's (min x, min y) corner: x red, y green, z blue, one grid step long
    origin = np.array([gx[0], gy[0], ground_z])
    axis_labels = []
    for axis, col, name in ((0, (200, 40, 40), "x"), (1, (40, 150, 40), "y"), (2, (40, 70, 200), "z")):
        tip = origin.copy()
        tip[axis] += step
        a, b = cam.project(np.stack([origin, tip]))
        d.line(_flat(np.stack([a, b])), fill=col, width=2 * _SS)
        axis_labels.append(((b + (b - a) / max(np.linalg.norm(b - a), 1e-6) * 7 * _SS) / _SS, name, col))
    # one reference drawn once when all flights share it
    refs = None if ref is None else ref[:1] if np.all(ref == ref[:1]) else ref
    if refs is not None:
        for r in refs:
            d.line(_flat(cam.project(shadow(r))), fill=(*_REF, 35), width=2 * _SS, joint="curve")
            _dashed(d, cam.project(r), (*_REF, 200), int(1.5 * _SS), dash=7 * _SS)
    if goal is not None:
        for g in np.unique(goal, axis=0):
            _dashed(d, cam.project(np.stack([g, shadow(g)])), (*_GOAL, 110), _SS, dash=4 * _SS)
            gs = cam.project(shadow(g))
            r = 4 * _SS
            d.line(_flat(gs + np.array([[-r, -r / 2], [r, r / 2]])), fill=(*_GOAL, 140), width=_SS)
            d.line(_flat(gs + np.array([[-r, r / 2], [r, -r / 2]])), fill=(*_GOAL, 140), width=_SS)
            gp, r = cam.project(g), 7 * _SS
            d.ellipse([gp[0] - r, gp[1] - r, gp[0] + r, gp[1] + r], outline=_GOAL, width=2 * _SS)
            d.ellipse([gp[0] - r / 3, gp[1] - r / 3, gp[0] + r / 3, gp[1] + r / 3], fill=_GOAL)

    # --- per-frame geometry, vectorized over the whole flight -------------------------------------------------
    n_frames = int(math.floor((t[-1] - t[0]) * fps / speedup + 1e-9)) + 1
    t_frames = t[0] + np.arange(n_frames) * speedup / fps
    idx = np.clip(np.searchsorted(t, t_frames + 1e-9, side="right") - 1, 0, n_steps - 1)  # latest sample <= t
    px_path = cam.project(pos)  # (K, T, 2)
    px_path_shadow = cam.project(shadow(pos))
    px_ref = cam.project(refs) if refs is not None else None
    rot = quat_to_rotmat_np(quat[:, idx])  # (K, F, 3, 3)
    s = arm_length * arm_scale
    diag = s / math.sqrt(2.0)
    motors_b = np.array([[diag, -diag, 0], [diag, diag, 0], [-diag, diag, 0], [-diag, -diag, 0]])  # X layout, front +x
    ang = np.linspace(0, 2 * np.pi, _ROTOR_SEGMENTS, endpoint=False)
    ring_b = 0.5 * s * np.stack([np.cos(ang), np.sin(ang), np.zeros_like(ang)], -1)
    body_b = np.concatenate([motors_b, (motors_b[:, None] + ring_b[None]).reshape(-1, 3), [[0, 0, 1.4 * s]]])
    body_w = pos[:, idx, None] + np.einsum("kfij,nj->kfni", rot, body_b)  # (K, F, 5 + 4*R, 3)
    px_body = cam.project(body_w)
    px_body_shadow = cam.project(shadow(body_w[:, :, :4]))
    px_center = px_path[:, idx]
    depth_center = cam.depth(pos[:, idx])  # (K, F)
    depth_motor = cam.depth(body_w[:, :, :4])  # (K, F, 4)
    trail_n = max(int(round(trail_s / float(np.median(np.diff(t))))), 1)

    def draw_frame(f: int) -> np.ndarray:
        img = bg.copy()
        d = ImageDraw.Draw(img, "RGBA")
        i = idx[f]
        j0 = max(0, i - trail_n)
        for k in range(n_drones):  # trails: a faint shadow, then the path fading in over `trail_s`
            if i - j0 < 1:
                continue
            sub = max((i - j0) // 120, 1)  # at most ~120 points
            seg = np.arange(j0, i + 1)[::-1][::sub][::-1]
            d.line(_flat(px_path_shadow[k, seg]), fill=(0, 0, 0, 28), width=2 * _SS, joint="curve")
            chunks = np.array_split(np.arange(len(seg)), min(12, len(seg) - 1))
            for c_i, ch in enumerate(chunks):
                ch = np.arange(max(ch[0] - 1, 0), ch[-1] + 1)
                alpha = int(70 + 185 * (c_i + 1) / len(chunks))
                d.line(_flat(px_path[k, seg[ch]]), fill=(*colors[k], alpha), width=3 * _SS, joint="curve")
        if px_ref is not None:  # where the reference is now
            for x, y in px_ref[:, i]:
                r = 4.5 * _SS
                d.ellipse([x - r, y - r, x + r, y + r], outline=(*_REF, 230), width=int(1.5 * _SS))
        for k in np.argsort(-depth_center[:, f]):  # far drones first
            b, c = px_body[k, f], px_center[k, f]
            motors, rings, ztip = b[:4], b[4:-1].reshape(4, _ROTOR_SEGMENTS, 2), b[-1]
            sh = px_body_shadow[k, f]
            shc = sh.mean(0)
            _dashed(d, np.stack([c, shc]), (0, 0, 0, 60), _SS, dash=4 * _SS)
            d.line(_flat(sh[[0, 2]]), fill=(0, 0, 0, 55), width=3 * _SS)
            d.line(_flat(sh[[1, 3]]), fill=(0, 0, 0, 55), width=3 * _SS)
            behind = depth_motor[k, f] > depth_center[k, f]
            for m in np.flatnonzero(behind):  # painter's order: far rotors, arms, near rotors
                _rotor(d, rings[m], _FRONT if m < 2 else _REAR)
            for m in range(4):
                d.line(_flat(np.stack([c, motors[m]])), fill=_ARM, width=3 * _SS)
            for m in np.flatnonzero(~behind):
                _rotor(d, rings[m], _FRONT if m < 2 else _REAR)
            d.line(_flat(np.stack([c, ztip])), fill=colors[k], width=2 * _SS)
            r = 2.5 * _SS
            d.ellipse([ztip[0] - r, ztip[1] - r, ztip[0] + r, ztip[1] + r], fill=colors[k])
            r = 4 * _SS
            d.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=colors[k], outline=_ARM, width=_SS)
        img = img.reduce(_SS)
        _overlay(ImageDraw.Draw(img, "RGBA"), f, i)
        return np.asarray(img)

    def _overlay(d: Any, f: int, i: int) -> None:
        pad = 0.018 * h
        for xy, name, col in axis_labels:
            d.text(tuple(xy), name, fill=col, font=fonts.small, anchor="mm")
        d.text((pad, pad), title, fill=_TEXT, font=fonts.title)
        if n_drones > 1:  # which color is which flight
            x = pad
            for k in range(n_drones):
                label = f"● episode {k}"
                d.text((x, pad + 1.45 * fonts.title.size), label, fill=colors[k], font=fonts.small)
                x += d.textlength(label, font=fonts.small) + 0.8 * fonts.small.size
        lines = [f"t = {t[i] - t[0]:5.2f} s"] + ([f"speed ×{speedup:g}"] if speedup != 1.0 else [])
        if n_drones == 1 and ref is not None:
            lines.append(f"error {100 * np.linalg.norm(pos[0, i] - ref[0, i]):5.1f} cm")
        elif n_drones == 1 and goal is not None:
            lines.append(f"to goal {100 * np.linalg.norm(pos[0, i] - goal[0]):5.1f} cm")
        d.multiline_text((w - pad, pad), "\n".join(lines), fill=_TEXT, font=fonts.mono, anchor="ra", align="right")
        hint = f"drone drawn ×{arm_scale:g} size · orange rotors = front · grid {step * 100:g} cm"
        d.text((pad, h - pad), hint, fill=(70, 75, 85), font=fonts.small, anchor="ld")
        # legend, right-aligned at the bottom
        x, y = w - pad, h - pad - 0.5 * fonts.small.size
        items: list[tuple[str, str, tuple[int, ...]]] = [
            ("trail", f"last {trail_s:g} s", colors[0] if n_drones == 1 else _REAR)
        ]
        items += [("ref", "reference", _REF)] if ref is not None else []
        items += [("goal", "goal", _GOAL)] if goal is not None else []
        for kind, label, col in reversed(items):
            x -= d.textlength(label, font=fonts.small)
            d.text((x, y), label, fill=(70, 75, 85), font=fonts.small, anchor="lm")
            x -= 0.4 * fonts.small.size
            sw = 1.6 * fonts.small.size
            if kind == "goal":
                r = 0.35 * fonts.small.size
                d.ellipse([x - 2 * r, y - r, x, y + r], outline=col, width=2)
            elif kind == "ref":
                d.line([x - sw, y, x - 0.6 * sw, y], fill=col, width=2)
                d.line([x - 0.4 * sw, y, x, y], fill=col, width=2)
            else:
                d.line([x - sw, y, x, y], fill=col, width=3)
            x -= sw + 0.9 * fonts.small.size

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(out), mode="w", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=int(fps))
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "20", "preset": "veryfast"}
        for f in range(n_frames):
            frame = av.VideoFrame.from_ndarray(draw_frame(f), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out


def write_frames_video(frames: np.ndarray, out: Path, *, fps: float = 10.0, lengths: np.ndarray | None = None,
                       labels: list[list[str]] | None = None) -> Path:
    """H.264 MP4 of K camera views side by side (frames (T, K, H, W, 3) uint8), e.g. a task's top camera.

    View k freezes on frame `lengths[k]` (its episode's last; the env reset after it); `labels[t][k]` (e.g. the
    coverage) is drawn in view k's corner.
    """
    av = require("av", "viz")
    require("PIL", "viz")
    from PIL import Image, ImageDraw

    frames = np.asarray(frames)
    if frames.ndim != 5 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, K, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    n, k, h, w = frames.shape[:4]
    last = np.full(k, n - 1) if lengths is None else np.clip(np.asarray(lengths, dtype=np.int64), 0, n - 1)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    width, height = k * w + (k - 1) * 4, h
    width, height = width + width % 2, height + height % 2
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=max(1, round(fps)))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(n):
            canvas = np.full((height, width, 3), 255, np.uint8)
            for i in range(k):
                canvas[:h, i * (w + 4): i * (w + 4) + w] = frames[min(t, last[i]), i]
            img = Image.fromarray(canvas)
            if labels is not None:
                draw = ImageDraw.Draw(img)
                for i in range(k):  # on a light box: legible over dark and light scenes
                    xy, text = (i * (w + 4) + 4, 2), labels[min(t, last[i])][i]
                    x0, y0, x1, y1 = draw.textbbox(xy, text)
                    draw.rectangle((x0 - 2, y0 - 1, x1 + 2, y1 + 1), fill=(245, 246, 248))
                    draw.text(xy, text, fill=(25, 28, 35))
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.asarray(img), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out
