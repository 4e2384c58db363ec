"""Device mapping files (YAML in the top-level `teleop/` folder): which key, axis or button does what.

A mapping is values only. Keyboard keys and gamepad axes drive command axes with a sign; buttons and keys fire
events. Unknown keys in a file are errors, like everywhere in robolearn's configs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from robolearn.teleop.device import AXES, DeviceError, Event, axis_index

TELEOP_DIR = Path(__file__).resolve().parents[2] / "teleop"
"""The station folder of a robolearn checkout: mapping files and the browser page."""


@dataclass
class Mapping:
    """A parsed mapping file."""

    source: str
    axes: dict[str, tuple[int, float]] = field(default_factory=dict)  # input -> (command index, gain)
    events: dict[str, Event] = field(default_factory=dict)  # input -> event
    deadzone: float = 0.0
    scale: float = 1.0  # full-scale raw value (SpaceMouse counts, phone tilt degrees)
    options: dict[str, Any] = field(default_factory=dict)


_KNOWN = {"axes", "events", "deadzone", "scale", "options", "description"}


def mapping_path(name: str) -> Path:
    """`teleop/<name>.yaml` of this checkout, or a path given as is."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml"):
        return p
    return TELEOP_DIR / f"{name}.yaml"


def load_mapping(name_or_path: str | Path) -> Mapping:
    """Parse a mapping file; every problem is one error naming the file and the entry."""
    path = mapping_path(str(name_or_path))
    if not path.is_file():
        raise DeviceError(f"mapping file {path} not found (mappings live in the top-level teleop/ folder)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise DeviceError(f"{path}: not valid YAML: {e}") from None
    return parse_mapping(raw, str(path))


def parse_mapping(raw: dict[str, Any], source: str = "<mapping>") -> Mapping:
    """Build a `Mapping` from a dict (the YAML document)."""
    if not isinstance(raw, dict):
        raise DeviceError(f"{source}: a mapping file holds a dict, got {type(raw).__name__}")
    unknown = set(raw) - _KNOWN
    if unknown:
        raise DeviceError(f"{source}: unknown keys {sorted(unknown)}; known: {sorted(_KNOWN)}")
    m = Mapping(source, deadzone=float(raw.get("deadzone", 0.0)), scale=float(raw.get("scale", 1.0)),
                options=dict(raw.get("options") or {}))
    for inp, spec in (raw.get("axes") or {}).items():
        where = f"{source}: axes.{inp}: "
        if isinstance(spec, str):
            spec = [spec, 1.0]
        if not isinstance(spec, list | tuple) or len(spec) != 2:
            raise DeviceError(f"{where}want [axis, gain] with axis one of {', '.join(AXES)}, got {spec!r}")
        m.axes[str(inp).lower()] = (axis_index(str(spec[0]), where), float(spec[1]))
    for inp, name in (raw.get("events") or {}).items():
        m.events[str(inp).lower()] = Event.parse(name, f"{source}: events.{inp}: ")
    return m


class Mapper:
    """Named raw inputs -> command and events through a `Mapping` (shared by every device).

    `values`: analog inputs by name (axis0, tx, beta, or a held key as 1.0), already divided by `scale` by the
    caller where the mapping has one; `buttons`: digital inputs by name, True while held. Events fire on the press.
    """

    def __init__(self, mapping: Mapping) -> None:
        from robolearn.teleop.device import EventLatch

        self.mapping = mapping
        self.latch = EventLatch()

    def command(self, values: dict[str, float]) -> np.ndarray:
        """(7,) command in [-1, 1]: the sum of gain × value over mapped inputs, deadzone applied, clipped."""
        cmd = np.zeros(len(AXES), np.float32)
        dz = self.mapping.deadzone
        for name, v in values.items():
            hit = self.mapping.axes.get(name.lower())
            if hit is None:
                continue
            v = float(v)
            if abs(v) < dz:
                continue
            # rescale so the command starts at 0 just outside the deadzone and still reaches ±1
            v = np.sign(v) * (abs(v) - dz) / (1.0 - dz) if dz > 0 else v
            cmd[hit[0]] += hit[1] * v
        return np.clip(cmd, -1.0, 1.0)

    def events(self, buttons: dict[str, bool]) -> list[Event]:
        """Events of buttons that went down since the last call."""
        out = []
        for name, down in buttons.items():
            ev = self.mapping.events.get(name.lower())
            if ev is not None and self.latch.press(name.lower(), bool(down)):
                out.append(ev)
        return out
