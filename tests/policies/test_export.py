"""Export round trips: ONNX Runtime artifacts of ACT and Diffusion Policy against torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from il_fixtures import CAM, STATE, tiny_act, tiny_diffusion, write_fixture

from robolearn.core.errors import CheckpointError
from robolearn.data.stats import load_stats
from robolearn.data.store import EpisodeStore
from robolearn.export.chunked import ChunkPolicyRuntime, export_chunk_policy
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


def obs_one(rng) -> dict[str, np.ndarray]:
    return {STATE: rng.normal(size=6).astype(np.float32), CAM: rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)}


def test_act_onnx_matches_torch_and_ensembles_like_select_action(store, tmp_path):
    cfg = tiny_act(temporal_ensemble_coef=0.1)
    torch.manual_seed(0)
    policy = ACTPolicy(cfg, resolve_features(store, cfg.state_keys, None), load_stats(store)).eval()
    rt = ChunkPolicyRuntime(export_chunk_policy(policy, tmp_path / "act", extra={"task": "fixture"}))
    assert rt.manifest["policy"] == {"kind": "act", "chunk_size": 4, "n_action_steps": 1,
                                     "temporal_ensemble_coef": 0.1, "n_obs_steps": 1, "action_dim": 2}
    rng = np.random.default_rng(0)
    for _ in range(5):
        obs = obs_one(rng)
        torch_obs = {k: torch.as_tensor(v)[None] for k, v in obs.items()}
        want_chunk = policy.predict_action_chunk(torch_obs)[0].numpy()
        np.testing.assert_allclose(rt.predict_chunk(obs), want_chunk, atol=1e-4)
        np.testing.assert_allclose(rt.act(obs), policy.select_action(torch_obs)[0].numpy(), atol=1e-4)


def test_diffusion_onnx_sampler_matches_torch_ddim(store, tmp_path):
    cfg = tiny_diffusion(sampler="ddim", num_inference_steps=3)
    torch.manual_seed(0)
    policy = DiffusionPolicy(cfg, resolve_features(store, cfg.state_keys, None), load_stats(store)).eval()
    rt = ChunkPolicyRuntime(export_chunk_policy(policy, tmp_path / "dif"))
    assert rt.manifest["policy"]["kind"] == "diffusion" and len(rt.manifest["sampler"]["timesteps"]) == 3
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


def test_runtime_rejects_other_artifacts(tmp_path):
    (tmp_path / "manifest.json").write_text('{"schema_version": 1, "network": {"kind": "mlp"}}')
    with pytest.raises(CheckpointError, match="not a robolearn.chunk-policy"):
        ChunkPolicyRuntime(tmp_path)
