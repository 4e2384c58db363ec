import sys

import numpy as np
import pytest

from robolearn.core.errors import MissingExtraError
from robolearn.eval.plots import plot_flight, plot_training_curves
from robolearn.eval.video import quat_to_rotmat_np, render_flight_video

mpl = pytest.importorskip("matplotlib")
av = pytest.importorskip("av")
Image = pytest.importorskip("PIL.Image")


def _flight(duration: float = 1.0, dt: float = 0.01, k: int | None = None):
    """A small figure-eight with a wobbling yaw; (K, T, ...) arrays when k is given."""
    t = np.arange(0.0, duration, dt)
    w = 2 * np.pi / duration
    ref = np.stack([0.5 * np.sin(w * t), 0.25 * np.sin(2 * w * t), 1.0 + 0.0 * t], -1)
    yaw = 0.4 * np.sin(3 * w * t)
    quat = np.stack([np.cos(yaw / 2), 0 * t, 0 * t, np.sin(yaw / 2)], -1)
    pos = ref + 0.02 * np.stack([np.sin(7 * t), np.cos(5 * t), np.sin(3 * t)], -1)
    if k is not None:
        pos = np.stack([pos + [0.1 * i, 0.0, 0.05 * i] for i in range(k)])
        quat = np.broadcast_to(quat, (k, *quat.shape)).copy()
    return t, pos, quat, ref


def _png(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _decode(path) -> tuple[list[np.ndarray], tuple[int, int]]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
        return frames, (s.codec_context.width, s.codec_context.height)


def test_plot_flight_full(tmp_path):
    t, pos, quat, ref = _flight(2.0, 0.02)
    euler = np.stack([0.1 * np.sin(3 * t), 0.1 * np.cos(2 * t), 3.0 * t], -1)  # yaw crosses ±pi: unwrapped
    actions = 0.5 + 0.1 * np.sin(t[:, None] + np.arange(4))
    out = plot_flight(t, pos, ref, tmp_path / "sub" / "flight.png", title="test", euler=euler, actions=actions,
                      action_names=["m1", "m2", "m3", "m4"])  # fmt: skip
    img = _png(out)
    assert img.shape == (round((1.85 * 6 + 0.7) * 150), 14 * 150, 3)
    assert img.std() > 20  # not blank


def test_plot_flight_minimal(tmp_path):
    t, pos, _, _ = _flight(1.0, 0.02)
    img = _png(plot_flight(t, pos, None, tmp_path / "flight.png"))
    assert img.shape == (round((1.85 * 4 + 0.7) * 150), 14 * 150, 3)
    assert img.std() > 20


def test_plot_flight_rejects_bad_shapes(tmp_path):
    t, pos, _, ref = _flight(1.0, 0.02)
    with pytest.raises(ValueError, match="ref"):
        plot_flight(t, pos, ref[:-1], tmp_path / "x.png")


def test_plot_training_curves(tmp_path):
    steps = np.arange(50) * 1000
    y = np.linspace(0, 1, 50)
    y_nan = y.copy()
    y_nan[::3] = np.nan  # metrics logged less often than others
    series = {"return": y, "loss": 1 - y, "entropy": y_nan, "lr": np.full(50, 3e-4)}
    img = _png(plot_training_curves(steps, series, tmp_path / "train.png", title="ppo"))
    assert img.shape == (round((2.9 * 2 + 0.4) * 150), round(4.3 * 3 * 150), 3)
    assert img.std() > 10
    with pytest.raises(ValueError, match="loss"):
        plot_training_curves(steps, {"loss": y[:-1]}, tmp_path / "bad.png")


def test_quat_to_rotmat_matches_yaw():
    yaw = 0.7
    r = quat_to_rotmat_np(np.array([np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]))
    np.testing.assert_allclose(r @ [1.0, 0, 0], [np.cos(yaw), np.sin(yaw), 0], atol=1e-12)


def test_video_frames_size_and_motion(tmp_path):
    t, pos, quat, ref = _flight(1.0)  # t in [0, 0.99]
    out = render_flight_video(t, pos, quat, tmp_path / "v" / "flight.mp4", ref=ref, goal=np.zeros(3), fps=10,
                              size=(160, 120), title="hover")  # fmt: skip
    frames, size = _decode(out)
    assert size == (160, 120)
    assert abs(len(frames) - (t[-1] - t[0]) * 10) <= 1
    assert frames[0].shape == (120, 160, 3)
    assert np.abs(frames[0].astype(float) - frames[-1].astype(float)).mean() > 0.5  # the drone moved


def test_video_multi_drone_and_speedup(tmp_path):
    t, pos, quat, ref = _flight(2.0, k=3)
    out = render_flight_video(t, pos, quat, tmp_path / "multi.mp4", ref=ref, fps=10, size=(128, 96), speedup=2.0)
    frames, size = _decode(out)
    assert size == (128, 96)
    assert abs(len(frames) - (t[-1] - t[0]) * 10 / 2.0) <= 1


def test_video_rejects_odd_size_and_bad_shapes(tmp_path):
    t, pos, quat, _ = _flight(1.0)
    with pytest.raises(ValueError, match="even"):
        render_flight_video(t, pos, quat, tmp_path / "x.mp4", size=(161, 120))
    with pytest.raises(ValueError, match="pos/quat"):
        render_flight_video(t, pos, quat[:-1], tmp_path / "x.mp4")
    with pytest.raises(ValueError, match="ref must be"):
        render_flight_video(t, pos, quat, tmp_path / "x.mp4", ref=np.zeros((5, 3)))


def test_missing_av_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now raises ImportError
    t, pos, quat, _ = _flight(1.0)
    with pytest.raises(MissingExtraError, match=r"robolearn\[viz\]") as e:
        render_flight_video(t, pos, quat, tmp_path / "x.mp4")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "x.mp4").exists()


def test_missing_matplotlib_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    t, pos, _, ref = _flight(1.0)
    with pytest.raises(MissingExtraError, match=r"pip install 'robolearn\[viz\]'"):
        plot_flight(t, pos, ref, tmp_path / "x.png")
    with pytest.raises(MissingExtraError, match="matplotlib"):
        plot_training_curves(np.arange(3), {"a": np.zeros(3)}, tmp_path / "y.png")
