"""Writer: ONNX round trip, manifest contents, C target, atomic write and refusal to overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from robolearn.core.types import ActionSpec, ActionTerm, ObsTerm, TaskSpec
from robolearn.export.artifact import ExportError, export_policy, read_manifest, sha256_file, verify_files
from robolearn.export.onnx_export import run_onnx
from robolearn.networks.mlp import MLPPolicy


def make_spec() -> TaskSpec:
    obs = (ObsTerm("pos_err", 3, "m", "goal minus position"), ObsTerm("lin_vel", 3, "m/s"))
    act = ActionSpec(
        terms=(
            ActionTerm("thrust", 1, "N", (0.3,), (0.3,)),
            ActionTerm("body_rate", 2, "rad/s", (2.0, 2.0), (0.0, 0.0)),
        ),
        rate_hz=100.0,
    )
    return TaskSpec("toy-hover", {"policy": obs, "critic": obs}, act, robot="toycopter")


def make_policy(activation: str = "elu", output: str = "clamp") -> MLPPolicy:
    torch.manual_seed(0)
    p = MLPPolicy(6, 3, [16, 16], activation, output)
    with torch.no_grad():
        p.mlp.linears[-1].reset_parameters()  # like a trained policy, not the near-zero init
        p.normalizer.mean.copy_(torch.randn(6))
        p.normalizer.var.copy_(torch.rand(6) * 3 + 0.05)
        p.normalizer.count.fill_(1000)
    return p


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, MLPPolicy]:
    policy = make_policy()
    out = tmp_path_factory.mktemp("art") / "toy"
    export_policy(policy, make_spec(), out, source={"run_dir": "runs/toy", "config": {"lr": 3e-4, "hidden": (16, 16)}},
                  targets=("onnx", "c"), extra_manifest={"notes": "test"})
    return out, policy


def test_onnx_matches_torch_including_clipped_inputs(exported: tuple[Path, MLPPolicy]) -> None:
    out, policy = exported
    rng = np.random.default_rng(1)
    for batch in (1, 7):
        obs = (rng.standard_normal((batch, 6)) * rng.choice([1.0, 50.0, 1e4], (batch, 6))).astype(np.float32)
        with torch.no_grad():
            want = policy(torch.from_numpy(obs)).numpy()
        got = run_onnx(out / "policy.onnx", obs)
        assert got.shape == (batch, 3)
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_manifest_contents(exported: tuple[Path, MLPPolicy]) -> None:
    out, policy = exported
    m = read_manifest(out)
    assert m["schema_version"] == 2 and m["task"] == "toy-hover" and m["robot"] == "toycopter"
    assert m["control_rate_hz"] == 100.0
    assert [(t["name"], t["offset"], t["unit"]) for t in m["observation"]["terms"]] == [
        ("pos_err", 0, "m"), ("lin_vel", 3, "m/s")]
    norm = m["observation"]["normalization"]
    assert norm["folded_into_onnx"] is True and norm["clip"] == 10.0 and norm["eps"] == pytest.approx(1e-2)
    np.testing.assert_allclose(norm["std"], policy.normalizer.std.numpy(), rtol=1e-6)
    assert m["action"]["terms"][1]["scale"] == [2.0, 2.0] and m["action"]["dim"] == 3
    assert m["network"] == policy.describe()
    assert m["files"]["onnx"]["sha256"] == sha256_file(out / "policy.onnx")
    assert m["files"]["weights"]["sha256"] == sha256_file(out / "weights.safetensors")
    assert set(m["files"]["c"]["files"]) == {"rl_policy.h", "rl_policy.c", "README.txt"}
    assert m["source"]["run_dir"] == "runs/toy" and m["source"]["config"]["hidden"] == [16, 16]
    assert m["source"]["robolearn_version"] and m["source"]["created"]
    assert m["notes"] == "test"
    weights = verify_files(out, m)
    assert weights["mlp.0.weight"].dtype == np.float32 and weights["mlp.0.weight"].shape == (16, 6)


def test_c_target_written(exported: tuple[Path, MLPPolicy]) -> None:
    out, _ = exported
    header = (out / "c" / "rl_policy.h").read_text()
    assert "#define RL_POLICY_OBS_DIM 6" in header and "#define RL_POLICY_OBS_LIN_VEL_OFFSET 3" in header
    assert "rl_policy_eval" in (out / "c" / "README.txt").read_text()


def test_refuses_to_overwrite_and_overwrites_when_asked(exported: tuple[Path, MLPPolicy]) -> None:
    out, policy = exported
    before = sha256_file(out / "manifest.json")
    with pytest.raises(ExportError, match="refusing to overwrite"):
        export_policy(policy, make_spec(), out, source={})
    assert sha256_file(out / "manifest.json") == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["toy"]  # no temp dirs left behind

    copy_dir = out.parent / "again"
    export_policy(policy, make_spec(), copy_dir, source={"run_dir": "a"})
    export_policy(policy, make_spec(), copy_dir, source={"run_dir": "b"}, overwrite=True)
    assert read_manifest(copy_dir)["source"]["run_dir"] == "b"
    assert not (copy_dir / "c").exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["again", "toy"]


def test_exports_into_existing_empty_dir_and_keeps_caller_policy(tmp_path: Path) -> None:
    policy = make_policy("tanh", "tanh")
    policy.train()
    (tmp_path / "empty").mkdir()
    export_policy(policy, make_spec(), tmp_path / "empty", source={}, targets=())
    assert policy.training
    assert json.loads((tmp_path / "empty" / "manifest.json").read_text())["files"].keys() == {"weights"}


def test_writer_rejects_mismatches(tmp_path: Path) -> None:
    spec = make_spec()
    with pytest.raises(ExportError, match="policy takes 5 observations"):
        export_policy(MLPPolicy(5, 3), spec, tmp_path / "a", source={})
    with pytest.raises(ExportError, match="would replace"):
        export_policy(make_policy(), spec, tmp_path / "a", source={}, extra_manifest={"network": {}})
    with pytest.raises(ExportError, match="unknown export target"):
        export_policy(make_policy(), spec, tmp_path / "a", source={}, targets=("tflite",))
    with pytest.raises(ExportError, match=r"source\.config\.f: value of type object"):
        export_policy(make_policy(), spec, tmp_path / "a", source={"config": {"f": object()}}, targets=())
    assert not any(tmp_path.iterdir())
