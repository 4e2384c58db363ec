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


def test_sweep_refuses_a_task_without_the_interface():
    pytest.importorskip("mujoco")
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
