"""Learner smoke runs, checkpoint resume equal to an uninterrupted run, and run-config errors."""

import dataclasses

import pytest
import torch

from robolearn.core.errors import ConfigError
from robolearn.learners.runner import Trainer, load_run_cfg

SMALL = {
    "ppo": {"num_steps": 4, "num_epochs": 2, "num_minibatches": 2, "actor_hidden": [16], "critic_hidden": [16]},
    "td3": {"buffer_size": 512, "batch_size": 32, "learning_starts": 32, "actor_hidden": [16], "critic_hidden": [16],
            "curriculum": {"action": -0.5}, "curriculum_steps": 200},
    "shac": {"horizon": 4, "critic_iterations": 2, "actor_hidden": [16], "critic_hidden": [16],
             "expert_iterations": 2, "critic_warmup": 1},
}


def run_cfg(learner, tmp_path, **kw):
    data = {"task": "quadrotor-hover", "learner": learner, "seed": 7, "iterations": 6, "checkpoint_every": 3,
            "runs_root": str(tmp_path), "tensorboard": False, "env": {"num_envs": 16}, "algo": SMALL[learner], **kw}
    return load_run_cfg(data, "test")


@pytest.mark.parametrize("learner", ["ppo", "td3", "shac"])
def test_smoke_run_changes_parameters_and_keeps_losses_finite(learner, tmp_path):
    trainer = Trainer(run_cfg(learner, tmp_path), quiet=True)
    before = [p.detach().clone() for p in trainer.learner.policy().parameters()]
    summary = trainer.train()
    after = list(trainer.learner.policy().parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    losses = [v for h in trainer.history for k, v in h.items() if k.startswith("loss/")]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    assert summary["iterations"] == 6
    assert (trainer.run_dir / "config.yaml").exists() and (trainer.run_dir / "summary.json").exists()


@pytest.mark.parametrize("learner", ["ppo", "td3", "shac"])
def test_resume_after_kill_equals_uninterrupted_run(learner, tmp_path):
    full = Trainer(run_cfg(learner, tmp_path / "a"), quiet=True)
    full.train()

    killed = Trainer(run_cfg(learner, tmp_path / "b"), quiet=True)
    real_iteration = killed.learner.train_iteration
    calls = {"n": 0}

    def dies_in_iteration_5():
        calls["n"] += 1
        if calls["n"] == 5:  # after the checkpoint at iteration 3, before the one at 6
            raise KeyboardInterrupt
        return real_iteration()

    killed.learner.train_iteration = dies_in_iteration_5
    with pytest.raises(KeyboardInterrupt):
        killed.train()
    resumed = Trainer.resume(killed.run_dir, quiet=True)
    assert resumed.iteration == 3
    resumed.train()
    assert resumed.iteration == 6
    for a, b in zip(full.learner.policy().state_dict().values(), resumed.learner.policy().state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    assert torch.equal(full.env.sim.state, resumed.env.sim.state)


def test_run_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="algo.lr"):
        load_run_cfg({"task": "quadrotor-hover", "learner": "ppo", "algo": {"lr": "fast"}}, "x.yaml")
    with pytest.raises(ConfigError, match="unknown key 'env.num_env'"):
        load_run_cfg({"task": "quadrotor-hover", "learner": "ppo", "env": {"num_env": 3}}, "x.yaml")
    with pytest.raises(ConfigError, match="missing key 'learner'"):
        load_run_cfg({"task": "quadrotor-hover"}, "x.yaml")


def test_resolved_config_is_saved_and_reloads_equal(tmp_path):
    cfg = run_cfg("ppo", tmp_path, iterations=1)
    trainer = Trainer(cfg, quiet=True)
    from robolearn.learners.runner import load_run_cfg_file

    again = load_run_cfg_file(trainer.run_dir / "config.yaml")
    assert dataclasses.asdict(again) == dataclasses.asdict(cfg)


def test_stop_criterion_combines_success_and_upper_bounds(tmp_path):
    from robolearn.learners.runner import criterion_met

    cfg = run_cfg("ppo", tmp_path, stop_below={"tracking_error": 0.2, "terminated": 0.05})
    assert criterion_met(cfg, {"eval/tracking_error": 0.2, "eval/terminated": 0.0})
    assert not criterion_met(cfg, {"eval/tracking_error": 0.21, "eval/terminated": 0.0})
    assert not criterion_met(cfg, {"eval/tracking_error": float("nan"), "eval/terminated": 0.0})
    both = dataclasses.replace(cfg, stop_success=0.9)
    assert not criterion_met(both, {"eval/success": 0.8, "eval/tracking_error": 0.1, "eval/terminated": 0.0})
    assert criterion_met(both, {"eval/success": 0.9, "eval/tracking_error": 0.1, "eval/terminated": 0.0})
    assert not criterion_met(run_cfg("ppo", tmp_path), {"eval/success": 1.0})  # no criterion: never stops early
    with pytest.raises(ConfigError, match="no metric 'tracking_error'"):
        criterion_met(cfg, {"eval/success": 1.0})


def test_run_stops_at_the_first_evaluation_meeting_stop_below(tmp_path):
    short = {"num_envs": 16, "episode_length_s": 0.5}
    cfg = run_cfg("ppo", tmp_path, iterations=50, eval_every=2, eval_episodes=8, env=short,
                  stop_below={"length_s": 1e9})
    summary = Trainer(cfg, quiet=True).train()
    assert summary["stop_reason"] == "success" and summary["iterations"] == 2
    never = run_cfg("ppo", tmp_path, iterations=4, eval_every=2, eval_episodes=8, env=short,
                    stop_below={"length_s": -1.0})
    assert Trainer(never, quiet=True).train()["stop_reason"] == "iterations"


def test_eval_set_changes_the_evaluation_env_only_and_bad_keys_fail_at_start(tmp_path):
    from robolearn.learners.runner import eval_env_cfg

    cfg = run_cfg("ppo", tmp_path, eval_episodes=8, env={"num_envs": 16, "episode_length_s": 0.5},
                  eval_set=["episode_length_s=0.1", "reward_scales.crash=-7"])
    trainer = Trainer(cfg, quiet=True)
    assert trainer.env.cfg.episode_length_s == 0.5  # training keeps its own settings
    evaluation = trainer.evaluate()
    assert evaluation["length_s"] <= 0.1 + 1e-6  # the evaluation ran with the overrides
    resolved = eval_env_cfg(cfg)  # what `robolearn eval RUN` starts from
    assert resolved.episode_length_s == 0.1 and resolved.reward_scales["crash"] == -7.0
    assert resolved.reward_scales["alive"] == cfg.env.reward_scales["alive"]  # other keys of the dict kept
    with pytest.raises(ConfigError, match="eval_set.*episode_lenght_s"):
        Trainer(run_cfg("ppo", tmp_path, eval_set=["episode_lenght_s=1"]), quiet=True)


def test_quadruped_train_time_bench_reports_the_criterion():
    from robolearn.learners.bench import quadruped_train_time

    out = quadruped_train_time(["--num-envs", "4", "--eval-episodes", "2", "--eval-every", "1",
                                "--max-tracking-error", "100", "--max-falls", "1"])
    assert out["met"] and out["iterations"] == 1 and out["num_envs"] == 4
    assert out["tracking_error"] <= 100 and 0.0 <= out["fall_rate"] <= 1.0
    assert out["criterion"] == {"tracking_error": 100.0, "terminated": 1.0}


@pytest.mark.parametrize("learner", ["ppo", "td3"])
def test_init_from_warm_starts_the_actor_and_nothing_else(learner, tmp_path):
    source = Trainer(run_cfg(learner, tmp_path / "src"), quiet=True)
    source.train()
    trained = {k: v.clone() for k, v in source.learner.policy().state_dict().items()}

    warm = Trainer(run_cfg(learner, tmp_path / "dst", init_from=str(source.run_dir)), quiet=True)
    assert warm.warm_started[0] == "actor"
    for k, v in warm.learner.policy().state_dict().items():
        assert torch.equal(v, trained[k]), k
    if learner == "ppo":
        assert warm.warm_started == ["actor", "action std", "critic"]
        assert torch.equal(warm.learner.log_std, source.learner.log_std)
        assert warm.learner.env_steps == 0  # counters and optimizer start fresh
        narrow = Trainer(run_cfg(learner, tmp_path / "narrow", init_from=str(source.run_dir),
                                 algo={**SMALL["ppo"], "init_std": 0.1, "warm_start_std": False}), quiet=True)
        assert narrow.warm_started == ["actor", "critic"]  # the action std starts from init_std instead
        assert torch.allclose(narrow.learner.log_std.exp(), torch.full_like(narrow.learner.log_std, 0.1))
    else:
        assert warm.warm_started == ["actor", "critics"]  # a fresh critic would pull a good actor apart
        for k, v in warm.learner.critics_target.state_dict().items():
            assert torch.equal(v, source.learner.critics_target.state_dict()[k]), k
        assert warm.learner.replay.size == 0
    assert warm.iteration == 0
    summary = warm.train()
    assert summary["init_from"] == str(source.run_dir) and summary["iterations"] == 6


def test_init_from_hinf_takes_a_ppo_actor_and_bad_sources_fail_in_one_line(tmp_path):
    source = Trainer(run_cfg("ppo", tmp_path / "src"), quiet=True)
    source.train()
    ckpt = sorted((source.run_dir / "checkpoints").glob("*.safetensors"))[-1]
    hinf = {"actor": SMALL["ppo"], "disturber_ppo": {"actor_hidden": [8], "critic_hidden": [8]}}
    cfg = dataclasses.asdict(run_cfg("ppo", tmp_path / "h"))
    cfg = load_run_cfg({**cfg, "learner": "hinf", "algo": hinf, "env": {"num_envs": 16}, "init_from": str(ckpt)}, "t")
    warm = Trainer(cfg, quiet=True)
    assert warm.warm_started == ["actor", "action std", "critic"]
    theirs = source.learner.policy().state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in warm.learner.policy().state_dict().items())

    with pytest.raises(ConfigError, match="init_from: .* neither a checkpoint"):
        Trainer(run_cfg("ppo", tmp_path / "x", init_from=str(tmp_path / "missing")), quiet=True)
    wider = {**SMALL["ppo"], "actor_hidden": [8]}
    with pytest.raises(ConfigError, match="does not fit this run's PPO: size mismatch for mlp"):
        Trainer(run_cfg("ppo", tmp_path / "y", algo=wider, init_from=str(ckpt)), quiet=True)
    with pytest.raises(ConfigError, match="trained on 'quadrotor-hover', this run is 'quadrotor-track'"):
        Trainer(run_cfg("ppo", tmp_path / "z", task="quadrotor-track", init_from=str(ckpt)), quiet=True)


def test_only_the_newest_checkpoint_keeps_the_replay_buffer(tmp_path):
    """TD3's buffer (hundreds of MB in real runs) sits beside the newest checkpoint only; older checkpoints still
    give their policy (eval, export, --init-from), and resuming from one fails in one line naming the file."""
    from robolearn.core.errors import CheckpointError
    from robolearn.learners.runner import load_policy

    trainer = Trainer(run_cfg("td3", tmp_path), quiet=True)
    trainer.train()
    ckpts = trainer.run_dir / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("*.safetensors")) == ["iter_000003.safetensors", "iter_000006.safetensors"]
    assert [p.name for p in (ckpts / "replay").iterdir()] == ["iter_000006.safetensors"]
    _, actor, _ = load_policy(trainer.run_dir, ckpts / "iter_000003.safetensors")
    assert sum(p.numel() for p in actor.parameters()) > 0
    old = Trainer(run_cfg("td3", tmp_path / "old"), quiet=True)
    with pytest.raises(CheckpointError, match=r"iter_000003.safetensors: its replay buffer .* is gone"):
        old.load(ckpts / "iter_000003.safetensors")
    resumed = Trainer.resume(trainer.run_dir, quiet=True)  # the newest resumes with its buffer
    assert resumed.iteration == 6 and resumed.learner.replay.size == trainer.learner.replay.size
    assert torch.equal(resumed.learner.buffer["reward"][:10], trainer.learner.buffer["reward"][:10])
