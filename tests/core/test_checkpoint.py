from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import safetensors.torch
import torch

from robolearn.core import checkpoint as ckpt_mod
from robolearn.core.checkpoint import checkpoint_path, latest_checkpoint, load_checkpoint, save_checkpoint
from robolearn.core.errors import CheckpointError
from robolearn.core.seeding import rng_state, seed_everything, set_rng_state


def make_model_and_adam(steps: int = 3) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.8, 0.99))
    for _ in range(steps):
        train_step(model, opt, seed=len(opt.state))
    return model, opt


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 4, generator=g)
    loss = model(x).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


def assert_same(a, b) -> None:
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a, b)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert type(k) is type(next(kb for kb in b if kb == k))
            assert_same(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    else:
        assert a == b or (a != a and b != b)  # NaN


# ---------------------------------------------------------------------------------------------------- round trips


def test_adam_state_round_trip_and_identical_continuation(tmp_path):
    model, opt = make_model_and_adam()
    path = tmp_path / "checkpoints" / "iter_000003.safetensors"
    save_checkpoint(path, {"model": model.state_dict(), "optim": opt.state_dict()}, {"iteration": 3})

    state, meta = load_checkpoint(path)
    assert meta == {"iteration": 3}
    assert_same(dict(opt.state_dict()), state["optim"])
    assert list(state["optim"]["state"]) == [0, 1, 2, 3]  # int keys stay ints
    assert state["optim"]["param_groups"][0]["betas"] == (0.8, 0.99)  # tuples stay tuples

    model2, opt2 = make_model_and_adam(steps=0)
    model2.load_state_dict(state["model"])
    opt2.load_state_dict(state["optim"])
    for step in range(3):
        train_step(model, opt, seed=100 + step)
        train_step(model2, opt2, seed=100 + step)
    for p1, p2 in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(p1, p2)


def test_rng_state_round_trip(tmp_path):
    seed_everything(123)
    state = rng_state()
    assert state["torch"].dtype == torch.uint8
    save_checkpoint(tmp_path / "c.safetensors", {"rng": state})
    expected = (torch.rand(3), np.random.rand(3))
    loaded, meta = load_checkpoint(tmp_path / "c.safetensors")
    assert meta == {}
    assert_same(state, loaded["rng"])
    set_rng_state(loaded["rng"])
    assert torch.equal(torch.rand(3), expected[0]) and np.array_equal(np.random.rand(3), expected[1])


def test_exact_structure_and_types(tmp_path):
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    state = {
        "keys": {0: "zero", 7: 1, "7": 2.5, -5: None, 2.5: "float key", True: "bool key"},
        "nested": {"a": {"b": {"c": {"d": [torch.ones(2), (1, "x", torch.zeros(1, dtype=torch.int64))]}}}},
        "scalars": [1, 1.0, True, None, "s", float("inf"), float("nan"), 2**70],
        "empty": {"d": {}, "l": [], "t": ()},
        "transposed": base.t(),  # non-contiguous
        "view": base[1],  # shares storage with base
        "base": base,
        "dtypes": [torch.ones(2, dtype=dt) for dt in (torch.bool, torch.uint8, torch.int32, torch.float16)],
        "bf16": torch.randn(3).to(torch.bfloat16),
        "zero_dim": torch.tensor(3.5),
        "no_elems": torch.zeros(0, 3),
        "numpy": np.arange(6, dtype=np.float32).reshape(2, 3),
        "np_scalar": np.float64(0.25),
        "dotted.key": {"x": torch.ones(1)},
        "dotted": {"key": {"x": torch.zeros(1)}},  # same flattened name as above
    }
    save_checkpoint(tmp_path / "c.safetensors", state)
    loaded, _ = load_checkpoint(tmp_path / "c.safetensors")
    expected = {**state, "np_scalar": 0.25}
    assert_same(expected, loaded)
    assert loaded["transposed"].is_contiguous()


def test_requires_grad_and_tied_tensors(tmp_path):
    w = torch.nn.Parameter(torch.randn(3, 3))
    save_checkpoint(tmp_path / "c.safetensors", {"enc": {"w": w}, "dec": {"w": w}})
    loaded, _ = load_checkpoint(tmp_path / "c.safetensors")
    assert torch.equal(loaded["enc"]["w"], w.detach()) and not loaded["enc"]["w"].requires_grad
    assert loaded["enc"]["w"] is loaded["dec"]["w"]  # stored once, still tied


def test_no_pickle_in_file(tmp_path):
    model, opt = make_model_and_adam(steps=1)
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"optim": opt.state_dict()}, {"note": "x"})
    raw = path.read_bytes()
    assert b"\x80\x04" not in raw[:16] and raw[8:9] == b"{"  # safetensors: u64 header length, then JSON
    header = json.loads(raw[8 : 8 + struct.unpack("<Q", raw[:8])[0]])
    assert header["__metadata__"]["format"] == "robolearn.checkpoint"


def test_unsupported_leaf_fails_at_save(tmp_path):
    with pytest.raises(TypeError, match=r"cannot store object at 'a\.b'"):
        save_checkpoint(tmp_path / "c.safetensors", {"a": {"b": object()}})
    with pytest.raises(TypeError, match=r"meta must be JSON-serializable"):
        save_checkpoint(tmp_path / "c.safetensors", {}, {"bad": object()})
    assert not list(tmp_path.iterdir())


def test_map_location_argument(tmp_path):
    save_checkpoint(tmp_path / "c.safetensors", {"x": torch.ones(2)})
    state, _ = load_checkpoint(tmp_path / "c.safetensors", map_location=torch.device("cpu"))
    assert state["x"].device.type == "cpu"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tensors_save_and_map_location(tmp_path):
    x = torch.randn(5, device="cuda")
    save_checkpoint(tmp_path / "c.safetensors", {"x": x, "n": np.ones(2)})
    state, _ = load_checkpoint(tmp_path / "c.safetensors", map_location="cuda")
    assert state["x"].is_cuda and torch.equal(state["x"], x) and isinstance(state["n"], np.ndarray)
    state, _ = load_checkpoint(tmp_path / "c.safetensors")
    assert state["x"].device.type == "cpu"


# ---------------------------------------------------------------------------------------------------- atomic writes


def test_failure_mid_write_keeps_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "iter_000001.safetensors"
    save_checkpoint(path, {"x": torch.ones(4)}, {"version": "old"})
    old_bytes = path.read_bytes()
    real_save_file = safetensors.torch.save_file

    def crash_mid_write(tensors, filename, metadata=None):
        real_save_file(tensors, filename, metadata=metadata)
        with open(filename, "r+b") as f:  # leave a half-written file behind, then die
            f.truncate(40)
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(safetensors.torch, "save_file", crash_mid_write)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"x": torch.zeros(1000)}, {"version": "new"})
    assert path.read_bytes() == old_bytes
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # temp file cleaned up
    assert load_checkpoint(path)[1] == {"version": "old"}


def test_failure_at_rename_keeps_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "iter_000001.safetensors"
    save_checkpoint(path, {"x": torch.ones(4)})

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"x": torch.zeros(4)})
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)[0]["x"], torch.ones(4))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_overwrite_existing(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"x": torch.ones(4)})
    save_checkpoint(path, {"x": torch.zeros(2)})
    assert torch.equal(load_checkpoint(path)[0]["x"], torch.zeros(2))


# ---------------------------------------------------------------------------------------------------- load errors


def test_missing_file(tmp_path):
    path = tmp_path / "nope.safetensors"
    with pytest.raises(CheckpointError, match=r"nope\.safetensors: no such checkpoint file$"):
        load_checkpoint(path)


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(CheckpointError, match=r": not a file"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("keep", [0, 5, 100, -10, -1])
def test_truncated_file(tmp_path, keep):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"x": torch.randn(64), "y": {"z": torch.ones(3)}}, {"i": 1})
    raw = path.read_bytes()
    path.write_bytes(raw[:keep])
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg


def test_corrupted_tensor_bytes(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"x": torch.zeros(64)})
    raw = bytearray(path.read_bytes())
    raw[-7] ^= 0xFF  # flip bits inside the tensor data
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"c\.safetensors: corrupted data: checksum mismatch for tensor 'x'"):
        load_checkpoint(path)


def test_garbage_file(tmp_path):
    path = tmp_path / "c.safetensors"
    path.write_bytes(b"PK\x03\x04 this is a zip, or a pickle, or anything")
    with pytest.raises(CheckpointError, match=r"c\.safetensors: not a valid safetensors file"):
        load_checkpoint(path)


def test_torch_save_file_is_rejected(tmp_path):
    path = tmp_path / "c.safetensors"
    torch.save({"x": torch.ones(2)}, path)
    with pytest.raises(CheckpointError, match=r"not a valid safetensors file"):
        load_checkpoint(path)


def test_plain_safetensors_file_is_wrong_format(tmp_path):
    path = tmp_path / "weights.safetensors"
    safetensors.torch.save_file({"w": torch.ones(2)}, str(path))
    with pytest.raises(CheckpointError, match=r"weights\.safetensors: a safetensors file but not a robolearn"):
        load_checkpoint(path)


def test_newer_format_version(tmp_path):
    path = tmp_path / "c.safetensors"
    header = {"format": "robolearn.checkpoint", "format_version": "99", "structure": "{}", "checksums": "{}"}
    safetensors.torch.save_file({"w": torch.ones(2)}, str(path), metadata=header)
    with pytest.raises(CheckpointError, match=r"format version 99 is newer"):
        load_checkpoint(path)


def test_corrupted_structure_header(tmp_path):
    path = tmp_path / "c.safetensors"
    header = {"format": "robolearn.checkpoint", "format_version": "1", "structure": '{"d": [["w", {"t": "nope"}]]}'}
    safetensors.torch.save_file({"w": torch.ones(2)}, str(path), metadata={**header, "checksums": '{"w": 0}'})
    with pytest.raises(CheckpointError, match=r"c\.safetensors: corrupted"):
        load_checkpoint(path)


# ---------------------------------------------------------------------------------------------------- latest


def test_latest_checkpoint_by_iteration_number(tmp_path):
    assert latest_checkpoint(tmp_path / "missing") is None
    assert latest_checkpoint(tmp_path) is None
    for it in (5, 100, 20, 1_000_000):
        save_checkpoint(checkpoint_path(tmp_path, it), {"i": it})
    (tmp_path / ".iter_9999999.safetensors.123.tmp").write_bytes(b"partial")
    (tmp_path / "notes.txt").write_text("iter 99999999")
    (tmp_path / "latest.safetensors").write_bytes(b"")
    assert checkpoint_path(tmp_path, 20).name == "iter_000020.safetensors"
    assert latest_checkpoint(tmp_path) == tmp_path / "iter_1000000.safetensors"
