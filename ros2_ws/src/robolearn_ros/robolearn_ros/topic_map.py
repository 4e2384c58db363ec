"""The YAML topic map: which adapter, which topic and message type per input/output slot, adapter options.

    adapter: crazyflie
    inputs:
      state: {topic: /cf1/odom, type: nav_msgs/msg/Odometry}
    outputs:
      motors: {topic: /cf1/cmd_motors, type: sensor_msgs/msg/JointState}
    options:
      goal: [0.0, 0.0, 1.0]

Unknown keys, slots, adapters or message types are errors naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from robolearn_ros.adapters import ADAPTERS, Adapter
from robolearn_ros.messages import ConfigError, message_class


@dataclass
class Topic:
    """One slot's topic and message class."""

    slot: str
    topic: str
    type_name: str
    cls: type


@dataclass
class TopicMap:
    """A parsed, checked topic map."""

    adapter: type[Adapter]
    inputs: dict[str, Topic]
    outputs: dict[str, Topic]
    options: dict[str, Any]


def _topics(raw: Any, where: str, slots: dict[str, Any]) -> dict[str, Topic]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a mapping of slot -> {{topic, type}}")
    out: dict[str, Topic] = {}
    for slot, entry in raw.items():
        if slot not in slots:
            raise ConfigError(f"{where}.{slot}: unknown slot; this adapter has {sorted(slots)}")
        if not isinstance(entry, dict) or set(entry) != {"topic", "type"}:
            raise ConfigError(f"{where}.{slot}: must have exactly the keys 'topic' and 'type'")
        topic, tname = entry["topic"], entry["type"]
        if not isinstance(topic, str) or not topic or " " in topic:
            raise ConfigError(f"{where}.{slot}.topic: {topic!r} is not a topic name")
        cls = message_class(str(tname), f"{where}.{slot}.type")
        if tname not in slots[slot].types:
            raise ConfigError(f"{where}.{slot}.type: '{tname}' is not accepted for slot '{slot}' (takes "
                              f"{list(slots[slot].types)})")
        out[slot] = Topic(slot, topic, tname, cls)
    for slot, s in slots.items():
        if s.required and slot not in out:
            raise ConfigError(f"{where}: missing required slot '{slot}' ({s.doc})")
    return out


def load_topic_map(path: str | Path) -> TopicMap:
    """Read and check a topic map file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: topic map not found")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({' '.join(str(e).split())[:200]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: must be a mapping")
    unknown = sorted(set(raw) - {"adapter", "inputs", "outputs", "options"})
    if unknown:
        raise ConfigError(f"{p}: unknown key(s) {unknown}; known: adapter, inputs, outputs, options")
    kind = raw.get("adapter")
    if kind not in ADAPTERS:
        raise ConfigError(f"{p}: key 'adapter' is {kind!r}; choose from {sorted(ADAPTERS)}")
    cls = ADAPTERS[kind]
    options = raw.get("options") or {}
    if not isinstance(options, dict):
        raise ConfigError(f"{p}: key 'options' must be a mapping")
    return TopicMap(cls, _topics(raw.get("inputs"), f"{p}: inputs", cls.INPUTS),
                    _topics(raw.get("outputs"), f"{p}: outputs", cls.OUTPUTS), options)
