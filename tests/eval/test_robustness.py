"""The disturbance sweep on the real quadrotor with the scripted expert: bigger pushes hurt more; table and plot."""

import dataclasses

import pytest

from robolearn.core.env import NotDisturbableError
from robolearn.envs import registry
from robolearn.eval.robustness import SweepCfg, disturbance_sweep, format_table, plot_robustness


def test_sweep_rows_table_and_plot(tmp_path):
    cfg = dataclasses.replace(registry.cfg_class("quadrotor-hover")(), num_envs=16, episode_length_s=1.5,
                              disturbance_max_force=1.0)

    def make_env():
        return registry.make("quadrotor-hover", cfg, seed=5)

    probe = make_env()
    rows = disturbance_sweep(make_env, probe.expert_action,
                             SweepCfg(magnitudes=(0.0, 1.0), push_start_s=0.5, push_duration_s=0.3))
    assert [(r["kind"], r["magnitude"]) for r in rows] == [("push", 0.0), ("push", 1.0), ("pull", 0.0),
                                                           ("pull", 1.0)]
    by = {(r["kind"], r["magnitude"]): r for r in rows}
    assert by[("push", 0.0)]["survival"] == by[("pull", 0.0)]["survival"]  # same starts, no disturbance
    assert by[("push", 0.0)]["tracking_metric"] == "pos_error_rms"
    # a 1 N pull (almost 4× the drone's weight) sideways is not survivable; the expert holds without one
    assert by[("pull", 1.0)]["survival"] < 0.2 < by[("pull", 0.0)]["survival"]
    assert by[("push", 1.0)]["tracking_error"] > by[("push", 0.0)]["tracking_error"]
    table = format_table({"expert": rows})
    assert "| expert | push 0.30 s | 1.000 |" in table and "constant pull" in table
    png = plot_robustness({"expert": rows, "again": rows}, tmp_path / "r.png", title="t")
    assert png.stat().st_size > 10_000


@pytest.mark.parametrize("kind", ["payload", "terrain"])
def test_quadruped_conditions_refuse_other_tasks(kind):
    from robolearn.core.errors import RobolearnError

    def make_env(sets=()):
        return registry.make("quadrotor-hover", num_envs=1)

    with pytest.raises(RobolearnError, match=f"kind '{kind}' needs a quadruped task \\('quadrotor-hover' has no"):
        disturbance_sweep(make_env, lambda obs: None, SweepCfg(kinds=(kind,)))


def test_sweep_refuses_a_task_without_the_interface():
    from robolearn.core.errors import MissingExtraError
    from robolearn.sim.backend import import_mujoco

    try:  # EGL, not GLFW: importing mujoco directly here broke the video tests after it (run as one file)
        import_mujoco()
    except MissingExtraError as e:
        pytest.skip(str(e))
    with pytest.raises(NotDisturbableError, match="disturbance sweep: task 'arm-reach'"):
        disturbance_sweep(lambda: registry.make("arm-reach", num_envs=1), lambda obs: None)


def test_eval_cli_sweep_compares_a_hinf_run_with_the_expert(tmp_path, capsys):
    import json

    from robolearn.cli.main import main

    run = tmp_path / "run"
    assert main(["train", "--task", "quadrotor-hover", "--learner", "hinf", "--run-dir", str(run), "--quiet",
                 "--iterations", "2", "--env.num-envs", "8", "--env.episode-length-s", "1.0", "--no-tensorboard",
                 "--algo.actor.num-steps", "4", "--algo.actor.actor-hidden", "16", "--algo.actor.critic-hidden", "16",
                 "--algo.disturber-ppo.actor-hidden", "16", "--algo.disturber-ppo.critic-hidden", "16"]) == 0
    out = tmp_path / "sweep"
    assert main(["eval", str(run), "--disturbance-sweep", "--episodes", "4", "--magnitudes", "1",
                 "--push-start", "0.3", "--compare", "expert:quadrotor-hover", "--out", str(out)]) == 0
    report = json.loads((out / "robustness.json").read_text())
    assert set(report["tables"]) == {"run", "scripted expert"}
    assert all(len(rows) == 2 for rows in report["tables"].values())  # push and pull
    assert (out / "robustness.png").stat().st_size > 10_000
    assert "| scripted expert | constant pull | 0.300 |" in (out / "robustness.md").read_text()


@pytest.fixture(scope="module")
def quadruped_run(tmp_path_factory):
    """A tiny PPO run on quadruped-walk (2 iterations, a checkpoint each): the policy does not matter here."""
    from robolearn.cli.main import main
    from robolearn.core.errors import MissingExtraError
    from robolearn.sim.backend import import_mujoco

    try:  # before anything imports mujoco: EGL offscreen rendering on a machine without a display
        import_mujoco()
    except MissingExtraError as e:
        pytest.skip(str(e))
    run = tmp_path_factory.mktemp("quadruped") / "run"
    assert main(["train", "--task", "quadruped-walk", "--learner", "ppo", "--run-dir", str(run), "--quiet",
                 "--iterations", "2", "--checkpoint-every", "1", "--env.num-envs", "4", "--env.episode-length-s",
                 "0.6", "--no-tensorboard", "--algo.num-steps", "4", "--algo.actor-hidden", "16",
                 "--algo.critic-hidden", "16", "--algo.num-minibatches", "1"]) == 0
    return run


def test_quadruped_sweep_conditions_table_csv_and_video(quadruped_run, tmp_path, capsys):
    import csv
    import json

    av = pytest.importorskip("av")
    from robolearn.cli.main import main

    out = tmp_path / "sweep"
    assert main(["eval", str(quadruped_run), "--disturbance-sweep", "--episodes", "2", "--iteration", "1",
                 "--kinds", "push", "payload", "terrain", "--magnitudes", "0", "1", "--payloads", "0", "3",
                 "--terrains", "flat", "rough", "--terrain-level", "1", "--push-start", "0.1",
                 "--set", "episode_length_s=0.5", "--no-plot", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| run (iter_000001) | payload +3.0 kg | – |" in printed
    assert "| run (iter_000001) | terrain rough, level 1 | – |" in printed
    with (out / "robustness.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["kind"], r["force_n"], r["payload_kg"], r["terrain"]) for r in rows] == [
        ("push", "0.0", "", ""), ("push", "60.0", "", ""), ("payload", "0.0", "0.0", ""),
        ("payload", "0.0", "3.0", ""), ("terrain", "0.0", "", "flat"), ("terrain", "0.0", "", "rough")]
    # the same starts in every condition: flat terrain (the run's) without a push is the unpushed row
    assert rows[4]["tracking_error"] == rows[0]["tracking_error"]
    for r in rows:
        assert float(r["survival"]) + float(r["fall_rate"]) == pytest.approx(1.0)
        assert r["tracking_metric"] == "tracking_error" and float(r["tracking_error"]) >= 0
    report = json.loads((out / "robustness.json").read_text())
    assert report["env_set"] == ["episode_length_s=0.5"]
    (rows_json,) = report["tables"].values()
    assert rows_json[5]["set"] == ["terrain=rough", "start_level=1", "curriculum=false"]
    assert all(r["episode/length_s"] <= 0.5 + 1e-6 for r in rows_json)
    assert not (out / "robustness.png").exists()  # --no-plot (the plot is tested above)
    with av.open(str(out / "robustness.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
    # push from step 5 to 15, then 1 s (50 steps): steps 0 … 65, a frame every 2nd step (25 fps) and the last
    assert len(frames) == 34 and frames[0].shape == (240, 2 * 320 + 4, 3)
    red = lambda img: int(((img[..., 0] > 170) & (img[..., 1] < 80) & (img[..., 2] < 80)).sum())  # noqa: E731
    assert red(frames[5]) > 50 > max(red(frames[0]), red(frames[-1]))  # arrow while pushed (steps 5-14)


def test_plain_eval_of_a_legged_run_writes_a_video_of_three_episodes(quadruped_run, tmp_path, capsys):
    import json

    av = pytest.importorskip("av")
    from robolearn.cli.main import main

    out = tmp_path / "eval"
    assert main(["eval", str(quadruped_run), "--episodes", "2", "--set", "episode_length_s=0.3",
                 "--out", str(out)]) == 0
    assert f"video            {out / 'episodes.mp4'}" in capsys.readouterr().out
    assert json.loads((out / "eval.json").read_text())["episodes"] == 2
    with av.open(str(out / "episodes.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
    # 0.3 s episodes: steps 0 … 16 (one zero-force step, then 0.3 s), a frame every 2nd step and the last
    assert len(frames) == 9 and frames[0].shape == (240, 3 * 320 + 2 * 4, 3)
    assert frames[0].std() > 10  # a rendered scene, not a blank frame
    assert not (out / "robustness.mp4").exists()
    assert main(["eval", str(quadruped_run), "--episodes", "2", "--no-video", "--out", str(tmp_path / "nv")]) == 0
    assert not (tmp_path / "nv" / "episodes.mp4").exists()


@pytest.mark.parametrize(("extra", "message"), [
    (["--set", "terain=rough"], "error: --set (task 'quadruped-walk'): unknown key 'terain' (did you mean 'terrain'?)"),
    (["--kinds", "wind"], "error: disturbance sweep: unknown kind 'wind' (choose from push, pull, payload, terrain)"),
    (["--iteration", "7"], "no checkpoint of iteration 7 (have: 1, 2)"),
    (["--kinds", "terrain", "--terrains", "lava"], "unknown terrain 'lava'"),
])
def test_quadruped_sweep_bad_input_is_one_line(quadruped_run, tmp_path, capsys, extra, message):
    from robolearn.cli.main import main

    assert main(["eval", str(quadruped_run), "--disturbance-sweep", "--episodes", "1", "--magnitudes", "0",
                 "--no-video", "--no-plot", "--out", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err


def test_sweep_labels_tell_runs_of_the_same_name_apart(tmp_path):
    from robolearn.cli.evaluate import _sweep_labels

    a, b, c = str(tmp_path / "q6" / "none"), str(tmp_path / "q7" / "none"), str(tmp_path / "q7" / "learned")
    assert _sweep_labels([c, "expert:quadruped-walk"]) == {c: "learned", "expert:quadruped-walk": "scripted expert"}
    labels = _sweep_labels([c, a, b])
    assert labels == {c: "q7/learned", a: "q6/none", b: "q7/none"}  # before: both "none", one table lost


def test_quadruped_sweep_video_on_mjwarp(quadruped_run, tmp_path, capsys):
    """A run evaluated on `backend: mjwarp` gets robustness.mp4 too (the trunk followed, the push drawn): MuJoCo's
    OpenGL from a host copy of each shown world, on warp's CPU device here."""
    pytest.importorskip("mujoco_warp")
    av = pytest.importorskip("av")
    from robolearn.cli.main import main

    out = tmp_path / "sweep"
    assert main(["eval", str(quadruped_run), "--disturbance-sweep", "--episodes", "2", "--kinds", "push",
                 "--magnitudes", "1", "--push-start", "0.1", "--set", "episode_length_s=0.5", "--set",
                 "backend=mjwarp", "--no-plot", "--out", str(out)]) == 0
    assert "note: no robustness.mp4" not in capsys.readouterr().out
    with av.open(str(out / "robustness.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
    assert len(frames) == 34 and frames[0].shape == (240, 2 * 320 + 4, 3) and frames[0].std() > 10
    red = lambda img: int(((img[..., 0] > 170) & (img[..., 1] < 80) & (img[..., 2] < 80)).sum())  # noqa: E731
    assert red(frames[5]) > 50 > max(red(frames[0]), red(frames[-1]))  # arrow while pushed (steps 5-14)
