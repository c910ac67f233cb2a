"""``load_config``: YAML -> :class:`NodeConfig`, with errors that name the key path and the fix."""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Union

import yaml

from .exceptions import ConfigError

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_TYPE_WORDS = {int: "an integer", float: "a number", bool: "a boolean (true/false)", str: "a string"}


def _did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def interpolate(value: Any, path: str) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of ``value`` from the environment."""
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(
                f"{path}: environment variable {name!r} is not set; set it, or write ${{{name}:-default}}"
            )

        return _ENV.sub(sub, value)
    if isinstance(value, dict):
        return {k: interpolate(v, _join(path, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe(tp: Any) -> str:
    if tp in _TYPE_WORDS:
        return _TYPE_WORDS[tp]
    origin = typing.get_origin(tp)
    if origin in (list, typing.List):  # noqa: UP006
        return "a list"
    if origin in (dict, typing.Dict) or dataclasses.is_dataclass(tp):  # noqa: UP006
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def convert(tp: Any, value: Any, path: str) -> Any:
    """Check ``value`` against type hint ``tp`` and convert mappings into dataclasses."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert(arg, value, path)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        words = " or ".join(_describe(a) for a in args if a is not type(None))
        raise ConfigError(f"{path}: expected {words}, got {value!r}")
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if dataclasses.is_dataclass(value) and isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return build_dataclass(tp, value, path)
    if origin in (list, typing.List):  # noqa: UP006
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp) or (Any,)
        return [convert(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, typing.Dict):  # noqa: UP006
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        _, vt = typing.get_args(tp) or (str, Any)
        return {str(k): convert(vt, v, _join(path, str(k))) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected a boolean (true/false), got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)  # from ${ENV} interpolation
        raise ConfigError(f"{path}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{path}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{path}: expected a string, got {value!r}")
    return value


def build_dataclass(cls: type[Any], data: dict[str, Any], path: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping: unknown keys, missing required keys and ill-typed
    values are :class:`ConfigError` naming the key path."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        key = str(key)
        if key not in fields:
            raise ConfigError(f"{_join(path, key)}: unknown key{_did_you_mean(key, fields)}")
        kwargs[key] = convert(hints[key], value, _join(path, key))
    for name, f in fields.items():
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{_join(path, name)}: required key is missing")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{path or cls.__name__}: {exc}") from exc


def options_for_transport(factory: Any, section: Any, path: str) -> Any:
    """The options a transport factory gets: its ``options_class`` built from a mapping (or given
    as-is), else the mapping itself."""
    options_class = getattr(factory, "options_class", None)
    if options_class is None:
        return section
    if section is None:
        return options_class()
    if isinstance(section, options_class):
        return section
    if isinstance(section, dict):
        return build_dataclass(options_class, section, path)
    if dataclasses.is_dataclass(section):
        return build_dataclass(options_class, dataclasses.asdict(section), path)  # type: ignore[arg-type]
    raise ConfigError(f"{path}: expected a mapping or {options_class.__name__}, got {section!r}")


def config_from_dict(data: dict[str, Any], source: str = "config") -> Any:
    """Build a :class:`NodeConfig` from an already parsed mapping (see :func:`load_config`)."""
    from .config import NodeConfig, TransportConfig
    from .plugins import PluginsConfig, discover

    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    data = interpolate(data, "")
    transport = data.pop("transport", None) or {}
    if not isinstance(transport, dict):
        raise ConfigError(f"transport: expected a mapping, got {transport!r}")
    plugins = convert(PluginsConfig, data.get("plugins") or {}, "plugins")
    config = build_dataclass(NodeConfig, data)
    config.transport = _transport_from_dict(dict(transport), discover(plugins), TransportConfig)
    return config


def _transport_from_dict(section: dict[str, Any], registries: Any, transport_cls: type[Any]) -> Any:
    mode = section.pop("mode", "memory")
    if not isinstance(mode, str):
        raise ConfigError(f"transport.mode: expected a string, got {mode!r}")
    installed = registries.transports.names()
    if mode not in installed:
        registries.transports.get(mode)  # raises: not installed; available: ...
    tc = transport_cls(mode=mode)
    for name, options in section.items():
        name = str(name)
        path = f"transport.{name}"
        if name not in installed:
            hint = _did_you_mean(name, [*installed, "mode"])
            if hint:
                raise ConfigError(f"{path}: unknown transport section{hint}")
            tc.options[name] = options  # a transport not installed here: kept as written
            continue
        built = options_for_transport(registries.transports.get(name), options, path)
        if name in ("grpc", "memory"):
            setattr(tc, name, built)
        else:
            tc.options[name] = built
    return tc


def load_config(path: str | os.PathLike[str]) -> Any:
    """Read a YAML file into a :class:`NodeConfig`. ``${ENV_VAR}`` in values is replaced from the
    environment. Every error is a :class:`ConfigError` naming the file, key path and fix."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {str(p)!r} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(p)!r}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: invalid YAML: {exc}") from None
    if data is None:
        raise ConfigError(f"{p}: the file is empty; it needs at least `node_id: NAME`")
    try:
        return config_from_dict(data, str(p))
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc.message}") from None
