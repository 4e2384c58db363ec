"""Typed configs: dataclasses are the schema, YAML files are presets of values, tyro gives command-line overrides.

Layering, lowest to highest: the dataclass defaults, a YAML preset (`merge`), command-line flags (`parse_overrides`).

    cfg = merge(TrainCfg, TrainCfg(), load_yaml("configs/hover.yaml"), source="configs/hover.yaml")
    cfg = parse_overrides(TrainCfg, cfg, ["--env.num-envs", "64", "--env.reward-scales.position", "-2"], "train")

Strictness: an unknown key, a wrong type or a missing required key is a `ConfigError` naming the source and the
dotted key. Conversions are the lossless ones only: an int is accepted for a float, an integral float (`64.0`) for an
int; a bool is never an int and a number is never a string. Nested dataclasses merge field by field; every other
value (lists, tuples, dicts) is replaced as a whole.

YAML is read with YAML 1.2 scalars: `3e-4` is a float (PyYAML's YAML 1.1 reads it as a string) and only
`true`/`false` are booleans (`on`, `off`, `yes`, `no` stay strings). Duplicate keys are errors.

Command-line syntax (tyro 1.0; flags are hyphenated, the underscore spelling is accepted too):
    nested field:    --env.num-envs 64                        (or --env.num_envs 64)
    dict field:      --env.reward-scales.action-rate -0.5     one flag per key of the default (the preset's keys);
                                                              other keys keep their values, no key can be added
    dict field whose default is empty:  --notes operator ana  KEY VALUE pairs, replacing the dict
    list / tuple:    --algo.hidden 256 256 128
    bool:            --algo.normalize / --algo.no-normalize   (top level: --flag / --no-flag)
    X | None:        --algo.clip 0.2 / --algo.clip None
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import enum
import functools
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from robolearn.core.errors import ConfigError

T = TypeVar("T")

__all__ = ["from_dict", "load_config", "load_yaml", "merge", "parse_overrides", "parse_sets", "save_yaml", "to_dict"]


# ----------------------------------------------------------------------------------------------------------- YAML


def _yaml12(cls: type, *, keep_yaml11: bool = False) -> type:
    """Give a PyYAML loader/dumper class YAML 1.2 scalars: `3e-4` is a float, `on` a string, `012` is 12.

    With `keep_yaml11` (the dumper) the YAML 1.1 rules stay too, so a string either reading would take for a
    non-string (`on`, `1e3`, `1:30`) is written quoted and reads back the same in any YAML reader.
    """
    bool_tag, int_tag, float_tag = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
    cls.yaml_implicit_resolvers = {
        ch: [(tag, rx) for tag, rx in resolvers if keep_yaml11 or tag not in (bool_tag, int_tag, float_tag)]
        for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    cls.add_implicit_resolver(bool_tag, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
    cls.add_implicit_resolver(
        int_tag, re.compile(r"^[-+]?(?:[0-9][0-9_]*|0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+)$"), list("-+0123456789")
    )
    cls.add_implicit_resolver(
        float_tag,
        re.compile(
            r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                |[-+]?\.(?:inf|Inf|INF)
                |\.(?:nan|NaN|NAN))$""",
            re.X,
        ),
        list("-+0123456789."),
    )
    return cls


@_yaml12
class _Loader(yaml.SafeLoader):
    """Safe loader with YAML 1.2 scalars that rejects duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, typing.Hashable):
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    """YAML 1.2 integers: decimal (leading zeros allowed, not octal), 0x, 0o, 0b."""
    text = str(loader.construct_scalar(node)).replace("_", "")
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    return sign * (int(body, 0) if body[:2].lower() in ("0x", "0o", "0b") else int(body, 10))


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


class _Dumper(yaml.SafeDumper):
    """Safe dumper that quotes every string a YAML 1.1 or 1.2 reader would not read back as a string."""


_yaml12(_Dumper, keep_yaml11=True)


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML file whose top level is a mapping (an empty file is `{}`)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    try:
        data = yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = e.problem or e.context or "invalid YAML"
        raise ConfigError(f"{path}: {where}{problem}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: {' '.join(str(e).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of keys to values, got {type(data).__name__}")
    return data


def save_yaml(cfg: Any, path: str | os.PathLike[str]) -> None:
    """Write a config dataclass (or a plain dict) as YAML, atomically, creating parent folders."""
    data = to_dict(cfg)
    if not isinstance(data, dict):
        raise TypeError(f"save_yaml expects a dataclass instance or a dict, got {type(cfg).__name__}")
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=None, allow_unicode=True, width=120)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------------------- dicts


def to_dict(cfg: Any) -> Any:
    """Plain YAML/JSON-safe form: dataclasses become dicts (init fields only), tuples lists, enums their names."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.init}
    if isinstance(cfg, Mapping):
        return {to_dict(k): to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, list | tuple):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, enum.Enum):
        return cfg.name
    if isinstance(cfg, os.PathLike):
        return os.fspath(cfg)
    if cfg is None or isinstance(cfg, bool | int | float | str):
        return cfg
    raise TypeError(f"to_dict: cannot represent {type(cfg).__name__} {cfg!r} as YAML")


def from_dict(cls: type[T], data: Mapping[str, Any], *, source: str = "<dict>") -> T:
    """Build `cls` from a (nested) dict, strictly; missing keys take the dataclass defaults."""
    _require_dataclass(cls)
    return _build(cls, data, "", source, None)


def merge(cls: type[T], base: T, data: Mapping[str, Any], source: str = "<dict>") -> T:
    """A copy of `base` with the values in the partial dict `data` applied over it (same strictness as `from_dict`)."""
    _require_dataclass(cls)
    if not isinstance(base, cls):
        raise TypeError(f"merge: base is a {type(base).__name__}, not a {cls.__name__}")
    return _build(cls, data, "", source, base)


def load_config(cls: type[T], path: str | os.PathLike[str] | None = None, base: T | None = None) -> T:
    """`base` (default: `cls()`) with the YAML preset at `path` merged over it."""
    cfg = cls() if base is None else base
    return cfg if path is None else merge(cls, cfg, load_yaml(path), source=str(path))


def parse_overrides(cls: type[T], default: T, args: list[str], prog: str) -> T:
    """Command-line flags (tyro) over `default`; a bad or unknown flag prints tyro's usage error and exits (code 2)."""
    import tyro  # lazy: tyro is slow to import and only the CLI needs it

    _require_dataclass(cls)
    return tyro.cli(cls, default=default, args=list(args), prog=prog)


def parse_sets(cfg: T, items: list[str] | tuple[str, ...], source: str = "--set") -> T:
    """A copy of the config `cfg` with `FIELD=VALUE` overrides applied (the one parser behind every `--set`).

    VALUE is YAML (1.2 scalars): `--set episode_length_s=2`, `--set cameras=[front]`, `--set randomize={}`.
    A dotted FIELD sets one key of a dict field or one field of a nested dataclass (`reward_scales.lift=2`),
    leaving the other keys as they are. A malformed item, an unknown field or a wrong type is one `ConfigError`
    naming `source` and the key.
    """
    cls = type(cfg)
    _require_dataclass(cls)
    data: dict[str, Any] = {}
    for item in items:
        key, eq, text = str(item).partition("=")
        key = key.strip()
        if not eq or not key:
            raise ConfigError(f"{source}: expected FIELD=VALUE, got '{item}'")
        try:
            value = yaml.load(text, Loader=_Loader) if text.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"{source}: key '{key}': bad YAML value '{text}': {' '.join(str(e).split())}") from None
        *parents, last = key.split(".")
        node, obj = data, cfg
        for i, part in enumerate(parents):
            where = ".".join(parents[: i + 1])
            obj = obj.get(part) if isinstance(obj, Mapping) else getattr(obj, part, None)
            if isinstance(obj, Mapping):  # a dict field: start from its current keys
                child = node.setdefault(part, copy.deepcopy(dict(obj)))
            elif dataclasses.is_dataclass(obj):
                child = node.setdefault(part, {})
            else:
                raise ConfigError(f"{source}: key '{key}': '{where}' is not a dict or nested config field")
            if not isinstance(child, dict):
                raise ConfigError(f"{source}: key '{key}' conflicts with an earlier --set of '{where}'")
            node = child
        node[last] = value
    return merge(cls, cfg, data, source=source) if data else cfg


# ----------------------------------------------------------------------------------------------------------- checks


def _require_dataclass(cls: type) -> None:
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"expected a dataclass type, got {cls!r}")


@functools.lru_cache(maxsize=512)
def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except NameError as e:
        raise TypeError(f"cannot resolve the field types of {cls.__qualname__}: {e}") from None


def _join(prefix: str, key: Any) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "None"
    if tp is Any:
        return "any"
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return f"Literal[{', '.join(repr(a) for a in args)}]"
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else _type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]" if args else getattr(origin, "__name__", "?")
    return getattr(tp, "__name__", str(tp))


def _fail(source: str, key: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"{source}: key '{key}': expected {expected}, got {_show(value)}")


def _build(cls: type[T], data: Any, prefix: str, source: str, base: T | None) -> T:
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{source}: {f'key {prefix!r}' if prefix else 'top level'}: expected a mapping ({cls.__name__}), "
            f"got {_show(data)}"
        )
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = _hints(cls)
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{source}: unknown key '{_join(prefix, key)}'{hint}")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        key = _join(prefix, name)
        if name in data:
            old = getattr(base, name) if base is not None else None
            kwargs[name] = _convert(hints[name], data[name], key, source, old)
        elif base is not None:
            kwargs[name] = copy.deepcopy(getattr(base, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{source}: missing required key '{key}'")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}: {f'key {prefix!r}' if prefix else cls.__name__}: {e}") from None


def _convert(tp: Any, value: Any, key: str, source: str, old: Any = None) -> Any:
    """Check `value` against the type `tp` and return it converted (`old` is what a nested dataclass merges into)."""
    if tp is Any or tp is object:
        return copy.deepcopy(value)
    if tp is type(None):
        if value is None:
            return None
        raise _fail(source, key, "None", value)
    origin, args = get_origin(tp), get_args(tp)

    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # X | None: the error of X is the useful one
            return _convert(options[0], value, key, source, old)
        for option in options:
            try:
                return _convert(option, value, key, source, old)
            except ConfigError:
                continue
        raise _fail(source, key, _type_name(tp), value)

    if origin is Literal:
        for a in args:
            if value == a and type(value) is type(a):
                return a
        close = (
            difflib.get_close_matches(value, [a for a in args if isinstance(a, str)], n=1)
            if isinstance(value, str)
            else []
        )
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"{source}: key '{key}': expected one of {', '.join(repr(a) for a in args)}, got {_show(value)}{hint}"
        )

    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return copy.deepcopy(value)
        return _build(tp, value, key, source, old if isinstance(old, tp) else None)

    if tp is bool:
        if type(value) is bool:
            return value
        raise _fail(source, key, "bool (true/false)", value)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise _fail(source, key, "int", value)
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise _fail(source, key, "float", value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _fail(source, key, "str", value)
    if isinstance(tp, type) and issubclass(tp, PurePath):
        if isinstance(value, str | os.PathLike):
            return tp(value)
        raise _fail(source, key, "path (str)", value)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(value, tp):
            return value
        if isinstance(value, str) and value in tp.__members__:
            return tp[value]
        for member in tp:
            if member.value == value and type(member.value) is type(value):
                return member
        raise _fail(source, key, f"one of {', '.join(repr(m) for m in tp.__members__)}", value)

    if origin is list or tp is list:
        if not isinstance(value, list | tuple):
            raise _fail(source, key, _type_name(tp), value)
        item = args[0] if args else Any
        return [_convert(item, v, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is tuple or tp is tuple:
        if not isinstance(value, list | tuple):
            raise _fail(source, key, _type_name(tp), value)
        if not args or (len(args) == 2 and args[1] is Ellipsis):
            item = args[0] if args else Any
            return tuple(_convert(item, v, f"{key}[{i}]", source) for i, v in enumerate(value))
        if args == ((),):
            args = ()
        if len(value) != len(args):
            raise ConfigError(f"{source}: key '{key}': expected {len(args)} items ({_type_name(tp)}), got {len(value)}")
        return tuple(_convert(a, v, f"{key}[{i}]", source) for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise _fail(source, key, _type_name(tp), value)
        kt, vt = args if args else (Any, Any)
        out = {}
        for k, v in value.items():
            sub = _join(key, k)
            out[_convert(kt, k, sub, source)] = _convert(vt, v, sub, source)
        return out
    raise ConfigError(f"{source}: key '{key}': unsupported field type {_type_name(tp)}")
