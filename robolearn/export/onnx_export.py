"""ONNX export of an MLPPolicy: raw observation "obs" (B, D) -> normalized action "action" (B, A), normalizer inside."""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from robolearn.export.artifact import CHECK_ATOL, ExportError, one_line, require

if TYPE_CHECKING:
    from robolearn.networks.mlp import MLPPolicy

INPUT_NAME = "obs"
OUTPUT_NAME = "action"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's chatter (torchvision op registration, deprecations) for the duration."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.onnx._internal.exporter._registration")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def export_onnx(policy: MLPPolicy, path: Path, *, check_obs: np.ndarray | None = None) -> Path:
    """Write `policy` (normalizer folded in, dynamic batch) to `path`, run onnx.checker, and compare to torch."""
    torch = require("torch", "export")
    onnx = require("onnx", "export")
    require("onnxscript", "export")
    path = Path(path)
    policy = copy.deepcopy(policy).cpu().eval()  # leave the caller's module where and how it was
    example = torch.zeros(2, policy.obs_dim)
    try:
        with _quiet(), torch.no_grad():
            program = torch.onnx.export(
                policy,
                (example,),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes={"obs": {0: torch.export.Dim("batch")}},
                verbose=False,
            )
            program.save(str(path), external_data=False)
    except Exception as e:
        raise ExportError(f"{path}: torch.onnx.export failed ({one_line(e)})") from None
    model = onnx.load(str(path))
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:
        raise ExportError(f"{path}: onnx.checker rejected the exported graph ({one_line(e)})") from None
    if check_obs is not None:
        got = run_onnx(path, check_obs)
        with torch.no_grad():
            want = policy(torch.from_numpy(np.asarray(check_obs, dtype=np.float32))).numpy()
        err = float(np.abs(got - want).max())
        if not err <= CHECK_ATOL:
            raise ExportError(f"{path}: onnxruntime output differs from torch by {err:.3g} (> {CHECK_ATOL})")
    return path


def run_onnx(path: Path, obs: np.ndarray) -> np.ndarray:
    """Evaluate an exported policy with onnxruntime on CPU (obs (B, D) -> (B, A))."""
    ort = require("onnxruntime", "export")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run([OUTPUT_NAME], {INPUT_NAME: np.asarray(obs, dtype=np.float32)})[0]
