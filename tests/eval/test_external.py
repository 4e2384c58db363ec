"""External benchmark evaluation: a push-t artifact rolled out on gym-pusht in its own venv (no torch there).

The gym-pusht tests skip with a one-line reason when `.venv-gym-pusht` is missing (`make ext-envs` builds it).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from robolearn.cli.main import main as cli
from robolearn.data.stats import compute_stats, load_stats, save_stats
from robolearn.data.store import EpisodeStore, EpisodeWriter, Feature
from robolearn.envs import registry
from robolearn.envs.manipulation.pusht import coverage, keypoints, px_to_world, world_to_px
from robolearn.eval.external import (
    ExternalEvalError,
    evaluate_external,
    pusht_keypoints,
    pusht_px_to_world,
    pusht_world_to_px,
    venv_missing_reason,
    venv_python,
)
from robolearn.export import export_policy
from robolearn.export.chunked import export_chunk_policy
from robolearn.networks.mlp import MLPPolicy
from robolearn.policies.act import ACTConfig, ACTPolicy
from robolearn.policies.common import resolve_features

PUSHT_MISSING = venv_missing_reason("gym-pusht")
needs_pusht = pytest.mark.skipif(PUSHT_MISSING is not None, reason=PUSHT_MISSING or "")


def _spec(task: str, **cfg):
    return registry.env_class(task).make_spec(registry.cfg_class(task)(**cfg))


def camera_act_artifact(tmp: Path, task: str, hw: tuple[int, int]) -> Path:
    """An untrained tiny ACT reading the task's state and a top camera of size `hw` (what gym-* must feed)."""
    spec = _spec(task, cameras=("top",))
    state, cam = "observation.policy", "observation.images.top"
    feats = {state: Feature((spec.obs_dims["policy"],)), "action": Feature((spec.action.dim,)),
             cam: Feature((*hw, 3), "uint8", axes=("height", "width", "channel"))}
    rng = np.random.default_rng(0)
    with EpisodeWriter(tmp / "d.zarr", feats, fps=spec.action.rate_hz, durable=False) as w:
        for n in (5, 4):
            w.add_episode({state: rng.normal(size=(n, spec.obs_dims["policy"])).astype(np.float32),
                           "action": rng.uniform(-1, 1, (n, spec.action.dim)).astype(np.float32),
                           cam: rng.integers(0, 256, (n, *hw, 3), dtype=np.uint8)})
    save_stats(tmp / "d.zarr", compute_stats(tmp / "d.zarr"))
    store = EpisodeStore(tmp / "d.zarr")
    cfg = ACTConfig(chunk_size=4, dim_model=16, n_heads=2, dim_feedforward=32, n_encoder_layers=1,
                    n_decoder_layers=1, n_vae_encoder_layers=1, latent_dim=4, dropout=0.0, backbone_width=4,
                    image_shift=2, n_action_steps=2)
    torch.manual_seed(0)
    policy = ACTPolicy(cfg, resolve_features(store, cfg.state_keys, None), load_stats(store)).eval()
    return export_chunk_policy(policy, tmp / "act", spec, source={"kind": "untrained-tiny-act"})


def chase_block_policy() -> MLPPolicy:
    """An MLP that commands the pusher to the T's reference point: a = block_pos / 0.256 (tanh layer kept linear
    by small weights). It exercises both unit mappings: if either were wrong the pusher would not meet the block."""
    p = MLPPolicy(5, 2, hidden=(2,), activation="tanh", output="clamp")
    k = 0.05  # tanh(k x) / k = x within 1e-4 relative for |x| <= 0.36 m
    first, last = p.mlp.linears
    with torch.no_grad():
        for lin in (first, last):
            lin.weight.zero_()
            lin.bias.zero_()
        first.weight[0, 2] = first.weight[1, 3] = k  # block_pos x, y
        last.weight[0, 0] = last.weight[1, 1] = 1.0 / (k * 0.256)
        p.normalizer.eps = 0.0  # raw metres into the MLP (mean 0, var 1)
    return p.eval()


@pytest.fixture(scope="module")
def pusht_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pusht") / "artifact"
    return export_policy(chase_block_policy(), _spec("push-t"), out, source={"kind": "hand-set-chase-block"})


@pytest.fixture(scope="module")
def bimanual_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = _spec("bimanual-transfer-cube")
    out = tmp_path_factory.mktemp("bimanual") / "artifact"
    return export_policy(hold_pose_policy(spec), spec, out, source={"kind": "hand-set-hold-pose"})


def test_numpy_mappings_match_the_task() -> None:
    rng = np.random.default_rng(0)
    px = np.c_[rng.uniform(0, 512, (64, 4)), rng.uniform(0, 2 * math.pi, 64)]
    world = px_to_world(torch.from_numpy(px))
    np.testing.assert_allclose(pusht_px_to_world(px)[:, :4], world.numpy()[:, :4], atol=1e-6)
    np.testing.assert_allclose(pusht_px_to_world(px)[:, 4], np.mod(world.numpy()[:, 4], 2 * math.pi), atol=1e-6)
    np.testing.assert_allclose(pusht_world_to_px(world[:, :2].numpy()), world_to_px(world).numpy()[:, :2], atol=1e-3)
    kp = np.stack([pusht_keypoints(w) for w in pusht_px_to_world(px)[:, 2:5]])
    np.testing.assert_allclose(kp, keypoints(world[:, 2:5]).numpy(), atol=1e-6)  # wrapping does not move corners


def test_keypoint_observation_is_the_t_outline():
    env = registry.make("push-t", num_envs=3, observation="keypoints")
    obs = env.reset()
    assert obs["policy"].shape == (3, 18) and env.spec.obs_dims["policy"] == 18
    torch.testing.assert_close(obs["policy"][:, :2], env.agent_pos)
    corners = obs["policy"][:, 2:].reshape(3, 2, 4, 2)  # bar, stem; 4 corners each
    side = (corners - corners.roll(-1, dims=2)).norm(dim=-1)  # edge lengths: bar 120 x 30 mm, stem 30 x 90 mm
    torch.testing.assert_close(side[:, 0], torch.tensor([0.12, 0.03, 0.12, 0.03]).expand(3, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(side[:, 1], torch.tensor([0.03, 0.09, 0.03, 0.09]).expand(3, 4), atol=1e-5, rtol=0)
    assert env.expert_action(obs).shape == (3, 2)  # the expert reads the critic's true state


# gym-pusht body states [px, rad] whose block angles lie outside [0, 2π) or are negative (gym-pusht's reset draws
# them in (−π, π); pushing turns the block any number of times); the agents are far from the blocks
RAW_PX = np.array([[60.0, 60.0, 300.0, 320.0, -5.0], [450.0, 60.0, 200.0, 250.0, -0.5],
                   [60.0, 450.0, 256.0, 256.0, math.pi / 4 - 2 * math.pi], [450.0, 450.0, 180.0, 300.0, 3.0],
                   [60.0, 250.0, 330.0, 200.0, 7.0], [450.0, 250.0, 250.0, 150.0, 13.0]])


def pusht_env_at(raw_px: np.ndarray):
    """robolearn's push-t with its envs put in the gym-pusht body states `raw_px` (as gym-pusht's _set_state)."""
    env = registry.make("push-t", num_envs=len(raw_px), seed=0)
    env.reset()
    env.set_states(torch.arange(len(raw_px)), px_to_world(torch.from_numpy(raw_px)))
    return env


def test_pusht_angle_is_observed_as_push_t_observes_it() -> None:
    """The adapter's observation of a gym-pusht state equals push-t's own observation of that state, whatever
    turn the block's angle is on (gym-pusht reports angle_px % 2π; push-t observes its angle in [0, 2π))."""
    env = pusht_env_at(RAW_PX)
    obs = env._policy_state().numpy()  # (N, 5) what a push-t policy sees
    assert ((obs[:, 4] >= 0) & (obs[:, 4] < 2 * math.pi)).all()
    pose = torch.cat((env.agent_pos, env.block_pose), -1)  # the bodies, angles unwrapped
    px = world_to_px(pose).numpy()
    gym_obs = np.c_[px[:, :4], np.mod(-pose[:, 4].double().numpy(), 2 * math.pi)]  # gym-pusht's get_obs
    np.testing.assert_allclose(pusht_px_to_world(gym_obs), obs, atol=1e-5)
    # and the same pose covers the goal alike
    world = torch.from_numpy(pusht_px_to_world(gym_obs)).float()
    torch.testing.assert_close(coverage(world[:, 2:5]), env.coverage, atol=1e-5, rtol=0)


@needs_pusht
def test_gym_pusht_and_push_t_agree_on_raw_states(tmp_path: Path) -> None:
    """gym-pusht itself, put in the same raw states: its observation through the adapter is push-t's observation
    and its coverage push-t's coverage."""
    import subprocess

    script = (
        "import json, sys, numpy as np, gymnasium as gym, gym_pusht\n"
        "env = gym.make('gym_pusht/PushT-v0', obs_type='state')\n"
        "out = []\n"
        "for s in json.loads(sys.argv[1]):\n"
        "    obs, _ = env.reset(seed=0, options={'reset_to_state': s})\n"
        "    _, _, _, _, info = env.step(np.array(s[:2]))  # hold the agent where it is: nothing moves\n"
        "    out.append([*obs.tolist(), float(info['coverage'])])\n"
        "print(json.dumps(out))\n")
    env_vars = {"SDL_VIDEODRIVER": "dummy", "PYGAME_HIDE_SUPPORT_PROMPT": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([str(venv_python("gym-pusht")), "-c", script, json.dumps(RAW_PX.tolist())],
                          capture_output=True, text=True, timeout=120, env=env_vars)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = np.array(json.loads(proc.stdout.strip().splitlines()[-1]))  # (N, 5 + 1)
    env = pusht_env_at(RAW_PX)
    np.testing.assert_allclose(pusht_px_to_world(got[:, :5]), env._policy_state().numpy(), atol=1e-4)
    np.testing.assert_allclose(got[:, 5], env.coverage.numpy(), atol=1e-4)


def test_wrong_task_and_unknown_benchmark(bimanual_artifact: Path, pusht_artifact: Path) -> None:
    with pytest.raises(ExternalEvalError, match=r"task 'bimanual-transfer-cube' cannot be evaluated on 'gym-pusht'"):
        evaluate_external(bimanual_artifact, "gym-pusht", episodes=1)
    with pytest.raises(ExternalEvalError, match=r"task 'push-t' cannot be evaluated on 'gym-aloha'"):
        evaluate_external(pusht_artifact, "gym-aloha", episodes=1)
    with pytest.raises(ExternalEvalError, match=r"unknown external benchmark 'gym-nope'"):
        evaluate_external(pusht_artifact, "gym-nope")


def test_missing_venv_is_one_clear_error(pusht_artifact: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBOLEARN_EXT_VENVS", str(tmp_path))
    with pytest.raises(ExternalEvalError, match=r"no virtualenv at .*\.venv-gym-pusht \(create it with `make ext-en"):
        evaluate_external(pusht_artifact, "gym-pusht", episodes=1)


@needs_pusht
def test_pusht_artifact_runs_in_the_gym_pusht_venv(pusht_artifact: Path, tmp_path: Path) -> None:
    traj = tmp_path / "traj.npz"
    r = evaluate_external(pusht_artifact, "gym-pusht", episodes=2, seed=3, trajectories=traj)
    assert r["benchmark"] == "gym-pusht" and r["task"] == "push-t" and r["episodes"] == 2
    assert Path(r["python"]).parent.parent.name == ".venv-gym-pusht"
    assert Path(r["python"]) == venv_python("gym-pusht")
    assert r["torch_available"] is False  # the artifact ran without torch
    assert 0.0 <= r["success_rate"] <= 1.0 and 0.0 <= r["mean_max_coverage"] <= 1.0
    assert [e["seed"] for e in r["per_episode"]] == [3, 4]
    assert all(0 < e["steps"] <= 300 and e["max_coverage"] >= e["final_coverage"] for e in r["per_episode"])
    # the units round trip: every command is the T's reference point in gym-pusht pixels, and the pusher gets there
    z = np.load(traj)
    for i in range(2):
        state, action = z[f"state_px_{i}"], z[f"action_px_{i}"]
        assert len(state) == len(action) == r["per_episode"][i]["steps"]
        np.testing.assert_allclose(action, np.clip(state[:, 2:4], 0, 512), atol=0.1)
        dist = np.linalg.norm(state[:, :2] - state[:, 2:4], axis=1)
        assert dist[0] > 20.0 and dist[20:].min() < 20.0, dist[[0, 20, -1]]  # within the pusher radius + contact


@needs_pusht
def test_pusht_camera_act_artifact(tmp_path: Path) -> None:
    art = camera_act_artifact(tmp_path, "push-t", (24, 24))  # gym-pusht renders at the artifact's size
    r = evaluate_external(art, "gym-pusht", episodes=1, max_steps=5)
    assert r["policy"] == "act" and r["torch_available"] is False and r["per_episode"][0]["steps"] == 5


@needs_pusht
def test_cli_eval_external(pusht_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["eval", str(pusht_artifact), "--external", "gym-pusht", "--episodes", "1", "--out",
                str(tmp_path / "ev")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    r = json.loads(line)
    assert r["episodes"] == 1 and set(r) >= {"success_rate", "mean_max_coverage", "python", "torch_available"}
    assert json.loads((tmp_path / "ev" / "eval-gym-pusht.json").read_text())["per_episode"][0]["seed"] == 12345


ALOHA_MISSING = venv_missing_reason("gym-aloha")
needs_aloha = pytest.mark.skipif(ALOHA_MISSING is not None, reason=ALOHA_MISSING or "")


def hold_pose_policy(spec) -> MLPPolicy:
    """A bimanual MLP commanding the measured qpos back (a = (qpos − offset) / scale): the arms should hold still
    in gym-aloha only if qpos, joint units, gripper normalization and the action order all match."""
    scale = torch.tensor([s for t in spec.action.terms for s in t.scale])
    offset = torch.tensor([o for t in spec.action.terms for o in t.offset])
    p = MLPPolicy(spec.obs_dims["policy"], 14, hidden=(14,), activation="tanh", output="clamp")
    k = 0.05
    first, last = p.mlp.linears
    with torch.no_grad():
        for lin in (first, last):
            lin.weight.zero_()
            lin.bias.zero_()
        first.weight[:, :14] = k * torch.eye(14)  # qpos terms come first
        last.weight.copy_(torch.diag(1.0 / (k * scale)))
        last.bias.copy_(-offset / scale)
        p.normalizer.eps = 0.0
    return p.eval()


@needs_aloha
def test_bimanual_artifact_runs_in_the_gym_aloha_venv(bimanual_artifact: Path, tmp_path: Path) -> None:
    traj = tmp_path / "traj.npz"
    r = evaluate_external(bimanual_artifact, "gym-aloha", episodes=2, seed=1, max_steps=4, trajectories=traj)
    assert r["benchmark"] == "gym-aloha" and r["task"] == "bimanual-transfer-cube" and r["torch_available"] is False
    assert Path(r["python"]) == venv_python("gym-aloha")
    assert r["success_rate"] == 0.0 and [e["steps"] for e in r["per_episode"]] == [4, 4]
    z = np.load(traj)
    for i in range(2):
        q, a = z[f"qpos_qvel_{i}"], z[f"action_{i}"]
        assert q.shape == (4, 28) and a.shape == (4, 14)
        np.testing.assert_allclose(q[0, :6], [0.0, -0.96, 1.16, 0.0, -0.3, 0.0], atol=1e-3)  # ACT's start pose
        np.testing.assert_allclose(a, q[:, :14], atol=2e-3)  # the command is the measured qpos
        np.testing.assert_allclose(q[-1, :14], q[0, :14], atol=0.05)  # and the arms hold it


@needs_aloha
def test_aloha_camera_act_artifact(tmp_path: Path) -> None:
    art = camera_act_artifact(tmp_path, "bimanual-transfer-cube", (24, 32))  # the 480 x 640 top view, resized
    r = evaluate_external(art, "gym-aloha", episodes=1, max_steps=1)
    assert r["policy"] == "act" and r["torch_available"] is False and r["per_episode"][0]["steps"] == 1
