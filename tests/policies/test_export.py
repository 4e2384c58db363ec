"""Export round trips: ACT and Diffusion Policy artifacts (schema 2) through the policy runtime against torch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from il_fixtures import CAM, STATE, tiny_act, tiny_diffusion, write_fixture

from robolearn.core.errors import CheckpointError
from robolearn.core.types import ActionSpec, ActionTerm, ObsTerm, TaskSpec
from robolearn.data.stats import load_stats
from robolearn.data.store import EpisodeStore
from robolearn.export.artifact import ExportError
from robolearn.export.chunked import ChunkPolicyRuntime, export_chunk_policy
from robolearn.export.runtime import InvalidInputError, PolicyRuntime
from robolearn.policies.act import ACTPolicy
from robolearn.policies.common import resolve_features
from robolearn.policies.diffusion import DiffusionPolicy

pytest.importorskip("onnxruntime")


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> EpisodeStore:
    return EpisodeStore(write_fixture(tmp_path_factory.mktemp("exp") / "fix.zarr"))


# the fixture's "task": 6 state values in two terms, 2 actions that the robot scales to ±0.5 rad
SPEC = TaskSpec("fixture", {"policy": (ObsTerm("joint_pos", 3, "rad"), ObsTerm("joint_vel", 3, "rad/s"))},
                ActionSpec((ActionTerm("joint_pos_target", 2, "rad", (0.5, 0.5), (0.0, 0.1)),), rate_hz=10.0),
                robot="fixture-arm")


def obs_one(rng) -> dict[str, np.ndarray]:
    return {STATE: rng.normal(size=6).astype(np.float32), CAM: rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)}


def test_act_onnx_matches_torch_and_ensembles_like_select_action(store, tmp_path):
    cfg = tiny_act(temporal_ensemble_coef=0.1)
    torch.manual_seed(0)
    policy = ACTPolicy(cfg, resolve_features(store, cfg.state_keys, None), load_stats(store)).eval()
    rt = PolicyRuntime.load(export_chunk_policy(policy, tmp_path / "act", SPEC))
    assert isinstance(rt, ChunkPolicyRuntime)
    m = rt.manifest
    assert (m["schema_version"], m["format"]) == (2, "robolearn.policy")
    assert (m["task"], m["robot"]) == ("fixture", "fixture-arm")
    assert {k: m["network"][k] for k in ("kind", "chunk_size", "n_action_steps", "temporal_ensemble_coef")} == \
        {"kind": "act", "chunk_size": 4, "n_action_steps": 1, "temporal_ensemble_coef": 0.1}
    assert [t["name"] for t in rt.obs_terms] == ["joint_pos", "joint_vel"] and rt.obs_dim == 6
    assert [s["dtype"] for s in m["observation"]["inputs"]] == ["float32", "uint8"]
    assert rt.control_rate_hz == 10.0 and set(m["files"]) == {"weights", "onnx"}
    rng = np.random.default_rng(0)
    for _ in range(5):
        obs = obs_one(rng)
        torch_obs = {k: torch.as_tensor(v)[None] for k, v in obs.items()}
        want_chunk = policy.predict_action_chunk(torch_obs)[0].numpy()
        np.testing.assert_allclose(rt.predict_chunk(obs), want_chunk, atol=1e-4)
        want = policy.select_action(torch_obs)[0].numpy().clip(-1, 1)
        np.testing.assert_allclose(rt.act(obs), want, atol=1e-4)  # the runtime clamps to the action limits
    np.testing.assert_allclose(rt.to_physical(np.array([1.0, -1.0])), [0.5, -0.4])
    with pytest.raises(InvalidInputError, match="also reads camera images"):
        rt.act(obs_one(rng)[STATE])
    with pytest.raises(InvalidInputError, match="'observation.images.cam' is uint8 .*expected uint8 \\(16, 16, 3\\)"):
        rt.act({STATE: obs_one(rng)[STATE], CAM: np.zeros((8, 8, 3), np.uint8)})


def test_state_policy_runs_batched_like_independent_robots(tmp_path):
    """A batch of B rows = B robots, each with its own action queue (what `robolearn eval ARTIFACT` relies on)."""
    store = EpisodeStore(write_fixture(tmp_path / "s.zarr", images=False))
    cfg = tiny_act(n_action_steps=3)
    torch.manual_seed(1)
    policy = ACTPolicy(cfg, resolve_features(store, cfg.state_keys, None), load_stats(store)).eval()
    path = export_chunk_policy(policy, tmp_path / "act", SPEC)
    batched, single = PolicyRuntime.load(path), [PolicyRuntime.load(path) for _ in range(3)]
    rng = np.random.default_rng(2)
    for _ in range(7):  # crosses two chunk boundaries
        x = rng.normal(size=(3, 6)).astype(np.float32)
        got = batched.act(x)
        np.testing.assert_allclose(got, np.stack([r.act(x[i]) for i, r in enumerate(single)]), atol=1e-6)
    with pytest.raises(InvalidInputError, match="batch of 2 after a batch of 3"):
        batched.act(x[:2])
    batched.reset()
    assert batched.act(x[:2]).shape == (2, 2)
    with pytest.raises(InvalidInputError, match="'joint_vel'"):
        batched.act(np.array([0, 0, 0, 0, np.nan, 0], dtype=np.float32))


def test_export_refuses_a_task_that_does_not_fit_and_keeps_the_saved_artifact(store, tmp_path):
    cfg = tiny_act()
    policy = ACTPolicy(cfg, resolve_features(store, cfg.state_keys, None), load_stats(store)).eval()
    small = TaskSpec("small", {"policy": (ObsTerm("x", 4),)}, SPEC.action)
    with pytest.raises(ExportError, match="'observation.policy' has shape \\[6\\]; task 'small' group 'policy' has"):
        export_chunk_policy(policy, tmp_path / "a", small)
    path = export_chunk_policy(policy, tmp_path / "a", SPEC)
    before = (path / "manifest.json").read_bytes()
    with pytest.raises(ExportError, match="refusing to overwrite"):
        export_chunk_policy(policy, path, SPEC)
    assert (path / "manifest.json").read_bytes() == before


def test_tampered_check_or_graph_refuses_to_load(store, tmp_path):
    cfg = tiny_act()
    policy = ACTPolicy(cfg, resolve_features(store, cfg.state_keys, None), load_stats(store)).eval()
    path = export_chunk_policy(policy, tmp_path / "a", SPEC)
    m = json.loads((path / "manifest.json").read_text())
    m["check"]["chunk"][0][0] += 0.5
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CheckpointError, match="'check.chunk'"):
        PolicyRuntime.load(path)
    (path / "policy.onnx").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="policy.onnx: sha256 does not match manifest key 'files.onnx.sha256'"):
        PolicyRuntime.load(path)
    del m["network"]["chunk_size"]
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CheckpointError, match="missing key 'network.chunk_size'"):
        PolicyRuntime.load(path)


def test_diffusion_onnx_sampler_matches_torch_ddim(store, tmp_path):
    cfg = tiny_diffusion(sampler="ddim", num_inference_steps=3)
    torch.manual_seed(0)
    policy = DiffusionPolicy(cfg, resolve_features(store, cfg.state_keys, None), load_stats(store)).eval()
    rt = PolicyRuntime.load(export_chunk_policy(policy, tmp_path / "dif", SPEC))
    net = rt.manifest["network"]
    assert net["kind"] == "diffusion" and len(net["sampler"]["timesteps"]) == 3
    assert set(rt.manifest["files"]) == {"weights", "encoder", "denoiser"}
    rng = np.random.default_rng(1)
    o1, o2 = obs_one(rng), obs_one(rng)
    window = {k: np.stack([o1[k], o2[k]]) for k in o1}
    noise = rng.normal(size=(cfg.horizon, 2)).astype(np.float32)
    batch = {k: torch.as_tensor(v)[None] for k, v in window.items()}
    cond = policy._condition(policy.inference_net, batch, augment=False)
    seq = policy.normalizer.unnormalize("action", policy.sample(cond, noise=torch.as_tensor(noise)[None]))[0]
    want = seq[cfg.n_obs_steps - 1:cfg.n_obs_steps - 1 + cfg.n_action_steps].numpy()
    np.testing.assert_allclose(rt.predict_chunk(window, noise=noise), want, atol=1e-4)
    # receding horizon in the runtime: n_action_steps actions per sampled sequence
    rt.reset()
    actions = [rt.act(obs_one(rng)) for _ in range(2 * cfg.n_action_steps)]
    assert all(a.shape == (2,) and np.isfinite(a).all() for a in actions)


def test_mlp_runtime_refuses_a_chunk_artifact_and_torch_backend(store, tmp_path):
    cfg = tiny_act()
    policy = ACTPolicy(cfg, resolve_features(store, cfg.state_keys, None), load_stats(store)).eval()
    path = export_chunk_policy(policy, tmp_path / "a", SPEC)
    with pytest.raises(CheckpointError, match="network.kind is 'act'; load the artifact with PolicyRuntime.load"):
        PolicyRuntime(path)
    with pytest.raises(ValueError, match="chunk policies run on ONNX Runtime"):
        PolicyRuntime.load(path, backend="torch")
