"""Checkpoints as single `.safetensors` files: tensors in the body, nested structure and metadata in the header.

Nothing is ever pickled. `state` is a nested dict of any depth (a model and an optimizer `state_dict`, RNG states,
counters): its leaves are tensors, numpy arrays, numbers, bools, strings and None, inside dicts, lists and tuples.
The header records the exact structure, so dict keys keep their types (an optimizer's int parameter ids stay ints),
tuples stay tuples and floats stay floats. Each tensor is stored once under a readable dotted name
(`optimizer.state.0.exp_avg`); the same tensor object reached twice (tied weights) is stored once and comes back as
one tensor. A CRC-32 of every tensor's bytes is checked on load, so a corrupted body is an error, not silent garbage.

Writes are atomic: the file is written and fsynced under a hidden temporary name in the same folder, then renamed
over the final name, so a process killed mid-write leaves the previous checkpoint (or none) under the final name.
"""

from __future__ import annotations

import json
import os
import re
import uuid
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from safetensors import SafetensorError, safe_open

from robolearn.core.errors import CheckpointError

__all__ = ["CHECKPOINT_SUFFIX", "checkpoint_path", "latest_checkpoint", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_SUFFIX = ".safetensors"
_FORMAT = "robolearn.checkpoint"
_VERSION = 1
_Scalar = (bool, int, float, str, type(None))


def checkpoint_path(directory: str | os.PathLike[str], iteration: int) -> Path:
    """The conventional file name for the checkpoint of an iteration: `<directory>/iter_000100.safetensors`."""
    return Path(directory) / f"iter_{iteration:06d}{CHECKPOINT_SUFFIX}"


def save_checkpoint(
    path: str | os.PathLike[str], state: Mapping[str, Any], meta: Mapping[str, Any] | None = None
) -> None:
    """Write `state` (nested dict of tensors and plain values) and JSON-able `meta` atomically to `path`."""
    path = Path(path)
    if not isinstance(state, Mapping):
        raise TypeError(f"{path}: state must be a dict, got {type(state).__name__}")
    encoder = _Encoder()
    structure = encoder.encode(state, ())
    try:
        meta_json = json.dumps(dict(meta or {}))
    except (TypeError, ValueError) as e:
        raise TypeError(f"{path}: meta must be JSON-serializable: {e}") from None
    header = {
        "format": _FORMAT,
        "format_version": str(_VERSION),
        "structure": json.dumps(structure),
        "checksums": json.dumps(encoder.checksums),
        "meta": meta_json,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        safetensors.torch.save_file(encoder.tensors, str(tmp), metadata=header)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read what `save_checkpoint` wrote as `(state, meta)`, tensors on `map_location`; problems: CheckpointError."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file (expected a {CHECKPOINT_SUFFIX} checkpoint)")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            if header.get("format") != _FORMAT:
                raise CheckpointError(f"{path}: a safetensors file but not a robolearn checkpoint (no format header)")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except SafetensorError as e:
        raise CheckpointError(
            f"{path}: not a valid safetensors file, truncated or corrupted ({_one_line(e)})"
        ) from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read: {_one_line(e)}") from None
    try:
        version = int(header.get("format_version", "?"))
    except ValueError:
        raise CheckpointError(f"{path}: bad format_version {header.get('format_version')!r}") from None
    if version > _VERSION:
        raise CheckpointError(f"{path}: format version {version} is newer than this robolearn reads ({_VERSION})")
    try:
        structure = json.loads(header["structure"])
        checksums = json.loads(header["checksums"])
        meta = json.loads(header.get("meta", "{}"))
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: corrupted header ({type(e).__name__}: {_one_line(e)})") from None
    if not isinstance(checksums, dict) or set(checksums) != set(tensors):
        raise CheckpointError(f"{path}: corrupted header (tensor list does not match the checksums)")
    for key, tensor in tensors.items():
        if _crc(tensor) != checksums[key]:
            raise CheckpointError(f"{path}: corrupted data: checksum mismatch for tensor '{key}'")
    device = torch.device(map_location)
    if device.type != "cpu":
        tensors = {k: v.to(device) for k, v in tensors.items()}
    try:
        state = _decode(structure, tensors)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: corrupted structure header ({type(e).__name__}: {_one_line(e)})") from None
    if not isinstance(state, dict) or not isinstance(meta, dict):
        raise CheckpointError(f"{path}: corrupted header (state or meta is not a dict)")
    return state, meta


def latest_checkpoint(directory: str | os.PathLike[str]) -> Path | None:
    """The checkpoint in `directory` with the highest iteration number in its name, or None."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    best: tuple[int, str] | None = None
    for p in directory.iterdir():
        if p.name.startswith(".") or p.suffix != CHECKPOINT_SUFFIX or not p.is_file():
            continue
        numbers = re.findall(r"\d+", p.stem)
        if numbers and (best is None or (int(numbers[-1]), p.name) > best):
            best = (int(numbers[-1]), p.name)
    return None if best is None else directory / best[1]


def checkpoint_at(directory: str | os.PathLike[str], number: int) -> Path:
    """The checkpoint in `directory` whose name ends in iteration/step `number` (iter_000200 for 200)."""
    directory = Path(directory)
    found: dict[int, Path] = {}
    if directory.is_dir():
        for p in directory.iterdir():
            numbers = re.findall(r"\d+", p.stem)
            if not p.name.startswith(".") and p.suffix == CHECKPOINT_SUFFIX and p.is_file() and numbers:
                found[int(numbers[-1])] = p
    if number not in found:
        have = ", ".join(str(k) for k in sorted(found)) or "none"
        raise CheckpointError(f"{directory}: no checkpoint of iteration {number} (have: {have})")
    return found[number]


class _Encoder:
    """Turns nested state into a JSON structure plus a flat dict of tensors.

    Structure nodes: JSON scalars are themselves; containers are one-key objects: {"d": [[key, node], ...]} (dict,
    keys keep their JSON type), {"l": [...]} (list), {"u": [...]} (tuple), {"t": name} (tensor), {"n": name} (numpy).
    """

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self.checksums: dict[str, int] = {}
        self._by_id: dict[int, str] = {}

    def encode(self, obj: Any, where: tuple[Any, ...]) -> Any:
        if isinstance(obj, torch.Tensor):
            return {"t": self._add(obj, where)}
        if isinstance(obj, np.ndarray):
            return {"n": self._add(obj, where)}
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, _Scalar):
            return obj
        if isinstance(obj, Mapping):
            items = []
            for k, v in obj.items():
                if not isinstance(k, _Scalar):
                    raise TypeError(f"checkpoint state: dict key {k!r} at '{_name(where)}' is not a str/int/float/bool")
                items.append([k, self.encode(v, (*where, k))])
            return {"d": items}
        if isinstance(obj, list):
            return {"l": [self.encode(v, (*where, i)) for i, v in enumerate(obj)]}
        if isinstance(obj, tuple):
            return {"u": [self.encode(v, (*where, i)) for i, v in enumerate(obj)]}
        raise TypeError(
            f"checkpoint state: cannot store {type(obj).__name__} at '{_name(where)}' "
            "(only tensors, numpy arrays, numbers, bools, str, None in dicts/lists/tuples)"
        )

    def _add(self, obj: torch.Tensor | np.ndarray, where: tuple[Any, ...]) -> str:
        if id(obj) in self._by_id:
            return self._by_id[id(obj)]
        if isinstance(obj, np.ndarray):
            tensor = torch.from_numpy(np.array(obj, copy=True, order="C"))
        else:
            if obj.layout != torch.strided:
                raise TypeError(f"checkpoint state: tensor at '{_name(where)}' has layout {obj.layout} (not strided)")
            # a private contiguous CPU copy: no shared storage, no views, no autograd
            tensor = obj.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
        name = base = _name(where)
        n = 1
        while name in self.tensors:
            name, n = f"{base}#{n}", n + 1
        self.tensors[name] = tensor
        self.checksums[name] = _crc(tensor)
        self._by_id[id(obj)] = name
        return name


def _decode(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if not isinstance(node, dict):
        if isinstance(node, list):
            raise ValueError("bare list in structure")
        return node
    if len(node) != 1:
        raise ValueError(f"structure node with {len(node)} keys")
    ((tag, value),) = node.items()
    if tag == "t":
        return tensors[value]
    if tag == "n":
        return tensors[value].cpu().numpy()
    if tag == "d":
        return {k: _decode(v, tensors) for k, v in value}
    if tag == "l":
        return [_decode(v, tensors) for v in value]
    if tag == "u":
        return tuple(_decode(v, tensors) for v in value)
    raise ValueError(f"unknown structure tag {tag!r}")


def _name(where: tuple[Any, ...]) -> str:
    return ".".join(str(k) for k in where) or "<root>"


def _crc(tensor: torch.Tensor) -> int:
    flat = tensor.reshape(-1)
    if flat.numel() == 0:
        return 0
    return zlib.crc32(flat.view(torch.uint8).numpy())


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
