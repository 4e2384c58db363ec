"""Runtime: manifest/file validation errors, input checks, clamping, rate limit, physical mapping, no-torch import."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from robolearn.core.errors import CheckpointError
from robolearn.core.types import ActionSpec, ActionTerm, ObsTerm, TaskSpec
from robolearn.export.artifact import export_policy
from robolearn.export.runtime import InvalidInputError, PolicyRuntime, StaleInputError
from robolearn.networks.mlp import MLPPolicy

REPO = Path(__file__).resolve().parents[2]


def make_spec() -> TaskSpec:
    obs = (ObsTerm("pos_err", 3, "m"), ObsTerm("lin_vel", 3, "m/s"))
    act = ActionSpec(
        terms=(
            ActionTerm("thrust", 1, "N", (0.3,), (0.3,)),
            ActionTerm("body_rate", 2, "rad/s", (2.0, 2.0), (0.0, 0.5)),
        ),
        rate_hz=50.0,
        low=-0.5,
        high=0.5,
    )
    return TaskSpec("toy-hover", {"policy": obs}, act, robot="toycopter")


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    policy = MLPPolicy(6, 3, [16, 16], "tanh", "tanh")
    with torch.no_grad():
        policy.mlp.linears[-1].reset_parameters()  # like a trained policy, not the near-zero init
        policy.normalizer.mean.copy_(torch.randn(6))
        policy.normalizer.var.copy_(torch.rand(6) + 0.1)
        policy.mlp.linears[-1].weight.mul_(20.0)  # outputs saturate, so clamping to [-0.5, 0.5] shows
    out = tmp_path_factory.mktemp("rt") / "toy"
    return export_policy(policy, make_spec(), out, source={"run_dir": "runs/toy"})


@pytest.fixture
def rt(artifact: Path) -> PolicyRuntime:
    return PolicyRuntime.load(artifact)


def tampered(artifact: Path, tmp_path: Path, edit: Callable[[Path], Any]) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(artifact, copy)
    edit(copy)
    return copy


def edit_manifest(fn: Callable[[dict], Any]) -> Callable[[Path], None]:
    def edit(d: Path) -> None:
        m = json.loads((d / "manifest.json").read_text())
        fn(m)
        (d / "manifest.json").write_text(json.dumps(m))

    return edit


def truncate(name: str) -> Callable[[Path], None]:
    def edit(d: Path) -> None:
        data = (d / name).read_bytes()
        (d / name).write_bytes(data[: len(data) // 2])

    return edit


def flip_byte(d: Path) -> None:
    data = bytearray((d / "weights.safetensors").read_bytes())
    data[-3] ^= 0xFF
    (d / "weights.safetensors").write_bytes(bytes(data))


def set_dim(m: dict) -> None:
    m["observation"]["dim"] = 7


def set_term_dim(m: dict) -> None:
    m["observation"]["terms"][1]["dim"] = 4


def drop_std(m: dict) -> None:
    del m["observation"]["normalization"]["std"]


def drop_action(m: dict) -> None:
    del m["action"]


def newer_schema(m: dict) -> None:
    m["schema_version"] = 3


def chunk_kind_in_schema_1(m: dict) -> None:
    m["schema_version"], m["network"]["kind"] = 1, "act"


def wider_hidden(m: dict) -> None:
    m["network"]["hidden"] = [32, 16]


def short_scale(m: dict) -> None:
    m["action"]["terms"][1]["scale"] = [2.0]


@pytest.mark.parametrize(
    ("edit", "kwargs", "pattern"),
    [
        (edit_manifest(set_dim), {}, r"manifest\.json: 'observation\.dim' is 7 but the dims of 'observation\.terms'"),
        (edit_manifest(set_term_dim), {}, r"'observation\.dim' is 6 but the dims of 'observation\.terms' sum to 7"),
        (edit_manifest(drop_std), {}, r"manifest\.json: missing key 'observation\.normalization\.std'"),
        (edit_manifest(drop_action), {}, r"manifest\.json: missing key 'action\.dim'"),
        (edit_manifest(newer_schema), {}, r"schema_version 3 was written by a newer robolearn"),
        (edit_manifest(chunk_kind_in_schema_1), {}, r"key 'network\.kind' is 'act'; schema 1 knows mlp"),
        (edit_manifest(short_scale), {}, r"key 'scale' has 1 values, expected 2"),
        (edit_manifest(wider_hidden), {}, r"weights\.safetensors: tensor 'mlp\.0\.weight' has shape \(16, 6\)"),
        (flip_byte, {}, r"weights\.safetensors: sha256 does not match manifest key 'files\.weights\.sha256'"),
        (truncate("policy.onnx"), {}, r"policy\.onnx: sha256 does not match manifest key 'files\.onnx\.sha256'"),
        (truncate("policy.onnx"), {"verify_hashes": False}, r"policy\.onnx: not a loadable ONNX model"),
        (truncate("weights.safetensors"), {"verify_hashes": False}, r"weights\.safetensors: not a readable"),
        (lambda d: (d / "policy.onnx").unlink(), {}, r"policy\.onnx: missing \(listed in manifest key 'files\.onnx'\)"),
        (lambda d: (d / "manifest.json").write_text("{"), {}, r"manifest\.json: not valid JSON"),
    ],
)
def test_bad_artifacts_give_one_clear_line(artifact: Path, tmp_path: Path, edit: Callable, kwargs: dict,
                                           pattern: str) -> None:
    bad = tampered(artifact, tmp_path, edit)
    with pytest.raises(CheckpointError, match=pattern) as info:
        PolicyRuntime.load(bad, **kwargs)
    assert "\n" not in str(info.value)


def test_schema_1_artifacts_still_load(artifact: Path, rt: PolicyRuntime, tmp_path: Path) -> None:
    """An MLP artifact of robolearn 0.1 (schema 1 has the same keys) runs unchanged."""
    old = tampered(artifact, tmp_path, edit_manifest(lambda m: m.update(schema_version=1)))
    x = np.random.default_rng(3).standard_normal((4, 6))
    np.testing.assert_array_equal(PolicyRuntime.load(old).act(x), rt.act(x))


def test_self_check_catches_weights_that_disagree_with_onnx(artifact: Path, tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    def swap(d: Path) -> None:
        w = load_file(str(d / "weights.safetensors"))
        w["mlp.4.bias"] = w["mlp.4.bias"] + 0.5
        save_file(w, str(d / "weights.safetensors"))

    bad = tampered(artifact, tmp_path, swap)
    with pytest.raises(CheckpointError, match="backend 'torch' gives actions"):
        PolicyRuntime.load(bad, backend="torch", verify_hashes=False)


def test_act_shapes_clamps_and_backends_agree(artifact: Path, rt: PolicyRuntime) -> None:
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((64, 6)) * 30  # float64 is accepted
    a = rt.act(obs)
    assert a.shape == (64, 3) and a.dtype == np.float32
    assert a.min() == -0.5 and a.max() == 0.5  # saturating outputs are clamped to the manifest limits
    assert rt.act(obs[0]).shape == (3,)
    np.testing.assert_allclose(PolicyRuntime.load(artifact, backend="torch").act(obs), a, atol=1e-5)
    assert (rt.obs_dim, rt.action_dim, rt.control_rate_hz) == (6, 3, 50.0)
    assert [t["name"] for t in rt.obs_terms] == ["pos_err", "lin_vel"]
    assert [t["index"] for t in rt.action_terms] == [0, 1]
    assert rt.manifest["task"] == "toy-hover"
    s = rt.stats()
    assert s["calls"] == 2 and s["window"] == 2 and 0 < s["p50_ms"] <= s["p99_ms"] <= s["max_ms"]


def test_rejects_non_finite_naming_the_term(rt: PolicyRuntime) -> None:
    obs = np.zeros(6)
    obs[4] = np.nan
    with pytest.raises(InvalidInputError, match=r"observation term 'lin_vel' \(indices 3\.\.5\) is not finite"):
        rt.act(obs)
    batch = np.zeros((3, 6))
    batch[2, 0] = np.inf
    batch[1, 5] = -np.inf
    pattern = r"terms 'pos_err' \(indices 0\.\.2\), 'lin_vel' \(indices 3\.\.5\) are not finite in rows \[1, 2\]"
    with pytest.raises(InvalidInputError, match=pattern):
        rt.act(batch)
    assert rt.stats()["rejected"] == 2


@pytest.mark.parametrize("obs", [np.zeros(5), np.zeros((2, 3, 6)), np.zeros((0, 6)), np.array(["a"] * 6),
                                 np.zeros(6, dtype=bool)])
def test_rejects_wrong_shape_or_dtype(rt: PolicyRuntime, obs: np.ndarray) -> None:
    with pytest.raises(InvalidInputError, match="observation has"):
        rt.act(obs)


def test_staleness(artifact: Path) -> None:
    rt = PolicyRuntime.load(artifact, max_age_s=0.05)
    assert rt.act(np.zeros(6), stamp=10.0, now=10.02).shape == (3,)
    with pytest.raises(StaleInputError, match="100.0 ms old"):
        rt.act(np.zeros(6), stamp=10.0, now=10.1)
    with pytest.raises(StaleInputError, match="in the future"):
        rt.act(np.zeros(6), stamp=11.0, now=10.0)
    with pytest.raises(InvalidInputError, match="needs stamp="):
        rt.act(np.zeros(6))


def test_rate_limit_and_reset(artifact: Path) -> None:
    rt = PolicyRuntime.load(artifact, max_delta_per_step=0.1)
    free = PolicyRuntime.load(artifact)
    rng = np.random.default_rng(3)
    obs_a, obs_b = rng.standard_normal(6) * 5, rng.standard_normal(6) * 5
    first = rt.act(obs_a)
    want_b = free.act(obs_b)
    assert np.abs(want_b - first).max() > 0.1  # the step is big enough to be limited
    second = rt.act(obs_b)
    np.testing.assert_allclose(second, first + np.clip(want_b - first, -0.1, 0.1), atol=1e-6)
    rt.reset()
    np.testing.assert_allclose(rt.act(obs_b), want_b, atol=1e-6)
    with pytest.raises(InvalidInputError, match="call reset"):
        rt.act(np.stack([obs_a, obs_b]))


def test_to_physical(rt: PolicyRuntime) -> None:
    # thrust: 0.3 + 0.3 a ; body_rate: (0, 0.5) + 2 a ; a first clamped to [-0.5, 0.5]
    np.testing.assert_allclose(rt.to_physical(np.array([0.5, -0.25, 0.1])), [0.45, -0.5, 0.7])
    np.testing.assert_allclose(rt.to_physical(np.array([[1.0, -1.0, 0.0]])), [[0.45, -1.0, 0.5]])
    lo, hi = rt.physical_limits()
    np.testing.assert_allclose(lo, [0.15, -1.0, -0.5])
    np.testing.assert_allclose(hi, [0.45, 1.0, 1.5])
    with pytest.raises(InvalidInputError):
        rt.to_physical(np.zeros(2))


def test_runtime_imports_and_runs_without_torch(artifact: Path) -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "from robolearn.export import PolicyRuntime\n"
        "rt = PolicyRuntime.load(sys.argv[1])\n"
        "print(rt.act(np.zeros(6)).shape, 'torch' in sys.modules and sys.modules['torch'] is not None)\n"
    )
    res = subprocess.run([sys.executable, "-c", code, str(artifact)], capture_output=True, text=True, cwd=REPO,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "(3,) False"
