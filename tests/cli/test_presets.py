"""Every YAML preset in configs/ loads strictly into its typed config (no unknown keys, right types)."""

from pathlib import Path

import pytest

from robolearn.envs import registry
from robolearn.learners.runner import load_run_cfg_file

PRESETS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", PRESETS, ids=[p.name for p in PRESETS])
def test_preset_loads_and_builds_its_task(path):
    cfg = load_run_cfg_file(path)
    assert cfg.task in registry.TASKS
    env_cls = registry.env_class(cfg.task)
    spec = env_cls.make_spec(cfg.env) if hasattr(env_cls, "make_spec") else None
    assert spec is None or spec.action.dim > 0


def test_there_are_presets():
    assert len(PRESETS) >= 3
