"""The policy artifact: directory layout, manifest schema and checks, and the writer `export_policy`.

Layout of an artifact directory (what crosses from training to robots; nothing in it is pickled):

    manifest.json          observation/action terms, normalization, network, file hashes, source run
    weights.safetensors    the policy's state_dict as float32
    policy.onnx            MLP: raw observation (B, D) "obs" -> normalized action (B, A) "action" in [-1, 1]
    c/                     optional plain-C99 sources of an MLP (targets=("onnx", "c"))

Schema 2 adds chunking imitation policies under the same manifest (`network.kind` "act" or "diffusion", written by
`robolearn.export.chunked`): the same task/robot/observation/action keys, so the runtime, `robolearn eval` and the
ROS 2 policy node take any artifact; the chunk keys (chunk size, execution horizon, ONNX inputs, the DDIM sampler)
live under `network` and `observation.inputs`. Schema-1 artifacts (MLP only) still load.

This module imports only numpy (and safetensors/onnx when a function needs them): the robot-side
runtime uses the checks here, so torch is imported lazily, inside `export_policy` only.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import hashlib
import json
import math
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import robolearn
from robolearn.core.errors import CheckpointError, RobolearnError, require

if TYPE_CHECKING:
    from robolearn.core.types import TaskSpec
    from robolearn.networks.mlp import MLPPolicy


SCHEMA_VERSION = 2
READS = (1, 2)  # schema 1 = an MLP artifact of robolearn 0.1; its keys are those of a schema-2 MLP artifact
FORMAT = "robolearn.policy"
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
ONNX = "policy.onnx"
C_DIR = "c"
TARGETS = ("onnx", "c")
ACTIVATIONS = ("relu", "elu", "tanh", "gelu", "silu")
OUTPUTS = ("tanh", "clamp")
CHUNK_GRAPHS = {"act": ("onnx",), "diffusion": ("encoder", "denoiser")}  # files.<key> each chunk kind needs
KINDS = ("mlp", *CHUNK_GRAPHS)
INPUT_DTYPES = ("float32", "uint8")
CHECK_ATOL = 1e-4  # self-check tolerance between backends (torch at export vs onnxruntime/torch at load)
_RESERVED = ("schema_version", "format", "task", "robot", "control_rate_hz", "observation", "action", "network",
             "files", "check", "source")


class ExportError(RobolearnError):
    """The policy cannot be exported as asked: spec/policy mismatch, existing artifact, unserializable metadata."""


# ---------------------------------------------------------------------------------------------------------------
# shared helpers


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def expected_weight_shapes(network: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """State-dict keys and shapes of the MLPPolicy that `network` (its `describe()`) describes."""
    d, a, hidden = network["obs_dim"], network["action_dim"], list(network["hidden"])
    shapes: dict[str, tuple[int, ...]] = {"normalizer.mean": (d,), "normalizer.var": (d,), "normalizer.count": ()}
    dims = [d, *hidden, a]
    for i, (n_in, n_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        shapes[f"mlp.{2 * i}.weight"] = (n_out, n_in)  # Linear at every even index; activations in between
        shapes[f"mlp.{2 * i}.bias"] = (n_out,)
    return shapes


def term_offsets(dims: Iterable[int]) -> list[int]:
    """Start index of each term in the flat vector."""
    out, o = [], 0
    for dim in dims:
        out.append(o)
        o += dim
    return out


def one_line(e: BaseException) -> str:
    """An exception as `Type: message` on one line (third-party parsers write multi-line messages)."""
    msg = " ".join(str(e).split())
    return f"{type(e).__name__}: {msg[:300]}" if msg else type(e).__name__


# ---------------------------------------------------------------------------------------------------------------
# manifest checks (torch-free; the runtime calls these)


class _Manifest:
    """Typed look-ups into a manifest dict that fail with one line naming the file and key."""

    def __init__(self, m: Any, where: str) -> None:
        self.m, self.where = m, where

    def fail(self, msg: str) -> CheckpointError:
        """The error to raise."""
        return CheckpointError(f"{self.where}: {msg}")

    def get(self, key: str, kind: type | tuple[type, ...], *, optional: bool = False, root: Any = None) -> Any:
        """Value at dotted `key` (relative to `root`, default the manifest) checked against `kind`."""
        node = self.m if root is None else root
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                if optional:
                    return None
                raise self.fail(f"missing key '{key}'")
            node = node[part]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds:
            kinds = (*kinds, int)
        if isinstance(node, bool) and bool not in kinds or not isinstance(node, kinds):
            raise self.fail(f"key '{key}' is {type(node).__name__}, expected {'/'.join(k.__name__ for k in kinds)}")
        if isinstance(node, float) and not math.isfinite(node):
            raise self.fail(f"key '{key}' is not finite")
        return node

    def numbers(self, key: str, length: int, root: Any = None, values: Any = None) -> np.ndarray:
        """A list of `length` finite numbers (at `key`, or `values` reported as `key`)."""
        if values is None:
            values = self.get(key, list, root=root)
        elif not isinstance(values, list):
            raise self.fail(f"key '{key}' is {type(values).__name__}, expected list")
        if len(values) != length:
            raise self.fail(f"key '{key}' has {len(values)} values, expected {length}")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            raise self.fail(f"key '{key}' holds a non-number")
        arr = np.asarray(values, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise self.fail(f"key '{key}' holds a non-finite value")
        return arr

    def terms(self, key: str, total_key: str, fields: dict[str, type]) -> list[dict[str, Any]]:
        """A list of term dicts with unique names whose dims sum to the value at `total_key`."""
        terms = self.get(key, list)
        if not terms:
            raise self.fail(f"key '{key}' is empty")
        names: set[str] = set()
        for i, t in enumerate(terms):
            if not isinstance(t, dict):
                raise self.fail(f"key '{key}[{i}]' is not an object")
            name = self.get("name", str, root=t) if "name" in t else None
            if name is None:
                raise self.fail(f"key '{key}[{i}]' has no 'name'")
            for f, kind in fields.items():
                if f not in t:
                    raise self.fail(f"term '{name}' in '{key}' has no '{f}'")
                self.get(f, kind, root=t)
            if t["dim"] <= 0:
                raise self.fail(f"term '{name}' in '{key}' has dim {t['dim']}")
            if name in names:
                raise self.fail(f"term name '{name}' appears twice in '{key}'")
            names.add(name)
        total = self.get(total_key, int)
        if sum(t["dim"] for t in terms) != total:
            raise self.fail(f"'{total_key}' is {total} but the dims of '{key}' sum to {sum(t['dim'] for t in terms)}")
        return terms


def validate_manifest(m: Any, where: str = MANIFEST) -> dict[str, Any]:
    """Check a parsed manifest's schema version, keys, types and dimensions; return it or raise CheckpointError."""
    v = _Manifest(m, where)
    if not isinstance(m, dict):
        raise v.fail("is not a JSON object")
    version = v.get("schema_version", int)
    if version > SCHEMA_VERSION:
        raise v.fail(f"schema_version {version} was written by a newer robolearn; this one reads {SCHEMA_VERSION}")
    if version not in READS:
        raise v.fail(f"schema_version {version} is not supported (reads {', '.join(map(str, READS))})")
    if v.get("format", str) != FORMAT:
        raise v.fail(f"key 'format' is '{m['format']}', expected '{FORMAT}'")
    kind = v.get("network.kind", str)
    if kind not in (KINDS if version >= 2 else ("mlp",)):
        raise v.fail(f"key 'network.kind' is '{kind}'; schema {version} knows "
                     f"{', '.join(KINDS if version >= 2 else ('mlp',))}")
    v.get("task", str)
    v.get("robot", str)
    if v.get("control_rate_hz", float) <= 0:
        raise v.fail("key 'control_rate_hz' must be > 0")
    v.get("source", dict)

    # observation
    d = v.get("observation.dim", int)
    obs_terms = v.terms("observation.terms", "observation.dim", {"dim": int, "offset": int, "unit": str})
    for t, o in zip(obs_terms, term_offsets(t["dim"] for t in obs_terms), strict=True):
        if t["offset"] != o:
            raise v.fail(f"observation term '{t['name']}' has offset {t['offset']}, expected {o}")
    if kind == "mlp":
        v.numbers("observation.normalization.mean", d)
        if (v.numbers("observation.normalization.std", d) < 0).any():
            raise v.fail("key 'observation.normalization.std' holds a negative value")
        if v.get("observation.normalization.eps", float) < 0:
            raise v.fail("key 'observation.normalization.eps' must be >= 0")
        if v.get("observation.normalization.clip", float) <= 0:
            raise v.fail("key 'observation.normalization.clip' must be > 0")
        if v.get("observation.normalization.folded_into_onnx", bool) is not True:
            raise v.fail("key 'observation.normalization.folded_into_onnx' must be true (the ONNX takes raw obs)")
    else:
        _validate_inputs(v, d)

    # action
    a = v.get("action.dim", int)
    act_terms = v.terms("action.terms", "action.dim", {"dim": int, "unit": str, "scale": list, "offset": list})
    for t in act_terms:
        v.numbers("scale", t["dim"], root=t)
        v.numbers("offset", t["dim"], root=t)
    low, high = v.get("action.low", float), v.get("action.high", float)
    if not -1.0 <= low < high <= 1.0:
        raise v.fail(f"keys 'action.low'/'action.high' are {low}/{high}; need -1 <= low < high <= 1")
    v.get("action.rate_hz", float)

    # network
    if kind != "mlp":
        _validate_chunk_network(v, kind, a)
        return m
    if v.get("network.obs_dim", int) != d:
        raise v.fail(f"key 'network.obs_dim' is {m['network']['obs_dim']} but 'observation.dim' is {d}")
    if v.get("network.action_dim", int) != a:
        raise v.fail(f"key 'network.action_dim' is {m['network']['action_dim']} but 'action.dim' is {a}")
    hidden = v.get("network.hidden", list)
    if not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden):
        raise v.fail("key 'network.hidden' must be a list of positive ints")
    if v.get("network.activation", str) not in ACTIVATIONS:
        raise v.fail(f"key 'network.activation' is '{m['network']['activation']}'; known: {', '.join(ACTIVATIONS)}")
    if v.get("network.output", str) not in OUTPUTS:
        raise v.fail(f"key 'network.output' is '{m['network']['output']}'; known: {', '.join(OUTPUTS)}")

    # files
    _validate_files(v, required=("weights",), optional=("onnx",))
    if v.get("files.c", dict, optional=True) is not None:
        _check_rel_path(v, "files.c.path", v.get("files.c.path", str))
        for name, digest in v.get("files.c.files", dict).items():
            _check_rel_path(v, f"files.c.files.{name}", name)
            if not isinstance(digest, str):
                raise v.fail(f"key 'files.c.files.{name}' must be a sha256 string")

    # self-check vectors (optional)
    if v.get("check", dict, optional=True) is not None:
        rows = v.get("check.obs", list)
        if len(v.get("check.action", list)) != len(rows):
            raise v.fail("keys 'check.obs' and 'check.action' have different lengths")
        for i in range(len(rows)):
            v.numbers(f"check.obs[{i}]", d, values=rows[i])
            v.numbers(f"check.action[{i}]", a, values=m["check"]["action"][i])
        v.get("check.atol", float)
    return m


def _validate_files(v: _Manifest, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
    """`files.<key>` entries: a plain file name and its sha256."""
    for key in (*required, *optional):
        if key in required or v.get(f"files.{key}", dict, optional=True) is not None:
            _check_rel_path(v, f"files.{key}.path", v.get(f"files.{key}.path", str))
            v.get(f"files.{key}.sha256", str)


def _validate_inputs(v: _Manifest, d: int) -> None:
    """Chunk policies: `observation.inputs` maps the ONNX inputs to dataset keys; float inputs tile the vector."""
    inputs = v.get("observation.inputs", list)
    if not inputs:
        raise v.fail("key 'observation.inputs' is empty")
    o = 0
    for i, spec in enumerate(inputs):
        if not isinstance(spec, dict):
            raise v.fail(f"key 'observation.inputs[{i}]' is not an object")
        for f in ("name", "key", "dtype", "shape"):
            if f not in spec:
                raise v.fail(f"missing key 'observation.inputs[{i}].{f}'")
            v.get(f, list if f == "shape" else str, root=spec)
        shape = spec["shape"]
        if not shape or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape):
            raise v.fail(f"key 'observation.inputs[{i}].shape' must be a list of positive ints")
        if spec["dtype"] not in INPUT_DTYPES:
            raise v.fail(f"key 'observation.inputs[{i}].dtype' is '{spec['dtype']}'; known: {', '.join(INPUT_DTYPES)}")
        if spec["dtype"] == "float32":  # a slice of the flat observation vector
            if len(shape) != 1 or spec.get("offset") != o:
                raise v.fail(f"float input '{spec['key']}' needs a 1-D shape and 'offset' {o} (its start in the "
                             "observation vector)")
            o += shape[0]
    if o != d:
        raise v.fail(f"the float inputs of 'observation.inputs' cover {o} values but 'observation.dim' is {d}")


def _validate_chunk_network(v: _Manifest, kind: str, a: int) -> None:
    """`network` of an ACT / Diffusion Policy artifact: chunking, execution horizon, sampler, graph files."""
    h = v.get("network.chunk_size", int)
    if h <= 0:
        raise v.fail("key 'network.chunk_size' must be > 0")
    if not 1 <= v.get("network.n_action_steps", int) <= h:
        raise v.fail(f"key 'network.n_action_steps' must be in 1..{h} (network.chunk_size)")
    if v.get("network.n_obs_steps", int) < 1:
        raise v.fail("key 'network.n_obs_steps' must be >= 1")
    coef = v.get("network.temporal_ensemble_coef", (float, type(None)))
    if coef is not None and coef < 0:
        raise v.fail("key 'network.temporal_ensemble_coef' must be >= 0 or null")
    if v.get("network.action_dim", int) != a:
        raise v.fail(f"key 'network.action_dim' is {v.m['network']['action_dim']} but 'action.dim' is {a}")
    v.get("network.description", dict)
    if kind == "diffusion":
        k = v.get("network.sampler.num_train_timesteps", int)
        if v.get("network.sampler.kind", str) != "ddim":
            raise v.fail("key 'network.sampler.kind' must be 'ddim'")
        if v.get("network.sampler.prediction_type", str) != "epsilon":
            raise v.fail("key 'network.sampler.prediction_type' must be 'epsilon' (the runtime's DDIM predicts noise)")
        steps = v.get("network.sampler.timesteps", list)
        if not steps or not all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < k for t in steps):
            raise v.fail(f"key 'network.sampler.timesteps' must be a non-empty list of ints in 0..{k - 1}")
        if ((ac := v.numbers("network.sampler.alphas_cumprod", k)) <= 0).any() or (ac > 1).any():
            raise v.fail("key 'network.sampler.alphas_cumprod' must lie in (0, 1]")
        v.get("network.sampler.final_alpha_cumprod", float)
        v.get("network.sampler.clip_sample", bool)
        v.numbers("network.action_normalization.shift", a)
        v.numbers("network.action_normalization.scale", a)
    _validate_files(v, required=("weights", *CHUNK_GRAPHS[kind]))
    if v.get("check", dict, optional=True) is not None:
        v.get("check.seed", int)
        rows = v.get("check.chunk", list)
        for i, row in enumerate(rows):
            v.numbers(f"check.chunk[{i}]", a, values=row)
        v.get("check.atol", float)


def _check_rel_path(v: _Manifest, key: str, p: str) -> None:
    """File names in a manifest stay inside the artifact directory."""
    if not p or p.startswith((".", "/", "\\")) or "/" in p or "\\" in p:
        raise v.fail(f"key '{key}' must be a plain file name inside the artifact, got '{p}'")


def read_manifest(artifact: Path) -> dict[str, Any]:
    """Parse and validate `artifact/manifest.json` (no file hashes; see `verify_files`)."""
    artifact = Path(artifact)
    path = artifact / MANIFEST
    if not artifact.is_dir():
        raise CheckpointError(f"{artifact}: not a policy artifact directory")
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (not a policy artifact?)")
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({one_line(e)})") from None
    return validate_manifest(m, str(path))


def verify_files(artifact: Path, m: dict[str, Any], *, hashes: bool = True) -> dict[str, np.ndarray]:
    """Check the files a validated manifest lists (presence, sha256, weight shapes); return the weights as numpy."""
    artifact = Path(artifact)
    v = _Manifest(m, str(artifact / MANIFEST))
    files = m["files"]
    listed: list[tuple[Path, str, str]] = []
    for key in ("weights", "onnx", "encoder", "denoiser"):
        if key in files:
            listed.append((artifact / files[key]["path"], files[key]["sha256"], f"files.{key}.sha256"))
    if "c" in files:
        for name, digest in files["c"]["files"].items():
            listed.append((artifact / files["c"]["path"] / name, digest, f"files.c.files.{name}"))
    for path, digest, key in listed:
        if not path.is_file():
            raise CheckpointError(f"{path}: missing (listed in manifest key '{key.rsplit('.', 1)[0]}')")
        if hashes and sha256_file(path) != digest:
            raise CheckpointError(f"{path}: sha256 does not match manifest key '{key}' (file changed or truncated)")

    wpath = artifact / files["weights"]["path"]
    st = require("safetensors.numpy", "export")
    try:
        weights = st.load_file(str(wpath))
    except Exception as e:  # safetensors raises its own SafetensorError for every malformed file
        raise CheckpointError(f"{wpath}: not a readable safetensors file ({one_line(e)})") from None
    if m["network"]["kind"] != "mlp":  # chunk policies: the ONNX graphs run; the weights are for torch users
        bad = [k for k, w in weights.items() if w.dtype.kind == "f" and not np.isfinite(w).all()]
        if bad:
            raise CheckpointError(f"{wpath}: tensors {bad[:4]} hold NaN/inf")
        return weights
    expected = expected_weight_shapes(m["network"])
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if missing or extra:
        raise CheckpointError(f"{wpath}: tensors do not match manifest key 'network' (missing {missing}, "
                              f"unexpected {extra})")
    for k, shape in expected.items():
        if tuple(weights[k].shape) != shape:
            raise CheckpointError(f"{wpath}: tensor '{k}' has shape {tuple(weights[k].shape)}, manifest key 'network' "
                                  f"expects {shape}")
        if weights[k].dtype.kind != "f":
            raise CheckpointError(f"{wpath}: tensor '{k}' has dtype {weights[k].dtype}, expected float")
        if not np.isfinite(weights[k]).all():
            raise CheckpointError(f"{wpath}: tensor '{k}' holds NaN/inf")
    norm = m["observation"]["normalization"]
    if not np.allclose(weights["normalizer.mean"], norm["mean"], rtol=1e-6, atol=1e-7):
        raise v.fail(f"key 'observation.normalization.mean' differs from '{WEIGHTS}' normalizer.mean")
    if not np.allclose(np.sqrt(weights["normalizer.var"]), norm["std"], rtol=1e-5, atol=1e-7):
        raise v.fail(f"key 'observation.normalization.std' differs from sqrt('{WEIGHTS}' normalizer.var)")
    return weights


# ---------------------------------------------------------------------------------------------------------------
# writer


def export_policy(
    policy: MLPPolicy,
    spec: TaskSpec,
    out_dir: Path,
    *,
    source: dict[str, Any],
    targets: tuple[str, ...] = ("onnx",),
    extra_manifest: dict[str, Any] | None = None,
    obs_group: str = "policy",
    overwrite: bool = False,
    c_prefix: str = "rl_policy",
) -> Path:
    """Write the policy artifact directory atomically (built next to `out_dir`, then renamed); return its path."""
    out_dir = Path(out_dir)
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise ExportError(f"unknown export target(s) {unknown}; choose from {list(TARGETS)}")
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir}: exists and is not a directory")
    if _non_empty(out_dir) and not overwrite:
        raise ExportError(f"{out_dir}: already holds files; refusing to overwrite a saved artifact (overwrite=True)")
    if obs_group not in spec.obs_terms:
        raise ExportError(f"task '{spec.name}' has no observation group '{obs_group}' (has {list(spec.obs_terms)})")
    obs_terms = spec.obs_terms[obs_group]
    obs_dim = sum(t.dim for t in obs_terms)
    if obs_dim != policy.obs_dim:
        raise ExportError(f"policy takes {policy.obs_dim} observations but task '{spec.name}' group '{obs_group}' "
                          f"has {obs_dim}")
    if spec.action.dim != policy.action_dim:
        raise ExportError(f"policy outputs {policy.action_dim} actions but task '{spec.name}' has {spec.action.dim}")
    extra = dict(extra_manifest or {})
    clash = sorted(set(extra) & set(_RESERVED))
    if clash:
        raise ExportError(f"extra_manifest keys {clash} would replace the manifest's own keys")

    torch = require("torch", "export")
    safetensors_torch = require("safetensors.torch", "export")
    from robolearn.export.onnx_export import export_onnx

    policy = copy.deepcopy(policy).cpu().eval()  # never touch the caller's module (device, train flag)
    state = {k: t.detach().to(torch.float32).contiguous() for k, t in policy.state_dict().items()}
    network = policy.describe()
    expected = expected_weight_shapes(network)
    got = {k: tuple(t.shape) for k, t in state.items()}
    if got != expected:
        raise ExportError(f"MLPPolicy state_dict layout {got} differs from expected_weight_shapes {expected}; "
                          "update robolearn/export/artifact.py together with the network")
    bad = [k for k, t in state.items() if not bool(torch.isfinite(t).all())]
    if bad:
        raise ExportError(f"policy tensors {bad} hold NaN/inf; refusing to export")

    norm = policy.normalizer
    check_obs = _check_obs(state["normalizer.mean"].numpy(), np.sqrt(state["normalizer.var"].numpy()))
    with torch.no_grad():
        check_act = policy(torch.from_numpy(check_obs)).numpy()
    offsets = term_offsets(t.dim for t in obs_terms)
    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "format": FORMAT,
        "task": spec.name,
        "robot": spec.robot,
        "control_rate_hz": float(spec.action.rate_hz),
        "observation": {
            "group": obs_group,
            "dim": obs_dim,
            "terms": [{**t.to_dict(), "offset": o} for t, o in zip(obs_terms, offsets, strict=True)],
            "normalization": {
                "mean": state["normalizer.mean"].tolist(),
                "std": np.sqrt(state["normalizer.var"].numpy()).astype(np.float32).tolist(),
                "eps": float(norm.eps),
                "clip": float(norm.clip),
                "count": float(norm.count),
                "folded_into_onnx": True,
            },
        },
        "action": spec.action.to_dict(),
        "network": network,
        "files": {},
        "check": {"obs": check_obs.tolist(), "action": check_act.tolist(), "atol": CHECK_ATOL},
        "source": _jsonable({**_provenance(), **source}, "source"),
        **_jsonable(extra, "extra_manifest"),
    }

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        safetensors_torch.save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt", "robolearn": FORMAT})
        manifest["files"]["weights"] = {"path": WEIGHTS, "sha256": sha256_file(tmp / WEIGHTS)}
        if "onnx" in targets:
            export_onnx(policy, tmp / ONNX, check_obs=check_obs)
            manifest["files"]["onnx"] = {"path": ONNX, "sha256": sha256_file(tmp / ONNX)}
        if "c" in targets:
            from robolearn.export.c_codegen import generate_c

            paths = generate_c(policy, tmp / C_DIR, c_prefix, obs_terms=obs_terms, action=spec.action)
            manifest["files"]["c"] = {"path": C_DIR, "prefix": c_prefix,
                                      "files": {p.name: sha256_file(p) for p in paths}}
        finish_artifact(tmp, out_dir, manifest, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def finish_artifact(tmp: Path, out_dir: Path, manifest: dict[str, Any], *, overwrite: bool) -> None:
    """Validate and write the manifest into the finished `tmp` directory, flush every file, move it to `out_dir`."""
    text = json.dumps(manifest, indent=2, allow_nan=False) + "\n"
    validate_manifest(json.loads(text), "manifest being written")  # the writer obeys its own reader
    _write_text(tmp / MANIFEST, text)
    # safetensors writes 0600; give every file the mode open() gave the manifest (0666 & ~umask)
    mode = (tmp / MANIFEST).stat().st_mode & 0o777
    for p in tmp.rglob("*"):
        if p.is_file():
            os.chmod(p, mode)
            _fsync(p)
    _commit(tmp, out_dir, overwrite=overwrite)


def _non_empty(d: Path) -> bool:
    """Whether `d` is a directory with anything in it."""
    return d.is_dir() and any(d.iterdir())


def _check_obs(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Self-check observations (3, D): the mean, a typical sample, and one far outside the normalizer clip."""
    rng = np.random.default_rng(0)
    scale = np.maximum(std, 1e-3)
    rows = [mean, mean + scale * rng.standard_normal(mean.shape), mean + 1e3 * scale * np.sign(rng.standard_normal(
        mean.shape))]
    return np.stack(rows).astype(np.float32)


def _provenance() -> dict[str, Any]:
    """Version, git commit and time of this export (caller's `source` keys take precedence)."""
    info: dict[str, Any] = {
        "robolearn_version": robolearn.__version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    repo = Path(robolearn.__file__).resolve().parent.parent
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if head.returncode == 0:
            info["git_commit"] = head.stdout.strip()
            dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5)
            info["git_dirty"] = bool(dirty.stdout.strip()) if dirty.returncode == 0 else None
    return info


def _jsonable(obj: Any, key: str) -> Any:
    """`obj` as plain JSON values (dataclasses, paths, tuples, numpy scalars converted); fail naming the key."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    if isinstance(obj, dict):
        out = {}
        for k, val in obj.items():
            if not isinstance(k, str):
                raise ExportError(f"{key}: key {k!r} is not a string; manifests are JSON")
            out[k] = _jsonable(val, f"{key}.{k}")
        return out
    if isinstance(obj, list | tuple):
        return [_jsonable(x, f"{key}[{i}]") for i, x in enumerate(obj)]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ExportError(f"{key}: {obj} is not representable in JSON")
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    raise ExportError(f"{key}: value of type {type(obj).__name__} is not JSON-serializable")


def _write_text(path: Path, text: str) -> None:
    """Write a text file."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _fsync(path: Path) -> None:
    """Flush a file (or directory entry) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _commit(tmp: Path, out_dir: Path, *, overwrite: bool) -> None:
    """Move the finished `tmp` directory to `out_dir`; an existing artifact is replaced only with `overwrite`."""
    if _non_empty(out_dir):
        if not overwrite:  # appeared while we were writing
            raise ExportError(f"{out_dir}: already holds files; refusing to overwrite a saved artifact "
                              "(overwrite=True)")
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
        os.rename(out_dir, old)
        try:
            os.rename(tmp, out_dir)
        except BaseException:
            os.rename(old, out_dir)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        if out_dir.is_dir():
            out_dir.rmdir()
        os.rename(tmp, out_dir)
    with contextlib.suppress(OSError):
        _fsync(out_dir.parent)
