"""Imitation training: a short ACT run on scripted hover demos beats the untrained policy; CLI; failure modes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from il_fixtures import EASY_HOVER, STATE, hover_demos, tiny_act, tiny_diffusion, write_fixture

from robolearn.cli.main import main
from robolearn.core.errors import CheckpointError
from robolearn.data.stats import compute_stats, save_stats
from robolearn.data.store import EpisodeWriter
from robolearn.learners.imitation import (
    ACTRunCfg,
    DiffusionRunCfg,
    ImitationTrainer,
    NonFiniteLossError,
    load_policy_checkpoint,
)
from robolearn.policies.act import ACTConfig
from robolearn.policies.common import PolicyInputError


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_act_on_hover_demos_beats_the_untrained_policy(tmp_path):
    """1,200 steps of ACT on 32 DART-style expert demos: far fewer crashes and longer flights than untrained."""
    data = hover_demos(tmp_path / "hover.zarr", episodes=32, noise=0.05)
    cfg = ACTRunCfg(dataset=str(data), task="quadrotor-hover", env_set=EASY_HOVER, steps=1200, batch_size=64,
                    eval_episodes=32, log_every=100, checkpoint_every=10_000, runs_root=str(tmp_path / "runs"),
                    tensorboard=False,
                    policy=ACTConfig(dim_model=64, n_heads=4, dim_feedforward=256, n_encoder_layers=2,
                                     n_vae_encoder_layers=2, chunk_size=5, dropout=0.0, kl_weight=1.0, lr=1e-3))
    trainer = ImitationTrainer(cfg, quiet=True)
    before = trainer.evaluate()
    summary = trainer.train()
    assert before["crash"] >= 0.9
    assert summary["eval/crash"] <= 0.5
    assert summary["eval/length_s"] >= before["length_s"] + 0.5
    # the checkpoint rebuilds the same policy
    policy, meta = load_policy_checkpoint(summary["checkpoint"], kind="act")
    assert meta["step"] == 1200 and meta["task"] == "quadrotor-hover"
    obs = {STATE: torch.randn(2, 146)}
    trainer.policy.eval()
    torch.testing.assert_close(policy.predict_action_chunk(obs), trainer.policy.predict_action_chunk(obs))
    # exported, it flies through the robot-side runtime (one action queue per env copy) as it does in torch
    pytest.importorskip("onnxruntime")
    run = Path(summary["run_dir"])
    assert main(["export", str(run)]) == 0
    manifest = json.loads((run / "artifact" / "manifest.json").read_text())
    assert manifest["network"]["kind"] == "act" and manifest["task"] == "quadrotor-hover"
    assert manifest["observation"]["terms"][0]["name"] == "pos_error" and manifest["action"]["dim"] == 4
    assert main(["eval", str(run / "artifact"), "--episodes", "32", "--no-video", "--no-plot"]) == 0
    report = json.loads((run / "artifact-eval" / "eval.json").read_text())
    assert report["crash"] <= 0.5 and report["length_s"] >= before["length_s"] + 0.5, report


@pytest.mark.parametrize("kind", ["act", "diffusion"])
def test_cli_trains_and_checkpoints(kind, tmp_path, capsys):
    data = write_fixture(tmp_path / "fix.zarr")
    flags = ["--policy.dim-model", "16", "--policy.n-heads", "2", "--policy.dim-feedforward", "32",
             "--policy.n-encoder-layers", "1", "--policy.n-vae-encoder-layers", "1", "--policy.chunk-size", "4",
             "--policy.backbone-width", "4"] if kind == "act" else \
        ["--policy.horizon", "4", "--policy.n-action-steps", "2", "--policy.down-dims", "8", "16",
         "--policy.n-groups", "4", "--policy.backbone-width", "4", "--policy.spatial-keypoints", "4"]
    rc = main(["train", kind, "--dataset", str(data), "--steps", "3", "--batch-size", "4", "--threads", "1",
               "--run-dir", str(tmp_path / "run"), "--quiet", *flags])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 3 and summary["policy"] == kind
    ckpt = tmp_path / "run" / "checkpoints" / "step_000003.safetensors"
    assert ckpt.exists() and (tmp_path / "run" / "config.yaml").exists() and list((tmp_path / "run" / "tb").iterdir())
    other = "diffusion" if kind == "act" else "act"
    with pytest.raises(CheckpointError, match=f"holds a '{kind}' policy, not '{other}'"):
        load_policy_checkpoint(ckpt, kind=other)
    # starting a run of the other kind from this checkpoint: one-line error, exit code 2
    rc = main(["train", other, "--dataset", str(data), "--steps", "1", "--init", str(ckpt), "--quiet",
               "--run-dir", str(tmp_path / "run2")])
    assert rc == 2
    assert f"holds a '{kind}' policy, not '{other}'" in capsys.readouterr().err
    # eval needs the task the run was trained for
    assert main(["eval", str(tmp_path / "run"), "--episodes", "2"]) == 2
    assert "trained without --task" in capsys.readouterr().err
    if kind == "act":  # an artifact is for a task's robot: a run without one has nothing to export for
        pytest.importorskip("onnxruntime")
        assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "art")]) == 2
        assert "trained without --task" in capsys.readouterr().err and not (tmp_path / "art").exists()


def test_cli_shape_mismatch_with_the_task(tmp_path, capsys):
    data = write_fixture(tmp_path / "fix.zarr", images=False)
    rc = main(["train", "act", "--dataset", str(data), "--task", "quadrotor-hover", "--steps", "1", "--quiet",
               "--run-dir", str(tmp_path / "run")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "key 'observation.policy'" in err and "(146,)" in err and len(err.strip().splitlines()) == 1


def test_camera_the_task_does_not_render_is_an_error(tmp_path):
    from robolearn.data.store import Feature

    path = tmp_path / "cam.zarr"
    feats = {STATE: Feature((146,)), "action": Feature((4,)), "observation.images.camera": Feature((8, 8, 3), "uint8")}
    with EpisodeWriter(path, feats, fps=100.0, durable=False) as w:
        w.add_episode({STATE: np.zeros((5, 146), np.float32), "action": np.zeros((5, 4), np.float32),
                       "observation.images.camera": np.zeros((5, 8, 8, 3), np.uint8)})
    cfg = ACTRunCfg(dataset=str(path), task="quadrotor-hover", steps=1, runs_root=str(tmp_path), policy=tiny_act())
    with pytest.raises(PolicyInputError, match="key 'observation.images.camera': task 'quadrotor-hover' "
                                               "observations do not include it"):
        ImitationTrainer(cfg, quiet=True)


def test_missing_feature_is_an_error(tmp_path):
    data = write_fixture(tmp_path / "fix.zarr", images=False)
    cfg = DiffusionRunCfg(dataset=str(data), steps=1, runs_root=str(tmp_path / "runs"),
                          policy=tiny_diffusion(image_keys=("observation.images.wrist",)))
    with pytest.raises(PolicyInputError, match="no feature 'observation.images.wrist'"):
        ImitationTrainer(cfg, quiet=True)


def test_non_finite_loss_stops_with_step_and_batch(tmp_path):
    data = write_fixture(tmp_path / "fix.zarr", images=False)
    stats = compute_stats(data)
    with EpisodeWriter(data) as w:  # an episode with a NaN action, after the statistics were taken
        w.add_episode({STATE: np.zeros((5, 6), np.float32), "action": np.full((5, 2), np.nan, np.float32)})
    save_stats(data, stats)
    run = tmp_path / "run"
    cfg = ACTRunCfg(dataset=str(data), steps=50, batch_size=64, checkpoint_every=1, runs_root=str(tmp_path),
                    tensorboard=False, policy=tiny_act())
    trainer = ImitationTrainer(cfg, run_dir=run, quiet=True)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(nan\) at step 1: batch of frames .* from "
                                                 r"episodes \[.*2.*\]"):
        trainer.train()
    assert not (run / "checkpoints").exists()


def test_rl_train_path_still_parses(tmp_path, capsys):
    rc = main(["train", "--task", "quadrotor-hover"])  # no learner: the RL path's own error
    assert rc == 2
    assert "no learner given" in capsys.readouterr().err


def test_mixed_precision_steps(tmp_path):
    data = write_fixture(tmp_path / "fix.zarr", images=False)
    cfg = ACTRunCfg(dataset=str(data), steps=2, batch_size=8, amp=True, runs_root=str(tmp_path), tensorboard=False,
                    policy=tiny_act())
    summary = ImitationTrainer(cfg, run_dir=tmp_path / "run", quiet=True).train()
    assert summary["steps"] == 2 and np.isfinite(summary["final_loss"])


@pytest.mark.slow
def test_torchrun_ddp_on_cpu(tmp_path):
    """Two Gloo ranks train together; only rank 0 writes the run."""
    import os
    import shutil
    import subprocess
    import sys

    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    if torchrun is None:
        pytest.skip("torchrun not found next to the interpreter")
    data = write_fixture(tmp_path / "fix.zarr", images=False)
    out = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "-m", "robolearn.cli.main", "train", "act", "--dataset", str(data),
         "--steps", "2", "--batch-size", "4", "--threads", "1", "--quiet", "--run-dir", str(tmp_path / "run"),
         "--policy.dim-model", "16", "--policy.n-heads", "2", "--policy.dim-feedforward", "32",
         "--policy.n-encoder-layers", "1", "--policy.n-vae-encoder-layers", "1", "--policy.chunk-size", "4"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["steps"] == 2  # one summary: rank 0's
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["step_000002.safetensors"]
    assert not any(p.name.startswith(".rank") for p in (tmp_path / "run").iterdir())


@pytest.mark.parametrize("kind", ["act", "diffusion"])
def test_imitation_presets_load(kind):
    from pathlib import Path

    from robolearn.core.config import from_dict, load_yaml
    from robolearn.learners.imitation import RUN_CFGS

    path = Path(__file__).resolve().parents[2] / "configs" / "imitation" / f"quadrotor-hover-{kind}.yaml"
    cfg = from_dict(RUN_CFGS[kind], {**load_yaml(path), "dataset": "demos.zarr"}, source=str(path))
    assert cfg.task == "quadrotor-hover" and cfg.policy.lr == 1e-3
