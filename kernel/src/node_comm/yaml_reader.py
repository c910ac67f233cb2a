"""Reading a YAML config file safely: a SafeLoader that refuses duplicate keys, alias bombs,
self-referencing aliases and absurd nesting, with errors that give the file, line and fix."""

from __future__ import annotations

import os
import typing
from pathlib import Path
from typing import Any

import yaml

from .exceptions import ConfigError

#: Nodes that YAML aliases (``*name``) may add to a config file beyond the nodes written in it.
#: Reusing a TLS section or ``<<: *defaults`` adds a few dozen; a "billion laughs" file of a few
#: hundred bytes would add billions, and is refused before anything is built from it.
MAX_ALIAS_EXPANSION = 10_000

#: Deepest nesting of mappings and lists in a config file (a config needs a handful of levels).
MAX_YAML_DEPTH = 100

_MERGE_TAG = "tag:yaml.org,2002:merge"


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping (YAML silently keeps the last),
    a document whose aliases expand past :data:`MAX_ALIAS_EXPANSION` nodes or refer to
    themselves, and one nested deeper than :data:`MAX_YAML_DEPTH`. Anchors, aliases and ``<<``
    merge keys within that budget load as usual."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.aliases_used: list[str] = []
        self.depth = 0

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        # Refused here, not only in compose_node: PyYAML's scanner looks up to 1 KiB ahead, and
        # each open ``[`` or ``{`` makes every later token cost more.
        if self.flow_level >= MAX_YAML_DEPTH:
            raise self._too_deep(self.get_mark())
        super().fetch_flow_collection_start(TokenClass)

    def _too_deep(self, mark: yaml.Mark) -> ConfigError:
        return ConfigError(
            f"YAML nested more than {MAX_YAML_DEPTH} levels deep at line {mark.line + 1}; flatten the structure"
        )

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) and event.anchor and event.anchor not in self.aliases_used:
            self.aliases_used.append(event.anchor)
        self.depth += 1
        if self.depth > MAX_YAML_DEPTH:
            raise self._too_deep(event.start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def compose_document(self) -> yaml.Node | None:
        node = super().compose_document()
        if node is not None and self.aliases_used:
            _check_alias_expansion(node, self.aliases_used)
        return node


def _check_alias_expansion(root: yaml.Node, aliases: list[str]) -> None:
    """Count the nodes of ``root`` as its aliases expand it, each node once (linear in the size of
    the file); refuse a document that refers to itself or grows past the budget."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    names = ", ".join(f"*{a}" for a in aliases[:5]) + (", ..." if len(aliases) > 5 else "")

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise ConfigError(
                f"YAML alias refers to its own anchor (aliases used: {names}), at line "
                f"{node.start_mark.line + 1}; a config value cannot contain itself"
            )
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        open_nodes.discard(key)
        sizes[key] = total
        return total

    extra = size(root) - len(sizes)
    if extra > MAX_ALIAS_EXPANSION:
        raise ConfigError(
            f"YAML aliases ({names}) expand this file by {extra:,} nodes beyond the {len(sizes):,} "
            f"written in it, more than the {MAX_ALIAS_EXPANSION:,} allowed (an alias bomb?); write "
            f"the repeated values out, or use fewer levels of aliases"
        )


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            continue  # ``<<: *defaults``: merged keys may be overridden, and are not duplicates
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, typing.Hashable) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in one mapping; keep one", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _yaml_error(path: Path, exc: yaml.YAMLError) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    detail = f"{context}, {problem}" if context and "appears twice" not in problem else problem
    line = f" at line {mark.line + 1}" if mark is not None else ""
    return ConfigError(f"{where}: invalid YAML{line}: {detail}")


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """The data of the YAML file at ``path``; every problem is a :class:`ConfigError`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {str(p)!r} does not exist (looked in {os.getcwd()})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {str(p)!r}: {exc}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise _yaml_error(p, exc) from None
    except ConfigError as exc:  # aliases past their budget, or nested too deeply
        raise ConfigError(f"{p}: {exc.message}") from None
    except RecursionError:
        raise ConfigError(f"{p}: YAML nested too deeply to load; flatten the structure") from None
    except ValueError as exc:  # an integer of more than 4300 digits
        reason = str(exc).split(";")[0]
        raise ConfigError(f"{p}: invalid YAML: {reason}; write a smaller number") from None
    return data
