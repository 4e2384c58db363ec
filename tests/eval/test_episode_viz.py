"""Evaluation visuals of manipulation tasks: per-episode curves (episodes.png) and camera frames (episodes.mp4)."""

import json

import numpy as np
import pytest

from robolearn.cli.main import main
from robolearn.core.errors import MissingExtraError
from robolearn.envs import registry
from robolearn.eval.rollout import evaluate_policy
from robolearn.sim.backend import import_mujoco

try:  # before anything imports mujoco: EGL offscreen rendering on a machine without a display
    import_mujoco()
except MissingExtraError as e:
    pytest.skip(str(e), allow_module_level=True)
av = pytest.importorskip("av")
pytest.importorskip("matplotlib")


def test_rollout_records_the_final_state_not_the_reset_one():
    """The scripted expert lifts the cube; the last sample of each episode is the lifted cube, held after the end
    (it used to be the next episode's start, after the auto-reset)."""
    env = registry.make("arm-lift", num_envs=2, seed=1, randomize={}, obs_noise={})
    curves = {c.name: c for c in env.viz_curves()}
    height = curves["cube height"]
    metrics, traj = evaluate_policy(env, env.expert_action, record=2,
                                    record_fn=lambda: {"h": height.fn(env), "won": env.ever_succeeded.float()})
    assert metrics["success"] == 1.0
    t, lengths = traj["t"][:, 0].numpy(), traj["length_s"].numpy()
    assert len(t) == round(lengths.max() / env.step_dt) + 1  # samples 0 … the last episode's final step
    for k in range(2):
        end = round(lengths[k] / env.step_dt)
        h = traj["h"][:, k].numpy()
        assert h[end] > env.cfg.lift_height  # the success state, not a cube back on the table
        assert np.all(h[end:] == h[end]) and np.all(traj["won"][end:, k].numpy() == 1.0)
        assert traj["won"][end - 1, k] == 0.0  # success ends the episode in the step it happens


def test_eval_cli_writes_episode_curves_and_video(tmp_path, capsys):
    out = tmp_path / "eval"
    # 0.5 s episodes at 50 Hz: both end by time limit at step 25; frames every 2nd step (25 fps) + the last one
    assert main(["eval", "expert:arm-lift", "--episodes", "2", "--set", "episode_length_s=0.5", "--out",
                 str(out)]) == 0
    report = json.loads((out / "eval.json").read_text())
    assert report["env_set"] == ["episode_length_s=0.5"] and report["length_s"] == pytest.approx(0.5)
    png = out / "episodes.png"
    assert png.stat().st_size > 20_000
    with av.open(str(out / "episodes.mp4")) as c:
        stream = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(stream)]
    assert len(frames) == 14  # steps 0, 2, …, 24, then 25
    assert frames[0].shape == (240, 2 * 320 + 4, 3)
    assert frames[-1].std() > 10  # a scene, not a blank frame
    printed = capsys.readouterr().out
    assert "episodes.png" in printed and "episodes.mp4" in printed


def test_eval_cli_writes_the_video_on_mjwarp_too(tmp_path, capsys):
    """A run trained with `backend: mjwarp` gets the same episodes.mp4: MuJoCo's OpenGL draws a host copy of each
    shown env (warp's CPU device here), and its frames match the mujoco_cpu video's scene."""
    pytest.importorskip("mujoco_warp")
    frames = {}
    for backend in ("mujoco_cpu", "mjwarp"):
        out = tmp_path / backend
        assert main(["eval", "expert:arm-lift", "--episodes", "2", "--set", "episode_length_s=0.2", "--set",
                     f"backend={backend}", "--no-plot", "--out", str(out)]) == 0
        with av.open(str(out / "episodes.mp4")) as c:
            frames[backend] = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
    printed = capsys.readouterr().out
    assert "note: no episodes.mp4" not in printed and printed.count("episodes.mp4") == 2
    warp, cpu = frames["mjwarp"], frames["mujoco_cpu"]
    assert len(warp) == len(cpu) == 6 and warp[0].shape == (240, 2 * 320 + 4, 3)  # steps 0, 2, …, 8, then 10
    assert warp[-1].std() > 10  # a scene, not a blank frame

    def diff(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a.astype(float) - b.astype(float)).mean())

    assert diff(warp[0], warp[-1]) > 2.0  # the arm moves (measured ~3.9 levels over the 0.2 s)
    for a, b in zip(warp, cpu, strict=True):  # the same scene each frame (measured ≤ 0.14: float32 physics, H.264)
        assert diff(a, b) < 1.0


def test_renderer_refuses_a_backend_without_a_host_copy():
    from robolearn.core.errors import RobolearnError
    from robolearn.envs.viz import EpisodeRenderer

    with pytest.raises(RobolearnError, match=r"^quadrotor-hover: videos draw a MuJoCo backend's host copy of an env "
                                             r"\(render_model, data\(env\)\); 'QuadrotorSim' has none$"):
        EpisodeRenderer(registry.make("quadrotor-hover", num_envs=1))


def test_eval_cli_bimanual_plots_the_stage(tmp_path):
    out = tmp_path / "eval"
    assert main(["eval", "expert:bimanual-transfer-cube", "--episodes", "1", "--set", "episode_length_s=0.2",
                 "--no-video", "--out", str(out)]) == 0
    assert (out / "episodes.png").stat().st_size > 20_000 and not (out / "episodes.mp4").exists()


def test_eval_cli_bad_set_key_is_one_line(tmp_path, capsys):
    assert main(["eval", "expert:arm-lift", "--episodes", "1", "--set", "lift_heigth=0.2", "--out",
                 str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: --set (task 'arm-lift'): unknown key 'lift_heigth' (did you mean 'lift_height'?)")


def test_state_dict_skips_renderers():
    from robolearn.envs.viz import EpisodeRenderer

    env = registry.make("arm-lift", num_envs=1, seed=0)
    env.reset()
    env.render_camera("front")
    env.viz = EpisodeRenderer(env, (64, 64), camera="front")
    keys = env.state_dict()
    assert not [k for k in keys if k.startswith(("_renderer", "viz"))]
