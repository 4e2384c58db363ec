"""Asynchronous chunk inference (`ChunkRunner`): real ACT / diffusion artifacts, the inference thread held by a gate.

The gate makes the tests deterministic: a chunk comes back exactly when the test releases it, so "the control step
does not wait" and "the new chunk is indexed from its observation's step" are checked without timing anything.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from robolearn.core.types import ActionSpec, ActionTerm, ObsTerm, TaskSpec
from robolearn.export.runtime import InvalidInputError, PolicyRuntime

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

SPEC = TaskSpec("fixture", {"policy": (ObsTerm("joint_pos", 3, "rad"), ObsTerm("joint_vel", 3, "rad/s"))},
                ActionSpec((ActionTerm("joint_pos_target", 2, "rad", (0.5, 0.5), (0.0, 0.1)),), rate_hz=10.0),
                robot="fixture-arm")
FEATS = {"observation.policy": (6,), "action": (2,)}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _act(path: Path, **kw) -> Path:
    from robolearn.export.chunked import export_chunk_policy
    from robolearn.policies.act import ACTConfig, ACTPolicy

    torch.manual_seed(0)
    cfg = ACTConfig(**{"chunk_size": 8, "n_action_steps": 4, "temporal_ensemble_coef": None, "dim_model": 16,
                       "n_heads": 2, "dim_feedforward": 32, "n_encoder_layers": 1, "n_decoder_layers": 1,
                       "n_vae_encoder_layers": 1, "latent_dim": 4, "dropout": 0.0, **kw})
    return export_chunk_policy(ACTPolicy(cfg, FEATS).eval(), path, SPEC)


@pytest.fixture(scope="module")
def act_artifact(tmp_path_factory) -> Path:
    return _act(tmp_path_factory.mktemp("act") / "a")


class Gate:
    """Holds every chunk prediction made off the control thread until `release()`."""

    def __init__(self, rt) -> None:
        self.rt, self.real = rt, rt.predict_chunk
        self.open, self.entered = threading.Event(), threading.Event()
        self.calls: list[dict[str, np.ndarray]] = []
        rt.predict_chunk = self

    def __call__(self, obs, noise=None, full=False):
        if threading.current_thread() is not threading.main_thread():
            self.calls.append(obs)
            self.entered.set()
            assert self.open.wait(30.0), "test never released the gate"
        return self.real(obs, noise=noise, full=full)

    def release(self) -> None:
        self.open.set()
        assert self.rt.runner.wait_idle(30.0)


def _obs(rng: np.random.Generator) -> np.ndarray:
    return rng.normal(size=6).astype(np.float32) * 3


def test_async_act_keeps_stepping_while_inference_runs_and_aligns_the_new_chunk(act_artifact):
    rt = PolicyRuntime.load(act_artifact, async_inference=True, prefetch_steps=2)
    gate = Gate(rt)
    rng = np.random.default_rng(0)
    obs = [_obs(rng) for _ in range(8)]
    chunk = {k: np.clip(gate.real({"observation.policy": obs[k]}, full=True), -1, 1) for k in (0, 2)}
    assert not np.allclose(chunk[0], chunk[2], atol=1e-3)  # different observations, different chunks

    acts = [rt.act(obs[k]) for k in range(6)]  # step 0 computes the first chunk; step 2 requests the next
    assert gate.entered.wait(30.0)
    assert len(gate.calls) == 1 and np.array_equal(gate.calls[0]["observation.policy"], obs[2])
    for k in range(6):  # the gate holds chunk 2 back: the old chunk keeps playing, past its 4 executed steps
        np.testing.assert_allclose(acts[k], chunk[0][k], atol=1e-5)
    s = rt.stats()
    assert (s["late_steps"], s["late_chunks"], s["chunks"], s["starved_steps"]) == (2, 1, 1, 0)

    gate.release()
    # step 6 plays the chunk computed from step 2's observation at its row 6 - 2 = 4 (steps 2..5 were executed)
    np.testing.assert_allclose(rt.act(obs[6]), chunk[2][4], atol=1e-5)
    assert rt.stats()["chunks"] >= 2 and rt.stats()["chunk_max_ms"] > 0
    rt.close()


def test_async_control_step_never_blocks_on_a_stuck_inference(act_artifact):
    rt = PolicyRuntime.load(act_artifact, async_inference=True, prefetch_steps=1)
    gate = Gate(rt)
    rng = np.random.default_rng(1)
    acts = [rt.act(_obs(rng)) for _ in range(20)]  # would hang here if a step waited on the held chunk
    s = rt.stats()
    assert s["chunks"] == 1 and s["starved_steps"] == 20 - 8 and s["late_steps"] == 20 - 4
    assert all(np.array_equal(a, acts[7]) for a in acts[8:])  # the chunk ran out: its last action is held
    gate.release()
    rt.reset()  # the held chunk belonged to the old episode: dropped, the next one starts fresh
    rt.act(_obs(rng))
    assert rt.stats()["dropped_chunks"] == 0 and rt.runner.k == 1
    rt.close()


def test_async_inference_runs_one_robot_and_reports_worker_errors(act_artifact):
    rt = PolicyRuntime.load(act_artifact, async_inference=True, prefetch_steps=3)
    with pytest.raises(InvalidInputError, match="one robot; got a batch of 2"):
        rt.act(np.zeros((2, 6), np.float32))
    rt.reset()
    rt.act(np.zeros(6, np.float32))

    def broken(obs, noise=None, full=False):
        raise RuntimeError("onnx session died")

    rt.predict_chunk = broken
    rt.act(np.zeros(6, np.float32))  # requests the next chunk (3 of 4 left)
    assert rt.runner.wait_idle(30.0)
    with pytest.raises(InvalidInputError, match="asynchronous chunk inference failed: .*onnx session died"):
        rt.act(np.zeros(6, np.float32))
    rt.close()
    with pytest.raises(ValueError, match="prefetch_steps must be >= 0"):
        PolicyRuntime.load(act_artifact, async_inference=True, prefetch_steps=-1)


def test_async_temporal_ensembling(tmp_path):
    ens = PolicyRuntime.load(_act(tmp_path / "ens", n_action_steps=1, temporal_ensemble_coef=0.1),
                             async_inference=True)
    rng = np.random.default_rng(2)
    for _ in range(12):
        assert np.isfinite(ens.act(_obs(rng))).all()
        ens.runner.wait_idle(30.0)  # every finished chunk joins the ensemble at its own step
    assert ens.stats()["chunks"] >= 6 and ens.stats()["starved_steps"] == 0
    ens.close()


@pytest.mark.slow  # two ONNX exports: ~10 s alone, ~30 s on the loaded 2-core test machine
def test_async_diffusion_requests_chunks_with_its_observation_window(tmp_path):
    from robolearn.export.chunked import export_chunk_policy
    from robolearn.policies.diffusion import DiffusionConfig, DiffusionPolicy

    rng = np.random.default_rng(3)
    torch.manual_seed(0)
    cfg = DiffusionConfig(n_obs_steps=2, horizon=8, n_action_steps=4, down_dims=(8, 16), kernel_size=3, n_groups=4,
                          timestep_embed_dim=8, num_train_timesteps=20, num_inference_steps=3)
    art = export_chunk_policy(DiffusionPolicy(cfg, FEATS).eval(), tmp_path / "dif", SPEC)
    rt = PolicyRuntime.load(art, async_inference=True, prefetch_steps=2)
    gate = Gate(rt)
    window = []
    for _ in range(6):
        o = _obs(rng)
        window = (window or [o]) + [o]
        a = rt.act(o)
        assert a.shape == (2,) and np.isfinite(a).all()
    assert gate.entered.wait(30.0)
    assert len(gate.calls) == 1  # step 2 asked for the next chunk, with the two-step observation window
    np.testing.assert_array_equal(gate.calls[0]["observation.policy"], np.stack(window[2:4]))
    assert rt.runner.length == 8 - 1  # the horizon after the current step: tail actions while a chunk is late
    gate.release()
    rt.act(_obs(rng))
    assert rt.stats()["chunks"] == 2
    rt.close()
