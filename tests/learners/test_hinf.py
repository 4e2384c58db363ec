"""H∞ actor–disturber learner: dual ascent by hand, the disturber's bound, smoke runs, exact resume, DDP, errors."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from robolearn.core.checkpoint import load_checkpoint
from robolearn.core.env import NotDisturbableError, check_disturbable
from robolearn.learners.hinf import dual_ascent, squash
from robolearn.learners.runner import Trainer, load_run_cfg

ROOT = Path(__file__).resolve().parents[2]
TINY = {"num_epochs": 2, "num_minibatches": 2, "actor_hidden": [16], "critic_hidden": [16]}


def run_cfg(tmp_path, disturber="learned", algo=None, **kw):
    algo = {"actor": {"num_steps": 4, **TINY}, "disturber_ppo": TINY, "disturber": disturber,
            "expert_iterations": 1, "critic_warmup": 1, **(algo or {})}
    data = {"task": "quadrotor-hover", "learner": "hinf", "seed": 3, "iterations": 6, "checkpoint_every": 3,
            "runs_root": str(tmp_path), "tensorboard": False, "env": {"num_envs": 16}, "algo": algo, **kw}
    return load_run_cfg(data, "test")


def test_lambda_rises_when_violated_and_falls_otherwise():
    # g = E[C] − η E[‖d‖] = 0.3 − 0.5 · 0.4 = 0.1 > 0: violated, λ = 1 + 2 · 0.1
    lam, g = dual_ascent(1.0, mean_cost=0.3, mean_intensity=0.4, eta=0.5, lr=2.0)
    assert g == pytest.approx(0.1) and lam == pytest.approx(1.2)
    # g = 0.1 − 0.2 = −0.1: satisfied, λ = 1 − 2 · 0.1
    lam, g = dual_ascent(1.0, mean_cost=0.1, mean_intensity=0.4, eta=0.5, lr=2.0)
    assert g == pytest.approx(-0.1) and lam == pytest.approx(0.8)
    # never below 0, never above lam_max
    assert dual_ascent(0.05, 0.0, 1.0, eta=0.5, lr=1.0)[0] == 0.0
    assert dual_ascent(9.9, 5.0, 0.0, eta=0.5, lr=1.0, lam_max=10.0)[0] == 10.0


def test_learner_multiplier_and_curriculum_follow_the_constraint(tmp_path):
    # η tiny: the constraint is always violated -> λ only rises, intensity only falls (to its floor)
    strict = Trainer(run_cfg(tmp_path / "a", algo={"eta": 1e-6, "intensity_start": 0.5}), quiet=True)
    strict.train()
    lams = [h["hinf/lambda"] for h in strict.history if "hinf/lambda" in h]
    assert len(lams) == 5 and all(b > a for a, b in zip(lams, lams[1:], strict=False)) and lams[0] > 0
    ints = [h["hinf/intensity"] for h in strict.history if "hinf/intensity" in h]
    assert ints == sorted(ints, reverse=True) and ints[-1] < 0.5
    # η huge: always satisfied -> λ stays 0, intensity rises
    loose = Trainer(run_cfg(tmp_path / "b", algo={"eta": 1e6, "lambda_init": 0.5}), quiet=True)
    loose.train()
    assert loose.learner.lam == 0.0 and loose.learner.intensity > loose.cfg.algo.intensity_start


def test_disturber_outputs_respect_the_bound(tmp_path):
    limit = torch.tensor([0.1, 0.2, 0.3])
    raw = torch.tensor([[1e6, -1e6, 0.0], [-3.0, 2.0, 50.0]])
    d = squash(raw, 0.5, limit)
    assert bool((d.abs() <= 0.5 * limit + 1e-9).all())
    trainer = Trainer(run_cfg(tmp_path, algo={"intensity_start": 1.0, "disturber_ppo": {**TINY, "init_std": 20.0}}),
                      quiet=True)
    env, learner = trainer.env, trainer.learner
    seen = []
    real_set = env.set_disturbance

    def recording(wrench):
        seen.append((wrench.clone(), learner.intensity))
        real_set(wrench)

    env.set_disturbance = recording
    trainer.train()
    assert len(seen) == 5 * 4  # 5 RL iterations × 4 steps
    for wrench, intensity in seen:
        assert bool((wrench.abs() <= intensity * env.disturbance_limit + 1e-7).all())
    # a wide policy saturates the bound: the largest push reaches it
    assert float(torch.stack([w.abs().max() for w, _ in seen]).max()) > 0.9 * float(env.disturbance_limit.max()) * 0.9


@pytest.mark.parametrize("disturber", ["learned", "random", "none"])
def test_smoke_run_logs_the_game_and_keeps_losses_finite(disturber, tmp_path):
    trainer = Trainer(run_cfg(tmp_path, disturber), quiet=True)
    before = [p.detach().clone() for p in trainer.learner.policy().parameters()]
    trainer.train()
    after = list(trainer.learner.policy().parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    last = trainer.history[-1]
    for key in ("hinf/cost", "hinf/disturbance", "hinf/lambda", "hinf/intensity", "hinf/constraint"):
        assert key in last and torch.isfinite(torch.tensor(last[key]))
    losses = [v for h in trainer.history for k, v in h.items() if k.startswith(("loss/", "disturber/loss/"))]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    if disturber == "none":
        assert last["hinf/disturbance"] == 0.0
    else:
        assert last["hinf/disturbance"] > 0.0
    if disturber == "learned":
        assert any(k.startswith("disturber/") for k in last)


def test_resume_after_kill_equals_uninterrupted_run(tmp_path):
    full = Trainer(run_cfg(tmp_path / "a"), quiet=True)
    full.train()
    killed = Trainer(run_cfg(tmp_path / "b"), quiet=True)
    real_iteration = killed.learner.train_iteration
    calls = {"n": 0}

    def dies_in_iteration_5():
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real_iteration()

    killed.learner.train_iteration = dies_in_iteration_5
    with pytest.raises(KeyboardInterrupt):
        killed.train()
    resumed = Trainer.resume(killed.run_dir, quiet=True)
    assert resumed.iteration == 3
    resumed.train()
    a, b = full.learner, resumed.learner
    for x, y in zip(a.state_dict()["actor"].values(), b.state_dict()["actor"].values(), strict=True):
        assert torch.equal(x, y)
    for x, y in zip(a.disturber_ppo.actor.state_dict().values(), b.disturber_ppo.actor.state_dict().values(),
                    strict=True):
        assert torch.equal(x, y)
    assert (a.lam, a.intensity, a.oracle) == (b.lam, b.intensity, b.oracle)
    assert torch.equal(full.env.sim.state, resumed.env.sim.state)


def test_ddp_two_gloo_processes_keep_identical_parameters(tmp_path):
    # hinf covers plain PPO too: its actor and its disturber are PPO agents (actor, critic, KL, normalizers)
    learner = "hinf"
    algo = "{actor: {num_steps: 4, num_epochs: 2, num_minibatches: 2, actor_hidden: [16], critic_hidden: [16], " \
           "desired_kl: 0.01}, disturber_ppo: {num_epochs: 2, num_minibatches: 2, actor_hidden: [16], " \
           "critic_hidden: [16]}, expert_iterations: 1}"
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(f"task: quadrotor-hover\nlearner: {learner}\nseed: 1\niterations: 4\ncheckpoint_every: 4\n"
                   f"tensorboard: false\nenv: {{num_envs: 16}}\nalgo: {algo}\n")
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                           "--master-port", str(29500 + os.getpid() % 1000),
                           "-m", "robolearn.cli.main", "train", "--config", str(cfg), "--run-dir", str(run_dir),
                           "--quiet"], env=env, capture_output=True, text=True, timeout=240)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, meta = load_checkpoint(run_dir / "checkpoints" / "iter_000004.safetensors")
    r1, _ = load_checkpoint(run_dir / "checkpoints" / "rank1" / "iter_000004.safetensors")
    assert meta["iteration"] == 4
    nets = {"actor": r0["learner"]["actor"], "critic": r0["learner"]["actor_ppo"]["critic"],
            "disturber": r0["learner"]["disturber"]["actor"], "disturber critic": r0["learner"]["disturber"]["critic"]}
    other = {"actor": r1["learner"]["actor"], "critic": r1["learner"]["actor_ppo"]["critic"],
             "disturber": r1["learner"]["disturber"]["actor"], "disturber critic": r1["learner"]["disturber"]["critic"]}
    for net, params in nets.items():
        for k, v in params.items():
            assert torch.equal(v, other[net][k]), f"{net}.{k} differs between ranks"
    for key in ("lambda", "intensity", "oracle"):
        assert r0["learner"][key] == r1["learner"][key]
    assert r0["learner"]["actor_ppo"]["lr"] == r1["learner"]["actor_ppo"]["lr"]
    # ...while each rank stepped its own environments
    assert not torch.equal(r0["env"]["sim._state"], r1["env"]["sim._state"])
    assert (run_dir / "summary.json").exists() and not (run_dir / ".rank1").exists()


def test_a_task_without_the_interface_is_a_one_line_error(tmp_path):
    pytest.importorskip("mujoco")
    # the MuJoCo arm has no disturbance interface: the learned and random disturbers refuse it, `none` trains
    with pytest.raises(NotDisturbableError, match=r"^hinf \(disturber: learned\): task 'arm-reach' does not "
                                                  r"implement the disturbance interface \(missing disturbance_dim, "
                                                  r"disturbance_limit, set_disturbance; see robolearn.core.env"):
        Trainer(run_cfg(tmp_path, algo={"expert_iterations": 0}, task="arm-reach", env={"num_envs": 2}), quiet=True)


def test_an_invalid_limit_is_a_one_line_error():
    from robolearn.envs import registry

    env = registry.make("quadrotor-hover", num_envs=2)
    assert check_disturbable(env, "x") is env
    env.disturbance_limit = torch.tensor([0.1, 0.0, 0.1])
    with pytest.raises(NotDisturbableError, match=r"^sweep: task 'quadrotor-hover': disturbance_limit must be a "
                                                  r"finite positive tensor of shape \(3,\)"):
        check_disturbable(env, "sweep")


def test_the_disturber_pushes_the_quadruped_within_its_limit(tmp_path):
    """The learner is task-agnostic: on quadruped-walk its wrench reaches the trunk through set_disturbance."""
    from robolearn.sim.backend import import_mujoco

    try:
        import_mujoco()
    except ImportError:
        pytest.skip("mujoco is not installed")
    import yaml

    data = yaml.safe_load((ROOT / "configs" / "quadruped-walk-hinf.yaml").read_text())
    data.update(iterations=2, eval_every=0, runs_root=str(tmp_path), tensorboard=False)
    data["env"]["num_envs"] = 8
    data["algo"]["actor"]["num_steps"] = 8
    data["algo"]["intensity_start"] = 0.5
    cfg = load_run_cfg(data, "quadruped-walk-hinf.yaml")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a second torch thread fights MuJoCo's pool on a small CPU
    try:
        trainer = Trainer(cfg, quiet=True)
        trainer.train()
    finally:
        torch.set_num_threads(threads)
    env, last = trainer.env, trainer.history[-1]
    assert last["hinf/disturbance"] > 0.0 and torch.isfinite(torch.tensor(last["hinf/lambda"]))
    wrench = env.disturbance
    assert wrench.abs().max() > 0 and bool((wrench.abs() <= env.disturbance_limit + 1e-6).all())
