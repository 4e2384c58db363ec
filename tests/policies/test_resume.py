"""Exact resume of imitation runs: a killed-and-resumed run trains bit-identical weights; evaluation leaves the
training streams alone; a damaged or missing checkpoint is a clear error."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from il_fixtures import EASY_HOVER, hover_demos, tiny_act, tiny_diffusion, write_fixture

from robolearn.cli.main import main
from robolearn.core.errors import CheckpointError, ConfigError
from robolearn.core.seeding import preserved_rng
from robolearn.learners.imitation import ACTRunCfg, DiffusionRunCfg, ImitationTrainer, lr_factor


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class Killed(Exception):
    """Stands in for SIGKILL: the loop stops between two steps, nothing more is written."""


def kill_after(trainer: ImitationTrainer, steps: int) -> None:
    """Make `trainer.train()` die when it asks for batch `steps + 1`."""
    batches = trainer.batches

    def dying():
        for i, batch in enumerate(batches()):
            if i == steps:
                raise Killed
            yield batch

    trainer.batches = dying


def run_cfg(kind: str, data: Path, **kw):
    """7 steps of 4 samples on the 12-frame fixture (3 batches an epoch): the run crosses two epoch boundaries."""
    common = {"dataset": str(data), "steps": 7, "batch_size": 4, "checkpoint_every": 3, "log_every": 1,
              "tensorboard": False, "lr_schedule": "cosine", "warmup_steps": 2, **kw}
    if kind == "act":  # dropout on, CVAE sampling, random image shift: every random stream of ACT training
        return ACTRunCfg(**common, policy=tiny_act(dropout=0.1, color_jitter=0.2))
    # noise, timesteps, shift and colour jitter, and the EMA copy
    return DiffusionRunCfg(**common, policy=tiny_diffusion(color_jitter=0.2))


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    differ = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:3]}"


def losses(history: list[dict]) -> list[float]:
    return [h["loss"] for h in history]


@pytest.mark.parametrize("kind", ["act", "diffusion"])
def test_killed_and_resumed_run_equals_the_uninterrupted_one(kind, tmp_path):
    data = write_fixture(tmp_path / "fix.zarr")  # with a camera: augmentation is part of the stream
    whole = ImitationTrainer(run_cfg(kind, data), run_dir=tmp_path / "whole", quiet=True)
    whole.train()

    first = ImitationTrainer(run_cfg(kind, data), run_dir=tmp_path / "killed", quiet=True)
    kill_after(first, 5)  # checkpoint at step 3, killed during step 6
    with pytest.raises(Killed):
        first.train()
    assert [p.name for p in (tmp_path / "killed" / "checkpoints").iterdir()] == ["step_000003.safetensors"]
    del first
    torch.rand(100)  # whatever this process drew since does not matter: the RNGs come from the checkpoint
    resumed = ImitationTrainer.resume(tmp_path / "killed", kind=kind, quiet=True)
    assert resumed.step == 3 and resumed.sampler.epoch == 1 and resumed.sampler.cursor == 0
    summary = resumed.train()

    assert summary["resumed_from"] == 3 and summary["steps"] == 7
    assert_same_weights(whole.policy, resumed.policy)  # the EMA copy of diffusion included
    assert losses(resumed.history) == losses(whole.history)
    assert [h["lr"] for h in resumed.history] == [h["lr"] for h in whole.history]
    assert resumed.optimizer.state_dict()["state"][0]["step"] == whole.optimizer.state_dict()["state"][0]["step"]


def test_block_order_resumes_exactly_and_is_chosen_for_a_store_that_is_not_cached(tmp_path, monkeypatch):
    data = write_fixture(tmp_path / "fix.zarr", images=False)
    whole = ImitationTrainer(run_cfg("act", data, sample_block=2), run_dir=tmp_path / "whole", quiet=True)
    assert whole.sampler.block == 2
    whole.train()
    first = ImitationTrainer(run_cfg("act", data, sample_block=2), run_dir=tmp_path / "killed", quiet=True)
    kill_after(first, 5)
    with pytest.raises(Killed):
        first.train()
    resumed = ImitationTrainer.resume(tmp_path / "killed", kind="act", quiet=True)
    assert resumed.sampler.block == 2
    resumed.train()
    assert losses(resumed.history) == losses(whole.history)
    # too little memory to cache the store: block order by itself (0 = automatic)
    monkeypatch.setattr("robolearn.data.windows.available_memory", lambda: 0)
    uncached = ImitationTrainer(run_cfg("act", data, steps=2), run_dir=tmp_path / "uncached", quiet=True)
    assert not uncached.dataset.cached and uncached.sampler.block == uncached.dataset.suggested_block() >= 32
    assert uncached.train()["steps"] == 2


def test_cli_resume_in_a_new_process_state(tmp_path, capsys):
    """`robolearn train act --resume RUN_DIR` (and `train --resume`) after a kill: same final checkpoint."""
    data = write_fixture(tmp_path / "fix.zarr", images=False)
    flags = ["--dataset", str(data), "--steps", "5", "--batch-size", "4", "--checkpoint-every", "2",
             "--log-every", "1", "--seed", "3", "--quiet", "--policy.dim-model", "16", "--policy.n-heads", "2",
             "--policy.dim-feedforward", "32", "--policy.n-encoder-layers", "1", "--policy.n-vae-encoder-layers",
             "1", "--policy.chunk-size", "4", "--lr-schedule", "cosine"]
    assert main(["train", "act", *flags, "--run-dir", str(tmp_path / "whole")]) == 0
    assert main(["train", "act", *flags, "--run-dir", str(tmp_path / "killed")]) == 0
    capsys.readouterr()
    # the run "was killed" after its step-4 checkpoint: drop what came later
    ckpts = tmp_path / "killed" / "checkpoints"
    (ckpts / "step_000005.safetensors").unlink()
    (tmp_path / "killed" / "summary.json").unlink()
    # the same command again plus --resume (a differing flag is refused), or just --resume
    assert main(["train", "act", *flags, "--steps", "6", "--resume", str(tmp_path / "killed")]) == 2
    assert "steps: 6 here, 5 in the run" in capsys.readouterr().err
    assert main(["train", "act", *flags, "--resume", str(tmp_path / "killed")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["resumed_from"] == 4 and out["steps"] == 5

    from robolearn.core.checkpoint import load_checkpoint

    a, meta_a = load_checkpoint(tmp_path / "whole" / "checkpoints" / "step_000005.safetensors")
    b, meta_b = load_checkpoint(ckpts / "step_000005.safetensors")
    assert all(torch.equal(v, b["policy"][k]) for k, v in a["policy"].items())
    assert losses(meta_a["history"]) == losses(meta_b["history"])
    # `train --resume` finds the kind itself
    (ckpts / "step_000005.safetensors").unlink()
    assert main(["train", "--resume", str(tmp_path / "killed"), "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["resumed_from"] == 4


def test_evaluation_does_not_change_training_and_resumes_with_it(tmp_path):
    """Diffusion sampling in evaluation rollouts draws noise: under preserved_rng() it leaves training alone."""
    data = hover_demos(tmp_path / "hover.zarr", episodes=4)

    def cfg(eval_every: int) -> DiffusionRunCfg:
        return DiffusionRunCfg(dataset=str(data), task="quadrotor-hover", env_set=EASY_HOVER, steps=6, batch_size=8,
                               eval_every=eval_every, eval_episodes=2, checkpoint_every=3, log_every=1,
                               tensorboard=False, policy=tiny_diffusion(num_inference_steps=2))

    quiet = ImitationTrainer(cfg(0), run_dir=tmp_path / "no-eval", quiet=True)
    quiet.train()
    evaluated = ImitationTrainer(cfg(2), run_dir=tmp_path / "eval", quiet=True)
    evaluated.train()
    assert sum("eval/success" in h for h in evaluated.history) == 3
    assert_same_weights(quiet.policy, evaluated.policy)
    assert losses(quiet.history) == losses(evaluated.history)

    killed = ImitationTrainer(cfg(2), run_dir=tmp_path / "killed", quiet=True)
    kill_after(killed, 4)
    with pytest.raises(Killed):
        killed.train()
    resumed = ImitationTrainer.resume(tmp_path / "killed", quiet=True)
    resumed.train()
    assert_same_weights(evaluated.policy, resumed.policy)
    def evals(history: list[dict]) -> list[dict]:  # NaN (no final error without a success) as None
        return [{k: None if v != v else v for k, v in h.items() if k.startswith("eval/")} for h in history]

    assert evals(resumed.history) == evals(evaluated.history)  # the eval env's generator is resumed too


def test_resume_errors(tmp_path, capsys):
    data = write_fixture(tmp_path / "fix.zarr", images=False)
    run = tmp_path / "run"
    # nothing to resume: the run stopped before its first checkpoint
    trainer = ImitationTrainer(run_cfg("act", data, checkpoint_every=100), run_dir=run, quiet=True)
    kill_after(trainer, 2)
    with pytest.raises(Killed):
        trainer.train()
    with pytest.raises(CheckpointError, match="no checkpoint to resume from"):
        ImitationTrainer.resume(run)
    with pytest.raises(CheckpointError, match="no such run directory"):
        ImitationTrainer.resume(tmp_path / "nowhere")

    run = tmp_path / "run2"
    trainer = ImitationTrainer(run_cfg("act", data, checkpoint_every=2), run_dir=run, quiet=True)
    kill_after(trainer, 5)
    with pytest.raises(Killed):
        trainer.train()
    ckpts = run / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_000002.safetensors", "step_000004.safetensors"]
    # another policy kind
    with pytest.raises(CheckpointError, match="holds a 'act' run, not 'diffusion'"):
        ImitationTrainer.resume(run, kind="diffusion")
    # a damaged latest checkpoint: named, and the earlier one offered
    latest = ckpts / "step_000004.safetensors"
    raw = bytearray(latest.read_bytes())
    raw[-10] ^= 0xFF
    latest.write_bytes(bytes(raw))
    assert main(["train", "act", "--resume", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "step_000004.safetensors: corrupted data" in err
    assert "earlier checkpoint step_000002.safetensors" in err
    latest.write_bytes(bytes(raw[:100]))  # truncated
    with pytest.raises(CheckpointError, match="step_000004.safetensors: not a valid safetensors file"):
        ImitationTrainer.resume(run)
    # moved away, the earlier one resumes; a finished run has nothing left to resume
    latest.unlink()
    assert ImitationTrainer.resume(run, quiet=True).train()["resumed_from"] == 2
    with pytest.raises(CheckpointError, match=r"the run is complete \(step 7 of 7\)"):
        ImitationTrainer.resume(run)
    assert main(["train", "act", "--resume", str(run), "--run-dir", str(tmp_path / "x")]) == 2
    assert "give no --run-dir" in capsys.readouterr().err


def test_lr_schedule_by_hand():
    f = lr_factor("cosine", warmup=2, total=6)
    assert [f(s) for s in range(2)] == [0.5, 1.0]  # warm-up steps 1 and 2
    assert f(2) == 1.0 and math.isclose(f(4), 0.5) and 0 < f(5) < 0.5  # cosine over steps 3..6
    assert [lr_factor("constant", 0, 10)(s) for s in (0, 9)] == [1.0, 1.0]
    with pytest.raises(ConfigError, match="lr_schedule must be constant or cosine"):
        lr_factor("linear", 0, 10)


def test_preserved_rng_restores_every_stream():
    import random

    import numpy as np

    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    np.random.normal()  # a cached second normal draw in NumPy's state
    with preserved_rng():
        inside = (torch.rand(3), np.random.normal(size=3), random.random())
    after = (torch.rand(3), np.random.normal(size=3), random.random())
    assert torch.equal(inside[0], after[0]) and np.array_equal(inside[1], after[1]) and inside[2] == after[2]


@pytest.mark.slow
def test_torchrun_ddp_resume(tmp_path):
    """Two Gloo ranks: each saves its own RNG and sampler state, and a resumed run ends with the same weights."""
    import os
    import shutil
    import subprocess
    import sys

    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    if torchrun is None:
        pytest.skip("torchrun not found next to the interpreter")
    data = write_fixture(tmp_path / "fix.zarr", images=False)
    flags = ["--dataset", str(data), "--steps", "4", "--batch-size", "4", "--checkpoint-every", "2", "--threads",
             "1", "--quiet", "--policy.dim-model", "16", "--policy.n-heads", "2", "--policy.dim-feedforward", "32",
             "--policy.n-encoder-layers", "1", "--policy.n-vae-encoder-layers", "1", "--policy.chunk-size", "4",
             "--policy.dropout", "0.1"]

    def torchrun_train(*args: str) -> None:
        out = subprocess.run([torchrun, "--nproc_per_node", "2", "-m", "robolearn.cli.main", "train", "act", *args],
                             capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert out.returncode == 0, out.stderr[-2000:]

    torchrun_train(*flags, "--run-dir", str(tmp_path / "whole"))
    torchrun_train(*flags, "--run-dir", str(tmp_path / "killed"))
    ckpts = tmp_path / "killed" / "checkpoints"
    assert (ckpts / "rank1" / "step_000002.safetensors").is_file()
    (ckpts / "step_000004.safetensors").unlink()  # killed after the step-2 checkpoint
    torchrun_train("--resume", str(tmp_path / "killed"), "--quiet")

    from robolearn.core.checkpoint import load_checkpoint

    a, _ = load_checkpoint(tmp_path / "whole" / "checkpoints" / "step_000004.safetensors")
    b, _ = load_checkpoint(ckpts / "step_000004.safetensors")
    assert all(torch.equal(v, b["policy"][k]) for k, v in a["policy"].items())
    r0, _ = load_checkpoint(ckpts / "step_000002.safetensors")
    r1, _ = load_checkpoint(ckpts / "rank1" / "step_000002.safetensors")
    assert not torch.equal(r0["rng"]["torch"], r1["rng"]["torch"])  # each rank its own dropout and noise
