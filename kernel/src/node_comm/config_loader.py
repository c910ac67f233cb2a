"""``load_config``: YAML -> :class:`NodeConfig`, with errors that name the key path and the fix.

Every mistake in a file is a :class:`ConfigError` whose message starts with the file and the key
path (``config.yaml: transport.grpc.port: expected an integer, got 'abc'``): YAML syntax errors
give the line and column, unknown keys a "did you mean", unknown transports and interceptors
the list of installed ones, and bad values the range that is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import os
import re
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Union

from .config import InterceptorConfig, NodeConfig, TransportConfig
from .exceptions import ConfigError
from .plugins import PluginsConfig, Registries, discover
from .validate import short_repr
from .yaml_reader import read_yaml

# ``$${VAR}`` is a literal ``${VAR}``; ``${VAR}`` must be set; ``${VAR:-default}`` falls back.
_ENV = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_TYPE_WORDS = {int: "an integer", float: "a number", bool: "a boolean (true/false)", str: "a string"}
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _unknown(path: str, key: str, choices: Iterable[str], what: str = "key") -> ConfigError:
    choices = sorted(choices)
    hint = _did_you_mean(key, choices) or (f"; valid {what}s: {', '.join(choices)}" if choices else "")
    return ConfigError(f"{_join(path, key)}: unknown {what}{hint}")


def interpolate(value: Any, path: str) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of ``value`` from the environment
    (``$${VAR}`` stays a literal ``${VAR}``). An unset variable without default is a ConfigError.

    A mapping or list reached twice (a YAML alias) is interpolated once and stays shared, so the
    cost is the size of the document as written, not as its aliases would expand it."""
    return _interpolate(value, path, {})


def _interpolate(value: Any, path: str, done: dict[int, Any]) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            escaped, name, default = m.group(1), m.group(2), m.group(3)
            if escaped:
                return m.group(0)[1:]
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(
                f"{path or 'config'}: environment variable {name!r} is not set; "
                f"set it, or give a default with ${{{name}:-default}}"
            )

        return _ENV.sub(sub, value)
    if not isinstance(value, (dict, list)):
        return value
    if id(value) in done:
        return done[id(value)]
    if isinstance(value, dict):
        mapping: dict[Any, Any] = {}
        done[id(value)] = mapping
        for k, v in value.items():
            mapping[k] = _interpolate(v, _join(path, str(k)), done)
        return mapping
    items: list[Any] = []
    done[id(value)] = items
    items.extend(_interpolate(v, f"{path}[{i}]", done) for i, v in enumerate(value))
    return items


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
    """Check ``value`` against type hint ``tp`` and convert mappings into dataclasses.

    Strings that spell a number or a boolean are accepted where one is expected, because
    ``${ENV_VAR}`` interpolation always yields strings.
    """
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
        raise ConfigError(f"{path}: expected {words}, got {short_repr(value)}")
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {short_repr(value)}")
        return build_dataclass(tp, value, path)
    if origin in (list, typing.List):  # noqa: UP006
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {short_repr(value)}")
        (item,) = typing.get_args(tp) or (Any,)
        return [convert(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, typing.Dict):  # noqa: UP006
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {short_repr(value)}")
        _, vt = typing.get_args(tp) or (str, Any)
        return {str(k): convert(vt, v, _join(path, str(k))) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"{path}: expected a boolean (true/false), got {short_repr(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d{1,4000}\s*", value):
            return int(value)
        raise ConfigError(f"{path}: expected an integer, got {short_repr(value)}")
    if tp is float:
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            try:
                return float(value)
            except (ValueError, OverflowError):
                pass
        raise ConfigError(f"{path}: expected a number, got {short_repr(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{path}: expected a string, got {short_repr(value)}")
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
            raise _unknown(path, key, fields)
        kwargs[key] = convert(hints[key], value, _join(path, key))
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if name not in kwargs and required:
            raise ConfigError(f"{_join(path, name)}: required key is missing")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
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
    if dataclasses.is_dataclass(section) and not isinstance(section, type):
        return build_dataclass(options_class, dataclasses.asdict(section), path)
    raise ConfigError(f"{path}: expected a mapping or {options_class.__name__}, got {short_repr(section)}")


def interceptor_options(
    registries: Registries, spec: InterceptorConfig, index: int
) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The factory of interceptor ``spec`` (entry ``index`` of ``interceptors:``) and the options to
    call it with, checked without calling it: an unknown name, a missing, unknown or ill-typed
    option (checked against the factory's signature and type hints, which also turn ``${ENV}``
    strings into numbers and booleans) is a ConfigError naming ``interceptors[index]``. ``spec`` is
    not changed."""
    path = f"interceptors[{index}]"
    try:
        factory = registries.interceptors.get(spec.name)
    except ConfigError as exc:
        raise ConfigError(f"{path}.name: {exc.message}") from None
    options = dict(spec.options or {})
    try:
        signature: inspect.Signature | None = inspect.signature(factory)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        params = signature.parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        named = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if not takes_any:
            for key in options:
                if key not in named:
                    raise _unknown(f"{path}.options", key, named, what=f"option of interceptor {spec.name!r}")
        for name in named:
            p = params[name]
            if p.default is inspect.Parameter.empty and name not in options:
                raise ConfigError(
                    f"{path}.options.{name}: interceptor {spec.name!r} requires this option; "
                    f"add it under {path}.options"
                )
    for key, hint in _option_hints(factory).items():
        if key in options:
            options[key] = convert(hint, options[key], f"{path}.options.{key}")
    return factory, options


def build_interceptor(registries: Registries, spec: InterceptorConfig, index: int) -> Any:
    """Build interceptor ``spec`` as ``factory(**options)`` (options checked and converted by
    :func:`interceptor_options`); a value the factory refuses is a ConfigError naming
    ``interceptors[index]``. ``spec`` is not changed."""
    factory, options = interceptor_options(registries, spec, index)
    try:
        return factory(**options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"interceptors[{index}].options ({spec.name}): {exc}") from exc


def _option_hints(factory: Any) -> dict[str, Any]:
    """The type hints of ``factory``'s parameters (its ``__init__`` for a class); ``{}`` when they
    cannot be resolved, in which case options are passed through unchecked."""
    target = getattr(factory, "__init__") if isinstance(factory, type) else factory  # noqa: B009
    try:
        hints = typing.get_type_hints(target)
    except Exception:
        return {}
    hints.pop("return", None)
    return hints


def config_from_dict(data: dict[str, Any], source: str = "config", *, plugins: Iterable[object] = ()) -> NodeConfig:
    """Build a :class:`NodeConfig` from an already parsed mapping (see :func:`load_config`).

    Transport, serializer and interceptor names are checked against the installed plugins (as
    limited by the mapping's ``plugins:`` section), plus ``plugins`` given in code.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    fields = [f.name for f in dataclasses.fields(NodeConfig) if f.init]
    for key in data:  # before any value is looked at
        if str(key) not in fields:
            raise _unknown("", str(key), fields)
    data = interpolate(dict(data), "")
    transport = data.pop("transport", None)
    if transport is None:
        transport = {}
    if not isinstance(transport, dict):
        raise ConfigError(f"transport: expected a mapping, got {short_repr(transport)}")
    interceptors = data.get("interceptors")
    if isinstance(interceptors, list):
        # ``options:`` left empty in YAML is null; treat it as no options.
        data["interceptors"] = [
            {**i, "options": {}} if isinstance(i, dict) and i.get("options", {}) is None else i for i in interceptors
        ]
    plugins_section = data.get("plugins")
    plugins_config = convert(PluginsConfig, {} if plugins_section is None else plugins_section, "plugins")
    data["plugins"] = plugins_config
    config: NodeConfig = build_dataclass(NodeConfig, data)
    registries = discover(plugins_config, plugins)
    config.transport = _transport_from_dict(dict(transport), registries)
    checked = []
    for index, spec in enumerate(config.interceptors):
        _, options = interceptor_options(registries, spec, index)
        checked.append(InterceptorConfig(spec.name, options))  # ${ENV} strings typed as declared
        # Values only the factory can judge (a token's form, a log level) fail now, not at Node():
        # the instance built to check them is dropped; the node builds its own.
        build_interceptor(registries, checked[-1], index)
    config.interceptors = checked
    return config


def _transport_from_dict(section: dict[str, Any], registries: Registries) -> TransportConfig:
    mode = section.pop("mode", "memory")
    if not isinstance(mode, str) or not mode:
        raise ConfigError(f"transport.mode: expected a transport name, got {short_repr(mode)}")
    installed = registries.transports.names()
    if mode not in installed:
        try:
            registries.transports.get(mode)
        except ConfigError as exc:
            raise ConfigError(f"transport.mode: {exc.message}") from None
    tc = TransportConfig(mode=mode)
    for name, options in section.items():
        name = str(name)
        path = f"transport.{name}"
        if name not in installed:
            hint = _did_you_mean(name, [*installed, "mode"])
            if hint:
                raise ConfigError(f"{path}: unknown transport section{hint}")
            if options is not None and not isinstance(options, dict):
                raise ConfigError(f"{path}: expected a mapping of options, got {short_repr(options)}")
            tc.options[name] = options  # a transport not installed here: kept as written
            continue
        tc.options[name] = options_for_transport(registries.transports.get(name), options, path)
    return tc


def load_config(path: str | os.PathLike[str], *, plugins: Iterable[object] = ()) -> NodeConfig:
    """Read a YAML file into a :class:`NodeConfig`.

    ``${ENV_VAR}`` and ``${ENV_VAR:-default}`` in values are replaced from the environment. Names of
    transports and interceptors are checked against the installed plugins (and ``plugins`` given in
    code, for configs with ``plugins: {autoload: false}``). Every error is a :class:`ConfigError`
    naming the file, key path and fix.
    """
    p = Path(path)
    data = read_yaml(p)
    if data is None:
        raise ConfigError(f"{p}: the file is empty; it needs at least `node_id: NAME`")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{p}: expected a mapping of keys (node_id: ..., transport: ...) at the top level, "
            f"got a {type(data).__name__}"
        )
    try:
        return config_from_dict(data, str(p), plugins=plugins)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc.message}") from None
