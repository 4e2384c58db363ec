"""ACT and Diffusion Policy: golden outputs, padding masks, action queue, interface, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from il_fixtures import CAM, STATE, tiny_act, tiny_diffusion, write_fixture
from make_golden import GOLDEN, golden_outputs

from robolearn.core.errors import CheckpointError
from robolearn.data.stats import load_stats
from robolearn.data.store import EpisodeStore
from robolearn.data.windows import WindowDataset
from robolearn.export.runtime import ActionQueue
from robolearn.policies.act import ACTPolicy
from robolearn.policies.common import (
    ChunkQueue,
    PolicyInputError,
    check_task,
    policy_from_description,
    resolve_features,
)
from robolearn.policies.diffusion import DiffusionPolicy, nearest_valid


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # small models on a shared CPU: one thread is fastest
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def fixture_store(tmp_path_factory) -> EpisodeStore:
    return EpisodeStore(write_fixture(tmp_path_factory.mktemp("il") / "fix.zarr"))


def build(kind: str, store: EpisodeStore, seed: int = 0, **kw):
    cls, cfg = (ACTPolicy, tiny_act(**kw)) if kind == "act" else (DiffusionPolicy, tiny_diffusion(**kw))
    torch.manual_seed(seed)
    return cls(cfg, resolve_features(store, cfg.state_keys, cfg.image_keys), load_stats(store))


# ---- golden outputs -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["act", "diffusion"])
def test_golden_outputs(kind, tmp_path):
    """Seeded losses and actions match tests/policies/golden (regenerate with make_golden.py on intended change)."""
    want = json.loads((GOLDEN / f"{kind}.json").read_text())
    got = golden_outputs(kind, tmp_path)
    np.testing.assert_allclose(got["losses"], want["losses"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["actions"], want["actions"], rtol=1e-3, atol=1e-4)


# ---- padding masks ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["act", "diffusion"])
def test_padded_targets_do_not_change_the_loss(kind, fixture_store):
    policy = build(kind, fixture_store)
    ds = WindowDataset(fixture_store, policy.deltas)
    batch = ds.get_batch(list(range(len(ds))))
    pad = batch["action_is_pad"]
    assert pad.any() and not pad.all()  # the fixture's short episodes pad the windows
    perturbed = dict(batch)
    perturbed["action"] = torch.where(pad[..., None], batch["action"] + 100.0, batch["action"])
    torch.manual_seed(1)
    loss, _ = policy(batch)
    torch.manual_seed(1)
    loss_p, _ = policy(perturbed)
    assert torch.equal(loss, loss_p)
    # and real (unpadded) targets do count
    changed = dict(batch)
    changed["action"] = torch.where(pad[..., None], batch["action"], batch["action"] + 1.0)
    torch.manual_seed(1)
    assert not torch.equal(policy(changed)[0], loss)


def test_nearest_valid():
    pad = torch.tensor([[1, 0, 0, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    assert nearest_valid(pad).tolist() == [[1, 1, 2, 2, 2], [0, 1, 2, 3, 4]]


# ---- action queue / temporal ensembling --------------------------------------------------------------------
def test_chunk_queue_plain_plays_n_action_steps():
    q = ChunkQueue(chunk=4, n_action_steps=3)
    assert q.needs_chunk
    chunk = torch.arange(4.0).reshape(1, 4, 1).expand(2, 4, 1)  # (B=2, H=4, A=1): actions 0, 1, 2, 3
    q.push(chunk)
    out = [q.pop()[:, 0].tolist() for _ in range(3)]
    assert out == [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]
    assert q.needs_chunk
    q.push(chunk + 10)
    assert q.pop()[0, 0] == 10.0
    q.reset()
    assert q.needs_chunk


def test_temporal_ensembling_by_hand():
    m = 0.5
    q = ChunkQueue(chunk=3, ensemble_coef=m)
    q.push(torch.tensor([[[0.0], [1.0], [2.0]]]))
    assert q.pop().item() == 0.0  # one chunk: its first row
    q.push(torch.tensor([[[10.0], [11.0], [12.0]]]))
    # step 1: oldest chunk's row 1 (= 1) with w0 = 1, newest's row 0 (= 10) with w1 = e^-0.5
    w1 = np.exp(-m)
    assert q.pop().item() == pytest.approx((1.0 + w1 * 10.0) / (1 + w1))
    q.push(torch.tensor([[[20.0], [21.0], [22.0]]]))
    w = np.exp(-m * np.arange(3))
    assert q.pop().item() == pytest.approx((w @ np.array([2.0, 11.0, 20.0])) / w.sum(), rel=1e-6)
    q.push(torch.tensor([[[30.0], [31.0], [32.0]]]))  # the first chunk no longer covers this step
    w = np.exp(-m * np.arange(3))
    assert q.pop().item() == pytest.approx((w @ np.array([12.0, 21.0, 30.0])) / w.sum(), rel=1e-6)


def test_chunk_queue_matches_the_runtime_action_queue():
    rng = np.random.default_rng(0)
    ours = ChunkQueue(chunk=5, ensemble_coef=0.1)
    theirs = ActionQueue(action_dim=3, chunk=5, ensemble_coef=0.1)
    for _ in range(12):
        c = rng.normal(size=(5, 3))
        ours.push(torch.as_tensor(c)[None])
        theirs.push(c)
        np.testing.assert_allclose(ours.pop()[0].numpy(), theirs.pop(), rtol=1e-12)


# ---- interface ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["act", "diffusion"])
def test_select_action_queue_and_reset(kind, fixture_store):
    policy = build(kind, fixture_store).eval()
    obs = {"policy": torch.randn(3, 6), CAM: torch.randint(0, 256, (3, 16, 16, 3), dtype=torch.uint8)}
    for _ in range(3):
        a = policy.select_action(obs)
        assert a.shape == (3, 2) and torch.isfinite(a).all()
    if kind == "diffusion":
        assert not policy.queue.needs_chunk or policy.cfg.n_action_steps == 1
    policy.reset()
    assert policy.queue.needs_chunk


@pytest.mark.parametrize("kind", ["act", "diffusion"])
def test_description_roundtrip_and_kind_guard(kind, fixture_store):
    policy = build(kind, fixture_store).eval()
    clone = policy_from_description(json.loads(json.dumps(policy.describe())), policy.state_dict()).eval()
    obs = {"observation.policy": torch.randn(2, 6), CAM: torch.randint(0, 256, (2, 16, 16, 3), dtype=torch.uint8)}
    if kind == "diffusion":
        obs = {k: torch.stack([v, v], 1) for k, v in obs.items()}
        g = lambda: {"generator": torch.Generator().manual_seed(0)}  # noqa: E731
    else:
        g = dict
    torch.testing.assert_close(policy.predict_action_chunk(obs, **g()), clone.predict_action_chunk(obs, **g()))
    other = "diffusion" if kind == "act" else "act"
    with pytest.raises(CheckpointError, match=f"holds a '{kind}' policy, not '{other}'"):
        policy_from_description(policy.describe(), expect_kind=other)


def test_diffusion_samplers_and_step_counts(fixture_store):
    for sampler, steps in [("ddpm", 20), ("ddim", 10), ("ddim", 3)]:
        policy = build("diffusion", fixture_store, sampler=sampler, num_inference_steps=steps).eval()
        calls: list[int] = []
        policy.inference_net.register_forward_hook(lambda *a, calls=calls: calls.append(1))
        obs = {"observation.policy": torch.randn(2, 2, 6),
               CAM: torch.randint(0, 256, (2, 2, 16, 16, 3), dtype=torch.uint8)}
        chunk = policy.predict_action_chunk(obs)
        assert chunk.shape == (2, policy.cfg.n_action_steps, 2) and torch.isfinite(chunk).all()
        assert len(calls) == steps


def test_diffusion_ema_tracks_the_weights(fixture_store):
    policy = build("diffusion", fixture_store)
    ds = WindowDataset(fixture_store, policy.deltas)
    opt = torch.optim.SGD(policy.param_groups(), lr=0.1)
    before = [p.clone() for p in policy.ema.parameters()]
    loss, _ = policy(ds.get_batch(list(range(8))))
    loss.backward()
    opt.step()
    policy.ema_update()  # first update: decay 0 -> EMA equals the weights
    for pe, p in zip(policy.ema.parameters(), policy.net.parameters(), strict=True):
        torch.testing.assert_close(pe, p)
    assert any(not torch.equal(b, pe) for b, pe in zip(before, policy.ema.parameters(), strict=True))
    assert int(policy.ema_steps) == 1


# ---- bad input ------------------------------------------------------------------------------------------------
def test_missing_feature_names_the_key(tmp_path):
    store = EpisodeStore(write_fixture(tmp_path / "noimg.zarr", images=False))
    with pytest.raises(PolicyInputError, match="no feature 'observation.images.front'"):
        resolve_features(store, [STATE], ["observation.images.front"])
    with pytest.raises(PolicyInputError, match="no feature 'observation.joints'"):
        resolve_features(store, ["observation.joints"], None)


def test_task_shape_mismatch_names_the_key():
    feats = {STATE: (6,), "action": (2,)}
    check_task(feats, {"policy": 6, "critic": 9}, 2, "t")
    with pytest.raises(PolicyInputError, match="key 'observation.policy': dataset has shape \\(6,\\), task 't' "):
        check_task(feats, {"policy": 146}, 2, "t")
    with pytest.raises(PolicyInputError, match="key 'action'"):
        check_task(feats, {"policy": 6}, 4, "t")
    with pytest.raises(PolicyInputError, match="no observation group 'policy'"):
        check_task(feats, {"state": 6}, 2, "t")


def test_observation_shape_mismatch_names_the_key(fixture_store):
    policy = build("act", fixture_store).eval()
    with pytest.raises(PolicyInputError, match="key 'observation.policy'"):
        policy.predict_action_chunk({"policy": torch.randn(1, 7), CAM: torch.zeros(1, 16, 16, 3, dtype=torch.uint8)})


def test_state_only_policies(tmp_path):
    store = EpisodeStore(write_fixture(tmp_path / "state.zarr", images=False))
    for kind in ("act", "diffusion"):
        policy = build(kind, store)
        assert policy.image_keys == []
        loss, _ = policy(WindowDataset(store, policy.deltas).get_batch([0, 1, 2]))
        assert torch.isfinite(loss)


def test_fixture_golden_files_exist():
    assert {p.name for p in Path(GOLDEN).glob("*.json")} >= {"act.json", "diffusion.json"}


@pytest.mark.parametrize("kind", ["act", "diffusion"])
def test_image_augmentation_only_in_training(kind, fixture_store):
    policy = build(kind, fixture_store, color_jitter=0.3, image_shift=2)
    batch = WindowDataset(fixture_store, policy.deltas).get_batch(list(range(6)))
    policy.eval()  # no augmentation: the loss is a function of the seed only
    torch.manual_seed(3)
    a = policy(batch)[0]
    torch.manual_seed(3)
    assert torch.equal(a, policy(batch)[0])
    policy.train()
    torch.manual_seed(3)
    assert torch.isfinite(policy(batch)[0])


def test_color_jitter_range():
    from robolearn.policies.common import color_jitter

    x = torch.full((4, 8, 8, 3), 128.0)
    y = color_jitter(x, 0.5)
    assert y.shape == x.shape and (y >= 0).all() and (y <= 255).all()
    assert not torch.equal(x, y)


def test_diffusion_transformer_denoiser(fixture_store):
    policy = build("diffusion", fixture_store, denoiser="transformer", transformer_dim=16, transformer_heads=2,
                   transformer_layers=1)
    assert type(policy.net.denoiser).__name__ == "TransformerDenoiser"
    ds = WindowDataset(fixture_store, policy.deltas)
    loss, _ = policy(ds.get_batch(list(range(6))))
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in policy.net.denoiser.parameters())
    policy.eval()
    obs = {STATE: torch.randn(2, 2, 6), CAM: torch.randint(0, 256, (2, 2, 16, 16, 3), dtype=torch.uint8)}
    assert policy.predict_action_chunk(obs).shape == (2, policy.cfg.n_action_steps, 2)
