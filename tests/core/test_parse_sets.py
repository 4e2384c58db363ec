"""`parse_sets`: the one FIELD=VALUE parser behind every `--set` (collect, imitation env_set, eval)."""

import pytest

from robolearn.core.config import parse_sets
from robolearn.core.errors import ConfigError
from robolearn.envs import registry


def test_values_are_typed_yaml_and_dotted_keys_update_one_entry():
    base = registry.cfg_class("quadruped-walk")()
    cfg = parse_sets(base, ["episode_length_s=2", "terrain=rough", "randomize.payload=[3, 3]",
                            "disturbance_limit=[1, 2, 3, 4, 5, 6]", "pushes=true"])
    assert cfg.episode_length_s == 2.0 and isinstance(cfg.episode_length_s, float)
    assert cfg.terrain == "rough" and cfg.pushes is True
    assert cfg.randomize["payload"] == (3.0, 3.0)
    assert cfg.randomize["friction"] == base.randomize["friction"]  # other keys kept
    assert cfg.disturbance_limit == (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
    assert base.episode_length_s == 20.0 and base.randomize["payload"] == (-1.0, 2.0)  # base untouched
    assert parse_sets(base, []) is base


@pytest.mark.parametrize(("item", "match"), [
    ("episode_lenght_s=2", r"^--set: unknown key 'episode_lenght_s' \(did you mean 'episode_length_s'\?\)$"),
    ("episode_length_s", r"^--set: expected FIELD=VALUE, got 'episode_length_s'$"),
    ("kp=fast", r"^--set: key 'kp': expected float, got str 'fast'$"),
    ("kp.x=1", r"^--set: key 'kp.x': 'kp' is not a dict or nested config field$"),
])
def test_bad_items_are_one_line_errors_naming_the_key(item, match):
    with pytest.raises(ConfigError, match=match):
        parse_sets(registry.cfg_class("quadruped-walk")(), [item])
