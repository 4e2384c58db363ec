"""The policy artifact: writer (safetensors + manifest + ONNX + C), and the robot-side runtime.

Names resolve lazily so `import robolearn.export.runtime` works on a robot computer without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from robolearn.export.artifact import SCHEMA_VERSION, ExportError, export_policy, read_manifest, verify_files
    from robolearn.export.c_codegen import generate_c
    from robolearn.export.onnx_export import export_onnx
    from robolearn.export.runtime import ActionQueue, InvalidInputError, PolicyRuntime, StaleInputError

_WHERE = {
    "ActionQueue": "runtime",
    "SCHEMA_VERSION": "artifact",
    "ExportError": "artifact",
    "export_policy": "artifact",
    "read_manifest": "artifact",
    "verify_files": "artifact",
    "generate_c": "c_codegen",
    "export_onnx": "onnx_export",
    "InvalidInputError": "runtime",
    "PolicyRuntime": "runtime",
    "StaleInputError": "runtime",
}

__all__ = [
    "ActionQueue",
    "SCHEMA_VERSION",
    "ExportError",
    "InvalidInputError",
    "PolicyRuntime",
    "StaleInputError",
    "export_onnx",
    "export_policy",
    "generate_c",
    "read_manifest",
    "verify_files",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'robolearn.export' has no attribute '{name}'")
    return getattr(importlib.import_module(f"robolearn.export.{_WHERE[name]}"), name)
