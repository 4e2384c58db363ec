"""Generated C compiled with the system `cc` equals torch (and the runtime's clamp) within 1e-5."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from robolearn.core.types import ActionSpec, ActionTerm, ObsTerm
from robolearn.export.artifact import ExportError
from robolearn.export.c_codegen import build_c_harness, generate_c, run_c_harness
from robolearn.networks.mlp import MLPPolicy

CC = shutil.which("cc")
STRICT = ("-O2", "-Wall", "-Wextra", "-pedantic", "-Werror", "-Wdouble-promotion")
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler 'cc'")


def make_policy(activation: str, output: str, obs_dim: int = 10) -> MLPPolicy:
    torch.manual_seed(0)
    p = MLPPolicy(obs_dim, 3, [24, 16], activation, output)
    with torch.no_grad():
        p.mlp.linears[-1].reset_parameters()  # like a trained policy, not the near-zero init
        p.normalizer.mean.copy_(torch.randn(obs_dim))
        p.normalizer.var.copy_(torch.rand(obs_dim) * 2 + 0.01)
        p.mlp.linears[-1].weight.mul_(3.0)
    return p


def raw_obs(n: int, dim: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.standard_normal((n, dim)) * rng.choice([0.3, 3.0, 1e3], (n, dim))).astype(np.float32)


@needs_cc
@pytest.mark.parametrize(("activation", "output"), [("tanh", "tanh"), ("relu", "clamp"), ("elu", "tanh"),
                                                    ("silu", "clamp"), ("gelu", "tanh")])
def test_c_matches_torch(tmp_path: Path, activation: str, output: str) -> None:
    policy = make_policy(activation, output)
    paths = generate_c(policy, tmp_path / "c")
    assert [p.name for p in paths] == ["rl_policy.h", "rl_policy.c", "README.txt"]
    source = paths[1].read_text()
    assert "malloc" not in source and "static const float rl_policy_w0[240]" in source
    exe = build_c_harness(tmp_path / "c", tmp_path / "build", cc=CC or "cc", flags=STRICT)
    obs = raw_obs(200, 10)  # includes values far beyond the normalizer clip
    with torch.no_grad():
        want = policy(torch.from_numpy(obs)).numpy()
    np.testing.assert_allclose(run_c_harness(exe, obs), want, atol=1e-5, rtol=0)


@needs_cc
def test_c_with_terms_prefix_and_action_limits(tmp_path: Path) -> None:
    policy = make_policy("elu", "clamp", obs_dim=5)
    obs_terms = (ObsTerm("pos", 3, "m"), ObsTerm("yaw-rate", 2, "rad/s", "gyro z */ nasty"))
    action = ActionSpec((ActionTerm("motor", 3, "1", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),), rate_hz=100.0,
                        low=-0.25, high=0.75)
    generate_c(policy, tmp_path / "c", "quad", obs_terms=obs_terms, action=action)
    header = (tmp_path / "c" / "quad.h").read_text()
    assert "#define QUAD_OBS_YAW_RATE_OFFSET 3" in header and "#define QUAD_ACTION_MOTOR_DIM 3" in header
    assert "void quad_eval(const float obs[QUAD_OBS_DIM], float action[QUAD_ACTION_DIM]);" in header
    exe = build_c_harness(tmp_path / "c", tmp_path / "build", prefix="quad", cc=CC or "cc", flags=STRICT)
    obs = raw_obs(100, 5)
    with torch.no_grad():
        want = policy(torch.from_numpy(obs)).clamp(-0.25, 0.75).numpy()
    got = run_c_harness(exe, obs)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert got.min() == -0.25 and got.max() == 0.75


def test_c_rejects_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="not a C identifier"):
        generate_c(make_policy("tanh", "tanh"), tmp_path, "rl-policy")
    with pytest.raises(ExportError, match="same C name"):
        generate_c(make_policy("tanh", "tanh", obs_dim=2), tmp_path, obs_terms=(ObsTerm("a-b", 1), ObsTerm("a_b", 1)))
