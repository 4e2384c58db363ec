"""The CLI as a user runs it: tasks, tiny train -> eval -> export -> eval of the artifact, and bad input."""

import json

import pytest

from robolearn.cli.main import main


def test_tasks_lists_shapes(capsys):
    assert main(["tasks", "--json"]) == 0
    tasks = json.loads(capsys.readouterr().out)
    hover = tasks["quadrotor-hover"]
    assert hover["obs_dims"]["policy"] == 3 + 9 + 3 + 3 + 4 * 32
    assert hover["action"]["dim"] == 4 and hover["action"]["rate_hz"] == 100.0
    assert main(["tasks", "quadrotor-track"]) == 0


def test_train_eval_export_eval_artifact(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--task", "quadrotor-hover", "--learner", "ppo", "--run-dir", str(run), "--quiet",
                 "--iterations", "2", "--env.num-envs", "32", "--algo.num-steps", "4",
                 "--algo.actor-hidden", "16", "16", "--no-tensorboard"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["iterations"] == 2 and (run / "checkpoints").is_dir()

    assert main(["eval", str(run), "--episodes", "8"]) == 0
    report = json.loads((run / "eval" / "eval.json").read_text())
    for key in ("success", "pos_error_rms", "crash"):
        assert 0.0 <= report[key] or key == "pos_error_rms"
    assert (run / "eval" / "flight.png").stat().st_size > 10_000
    assert (run / "eval" / "flight.mp4").stat().st_size > 1_000

    assert main(["export", str(run)]) == 0
    art = run / "artifact"
    for f in ("manifest.json", "weights.safetensors", "policy.onnx", "c/rl_policy.c", "c/rl_policy.h"):
        assert (art / f).exists(), f
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["task"] == "quadrotor-hover" and manifest["control_rate_hz"] == 100.0
    assert [t["name"] for t in manifest["observation"]["terms"]][:2] == ["pos_error", "rotation_matrix"]

    assert main(["eval", str(art), "--episodes", "8", "--no-video", "--out", str(tmp_path / "art-eval")]) == 0
    torch_report, onnx_report = report, json.loads((tmp_path / "art-eval" / "eval.json").read_text())
    assert onnx_report["episodes"] == 8 and "success" in onnx_report
    # same seed, same episodes: the exported policy flies like the trained one
    assert abs(onnx_report["length_s"] - torch_report["length_s"]) < 0.05

    # exporting again would overwrite: refused, the artifact is intact
    assert main(["export", str(run)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (art / "policy.onnx").exists()


def test_bad_input_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: quadrotor-hover\nlearner: ppo\nenv:\n  num_envs: many\n")
    assert main(["train", "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "env.num_envs" in err and str(bad) in err
    broken = tmp_path / "broken.yaml"
    broken.write_text("task: [quadrotor\n")
    assert main(["train", "--config", str(broken)]) == 2
    assert "broken.yaml" in capsys.readouterr().err
    assert main(["train", "--task", "nope", "--learner", "ppo"]) == 2
    assert "unknown task 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--task", "quadrotor-hover", "--learner", "ppo", "--env.bogus", "1"])
    assert main(["eval", str(tmp_path / "nothing")]) == 2


def test_eval_scripted_expert(tmp_path):
    assert main(["eval", "expert:quadrotor-hover", "--episodes", "8", "--no-video", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["task"] == "quadrotor-hover" and report["episodes"] == 8
    assert (tmp_path / "flight.png").exists()
    assert main(["eval", "expert:quadrotor-hovr", "--episodes", "8"]) == 2
