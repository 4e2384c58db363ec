from __future__ import annotations

import enum
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from robolearn.core.config import from_dict, load_config, load_yaml, merge, parse_overrides, save_yaml, to_dict
from robolearn.core.errors import ConfigError


class Backend(enum.Enum):
    TORCH = "torch"
    MUJOCO = "mujoco"


@dataclass(kw_only=True)
class EnvCfg:
    """Environment."""

    num_envs: int = 16
    """Parallel environments."""
    dt: float = 0.01
    reward_scales: dict[str, float] = field(default_factory=lambda: {"position": -1.0, "action_rate": -0.05})
    obs_noise: tuple[float, ...] = (0.01, 0.02)
    goal: tuple[float, float, float] = (0.0, 0.0, 1.0)
    backend: Backend = Backend.TORCH

    @property
    def step_hz(self) -> float:
        return 1.0 / self.dt


@dataclass(kw_only=True)
class AlgoCfg:
    """Learner."""

    lr: float = 3e-4
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    activation: Literal["elu", "relu", "tanh"] = "elu"
    clip: float | None = None
    normalize: bool = True


@dataclass(kw_only=True)
class RunCfg:
    """A run."""

    task: str
    seed: int = 0
    env: EnvCfg = field(default_factory=EnvCfg)
    algo: AlgoCfg = field(default_factory=AlgoCfg)
    notes: dict[str, str] = field(default_factory=dict)
    init_from: Path | None = None


@dataclass(kw_only=True)
class Checked:
    n: int = 1

    def __post_init__(self) -> None:
        if self.n <= 0:
            raise ValueError(f"n must be positive, got {self.n}")


def write(tmp_path: Path, text: str, name: str = "x.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------------- load_yaml


def test_load_yaml_malformed_names_file_and_line(tmp_path):
    path = write(tmp_path, "task: hover\nenv:\n  num_envs: [1, 2\n  dt: 0.1\n")
    with pytest.raises(ConfigError) as e:
        load_yaml(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: line ")
    assert "\n" not in msg


def test_load_yaml_bad_indent_line_number(tmp_path):
    path = write(tmp_path, "a: 1\nb: 2\n  c: 3\n")
    with pytest.raises(ConfigError, match=r"x\.yaml: line 3: mapping values are not allowed"):
        load_yaml(path)


def test_load_yaml_top_level_not_mapping(tmp_path):
    path = write(tmp_path, "- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"x\.yaml: top level must be a mapping.*got list"):
        load_yaml(path)


def test_load_yaml_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: file not found"):
        load_yaml(tmp_path / "nope.yaml")


def test_load_yaml_empty_file_is_empty_mapping(tmp_path):
    assert load_yaml(write(tmp_path, "# only a comment\n")) == {}


def test_load_yaml_duplicate_key(tmp_path):
    path = write(tmp_path, "seed: 1\nenv:\n  dt: 0.1\n  dt: 0.2\n")
    with pytest.raises(ConfigError, match=r"x\.yaml: line 4: duplicate key 'dt'"):
        load_yaml(path)


def test_load_yaml_uses_yaml12_scalars(tmp_path):
    data = load_yaml(write(tmp_path, "lr: 3e-4\nmode: on\nflag: true\nn: 012\nt: 1:30\nbig: 1_000\nneg: -.5\n"))
    assert data == {"lr": 3e-4, "mode": "on", "flag": True, "n": 12, "t": "1:30", "big": 1000, "neg": -0.5}


# ---------------------------------------------------------------------------------------------------- from_dict


def test_from_dict_nested_and_defaults():
    cfg = from_dict(RunCfg, {"task": "hover", "env": {"num_envs": 64}, "algo": {"hidden": [32], "clip": 0.2}})
    assert cfg.env.num_envs == 64 and cfg.env.dt == 0.01
    assert cfg.algo.hidden == [32] and cfg.algo.clip == 0.2 and cfg.algo.lr == 3e-4
    assert cfg.env.step_hz == pytest.approx(100.0)


def test_unknown_key_suggests_close_match():
    with pytest.raises(ConfigError) as e:
        from_dict(RunCfg, {"task": "hover", "env": {"num_env": 3}}, source="configs/x.yaml")
    assert str(e.value) == "configs/x.yaml: unknown key 'env.num_env' (did you mean 'num_envs'?)"


def test_unknown_key_without_suggestion():
    with pytest.raises(ConfigError, match=r"^<dict>: unknown key 'zzzz'$"):
        from_dict(RunCfg, {"task": "hover", "zzzz": 1})


def test_wrong_type_message():
    with pytest.raises(ConfigError) as e:
        from_dict(RunCfg, {"task": "t", "algo": {"lr": "abc"}}, source="configs/x.yaml")
    assert str(e.value) == "configs/x.yaml: key 'algo.lr': expected float, got str 'abc'"


@pytest.mark.parametrize(
    ("data", "key", "expected"),
    [
        ({"seed": True}, "seed", "expected int, got bool True"),
        ({"seed": 1.5}, "seed", "expected int, got float 1.5"),
        ({"seed": "1"}, "seed", "expected int, got str '1'"),
        ({"algo": {"normalize": 1}}, "algo.normalize", "expected bool (true/false), got int 1"),
        ({"algo": {"normalize": "yes"}}, "algo.normalize", "expected bool (true/false), got str 'yes'"),
        ({"algo": {"lr": True}}, "algo.lr", "expected float, got bool True"),
        ({"task": 5}, "task", "expected str, got int 5"),
        ({"algo": {"clip": "x"}}, "algo.clip", "expected float, got str 'x'"),
        ({"algo": {"hidden": 64}}, "algo.hidden", "expected list[int], got int 64"),
        ({"algo": {"hidden": [64, "a"]}}, "algo.hidden[1]", "expected int, got str 'a'"),
        ({"env": {"reward_scales": {"position": "x"}}}, "env.reward_scales.position", "expected float, got str"),
        ({"env": {"reward_scales": [1.0]}}, "env.reward_scales", "expected dict[str, float], got list"),
        ({"env": {"obs_noise": [0.1, None]}}, "env.obs_noise[1]", "expected float, got NoneType None"),
        ({"env": {"goal": [1, 2]}}, "env.goal", "expected 3 items (tuple[float, float, float]), got 2"),
        ({"env": {"backend": "jax"}}, "env.backend", "expected one of 'TORCH', 'MUJOCO', got str 'jax'"),
        ({"env": 3}, "env", "expected a mapping (EnvCfg), got int 3"),
        ({"notes": {"a": 1}}, "notes.a", "expected str, got int 1"),
    ],
)
def test_type_errors_name_the_key(data, key, expected):
    with pytest.raises(ConfigError) as e:
        from_dict(RunCfg, {"task": "t", **data}, source="p.yaml")
    msg = str(e.value)
    assert msg.startswith(f"p.yaml: key '{key}': ") or msg.startswith(f"p.yaml: key {key!r}: "), msg
    assert expected in msg


def test_literal_error_suggests():
    with pytest.raises(ConfigError) as e:
        from_dict(RunCfg, {"task": "t", "algo": {"activation": "rellu"}})
    assert "key 'algo.activation': expected one of 'elu', 'relu', 'tanh', got str 'rellu'" in str(e.value)
    assert "(did you mean 'relu'?)" in str(e.value)


def test_missing_required_key():
    with pytest.raises(ConfigError, match=r"^cfg\.yaml: missing required key 'task'$"):
        from_dict(RunCfg, {"seed": 1}, source="cfg.yaml")


def test_lossless_conversions():
    cfg = from_dict(
        RunCfg,
        {
            "task": "t",
            "seed": 3.0,
            "algo": {"lr": 1},
            "env": {"obs_noise": [1, 0.5], "goal": [0, 0, 2], "backend": "MUJOCO"},
            "init_from": "runs/a",
        },
    )
    assert cfg.seed == 3 and type(cfg.seed) is int
    assert cfg.algo.lr == 1.0 and type(cfg.algo.lr) is float
    assert cfg.env.obs_noise == (1.0, 0.5) and isinstance(cfg.env.obs_noise, tuple)
    assert cfg.env.goal == (0.0, 0.0, 2.0)
    assert cfg.env.backend is Backend.MUJOCO
    assert cfg.init_from == Path("runs/a")
    assert from_dict(EnvCfg, {"backend": "mujoco"}).backend is Backend.MUJOCO  # by value too


def test_post_init_error_becomes_config_error():
    with pytest.raises(ConfigError, match=r"^c\.yaml: Checked: n must be positive, got 0$"):
        from_dict(Checked, {"n": 0}, source="c.yaml")


# ---------------------------------------------------------------------------------------------------- to_dict / YAML


def test_to_dict_is_plain_and_skips_properties():
    d = to_dict(RunCfg(task="t"))
    assert "step_hz" not in d["env"]
    assert d["env"]["obs_noise"] == [0.01, 0.02] and d["env"]["backend"] == "TORCH"
    assert d["init_from"] is None


def test_yaml_round_trip(tmp_path):
    cfg = RunCfg(
        task="on",  # a YAML 1.1 boolean word must stay a string
        seed=7,
        env=EnvCfg(num_envs=128, reward_scales={"position": -2.0, "tilt": 1e-5}, goal=(1.0, 2.0, 3.0)),
        algo=AlgoCfg(lr=1e-3, hidden=[256, 128], activation="tanh", clip=0.2),
        notes={"operator": "1e3", "when": "yes"},
        init_from=Path("runs/prev"),
    )
    path = tmp_path / "sub" / "config.yaml"
    save_yaml(cfg, path)
    assert from_dict(RunCfg, load_yaml(path), source=str(path)) == cfg
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temp files left


def test_save_yaml_plain_dict(tmp_path):
    save_yaml({"a": (1, 2), "b": {"c": None}}, tmp_path / "d.yaml")
    assert load_yaml(tmp_path / "d.yaml") == {"a": [1, 2], "b": {"c": None}}


# ---------------------------------------------------------------------------------------------------- merge


def test_merge_layers_partial_values():
    base = RunCfg(task="hover", seed=1, algo=AlgoCfg(lr=1e-3, hidden=[8]))
    out = merge(RunCfg, base, {"env": {"num_envs": 4}, "algo": {"clip": 0.1}}, source="preset.yaml")
    assert out.env.num_envs == 4 and out.env.dt == 0.01
    assert out.algo.lr == 1e-3 and out.algo.hidden == [8] and out.algo.clip == 0.1
    assert out.seed == 1 and out.task == "hover"
    assert base.env.num_envs == 16 and base.algo.clip is None  # base untouched
    out.algo.hidden.append(9)
    assert base.algo.hidden == [8]  # no shared mutable values


def test_merge_replaces_dicts_and_lists():
    base = RunCfg(task="t")
    out = merge(RunCfg, base, {"env": {"reward_scales": {"position": -3.0}}, "algo": {"hidden": [1, 2, 3]}})
    assert out.env.reward_scales == {"position": -3.0}
    assert out.algo.hidden == [1, 2, 3]


def test_merge_is_strict():
    with pytest.raises(ConfigError, match=r"^preset\.yaml: unknown key 'algo\.learning_rate'"):
        merge(RunCfg, RunCfg(task="t"), {"algo": {"learning_rate": 1.0}}, source="preset.yaml")
    with pytest.raises(ConfigError, match=r"^preset\.yaml: key 'env\.dt': expected float, got str 'fast'$"):
        merge(RunCfg, RunCfg(task="t"), {"env": {"dt": "fast"}}, source="preset.yaml")


def test_load_config(tmp_path):
    path = write(tmp_path, "seed: 5\nalgo:\n  lr: 1e-2\n")
    cfg = load_config(RunCfg, path, base=RunCfg(task="t"))
    assert cfg.seed == 5 and cfg.algo.lr == 0.01 and cfg.task == "t"
    assert load_config(AlgoCfg) == AlgoCfg()


# ---------------------------------------------------------------------------------------------------- tyro


def test_overrides_nested_and_dict_fields():
    default = RunCfg(task="hover", env=EnvCfg(num_envs=8))
    args = [
        "--env.num-envs", "64",
        "--algo.lr", "1e-3",
        "--env.reward-scales.action-rate", "-0.5",
        "--algo.hidden", "32", "32", "16",
        "--algo.no-normalize",
        "--notes", "operator", "ana",
        "--seed", "3",
    ]  # fmt: skip
    cfg = parse_overrides(RunCfg, default, args, prog="train")
    assert cfg.env.num_envs == 64 and cfg.algo.lr == 1e-3 and cfg.seed == 3 and cfg.task == "hover"
    assert cfg.env.reward_scales == {"position": -1.0, "action_rate": -0.5}
    assert cfg.algo.hidden == [32, 32, 16] and cfg.algo.normalize is False
    assert cfg.notes == {"operator": "ana"}
    assert default.env.num_envs == 8 and default.env.reward_scales["action_rate"] == -0.05  # default untouched


def test_overrides_underscore_spelling_and_no_args():
    default = RunCfg(task="hover")
    assert parse_overrides(RunCfg, default, ["--env.num_envs", "5"], prog="train").env.num_envs == 5
    assert parse_overrides(RunCfg, default, [], prog="train") == default


def test_overrides_unknown_flag_is_an_error(capsys):
    with pytest.raises(SystemExit) as e:
        parse_overrides(RunCfg, RunCfg(task="t"), ["--env.num-env", "64"], prog="train")
    assert e.value.code == 2
    assert "--env.num-env" in capsys.readouterr().err


def test_overrides_bad_value_is_an_error(capsys):
    with pytest.raises(SystemExit) as e:
        parse_overrides(RunCfg, RunCfg(task="t"), ["--env.num-envs", "many"], prog="train")
    assert e.value.code == 2
    assert "--env.num-envs" in capsys.readouterr().err


def test_import_does_not_import_tyro():
    code = "import sys, robolearn.core.config; assert 'tyro' not in sys.modules, 'tyro imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
