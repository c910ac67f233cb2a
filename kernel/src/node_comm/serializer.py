"""Serializer base class and the per-node serializer registry."""

from __future__ import annotations

import abc
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from .exceptions import PayloadTooLargeError
from .registry import SerializerRegistry as SerializerRegistry  # re-exported (it lived here)

if TYPE_CHECKING:
    from .config import DecodeLimits


class Serializer(abc.ABC):
    """Turns payloads into bytes and back. Subclasses give a unique :attr:`name`.

    Payloads of the node's ``offload_threshold`` bytes or more are encoded and decoded in worker
    threads, several at once: ``serialize`` and ``deserialize`` must be thread-safe (keep no
    per-call state on the instance).
    """

    #: True for a serializer whose ``serialize``/``deserialize`` cost the same at any size (``raw``
    #: passes buffers through): never worth a worker thread, so large payloads stay on the loop.
    constant_time: ClassVar[bool] = False

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """The name methods and calls refer to (``MethodOptions(serializer=NAME)``)."""

    @abc.abstractmethod
    def serialize(self, obj: Any) -> bytes:
        """Encode ``obj``; raise any exception when it cannot be encoded."""

    @abc.abstractmethod
    def deserialize(self, data: bytes) -> Any:
        """Decode ``data``; raise any exception when it is malformed."""

    def serialize_parts(self, obj: Any) -> Sequence[Any]:
        """Encode ``obj`` as a list of buffers whose concatenation is ``serialize(obj)``, without
        joining them (scatter-gather: large buffers may be views of ``obj``'s own memory, e.g.
        numpy arrays). The node uses it for large payloads when its transport sends buffer lists
        (:attr:`~node_comm.Transport.scatter_gather`). The default is ``[serialize(obj)]``."""
        return [self.serialize(obj)]

    def deserialize_bounded(self, data: bytes, limits: DecodeLimits) -> Any:
        """Decode ``data`` from a peer within ``limits`` (the node's ``decode_limits``); raise
        :class:`~node_comm.PayloadTooLargeError` for a payload past them, before building it when
        possible. The node decodes every payload from a peer through this method.

        The default ignores the limits: right for formats whose decoded value cannot be much larger
        than their bytes (``raw``). Serializers of nested data (JSON, msgpack) override it.
        """
        return self.deserialize(data)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# JSON pre-scan for decode limits, at C speed: one ``translate`` keeps the brackets alone, as "(" and
# ")". Every list/dict is one "(", so counting them bounds the containers (brackets inside strings
# count too: an overestimate, never an underestimate). For depth, the innermost "()" pairs are
# removed once per level; what is left after ``max_depth`` rounds nests deeper (or is a bracket
# inside a string, in which case the decoded value is measured exactly).
_BRACKETS = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


def _too_many(count: int, limits: DecodeLimits, what: str) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"payload holds more than decode_limits.max_containers={limits.max_containers} lists/dicts "
        f"({what}); raise decode_limits.max_containers on the receiving node if it is legitimate, "
        "or send bulk data as bytes (raw, msgpack bin)"
    )


def _too_deep(limits: DecodeLimits) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"payload nests lists/dicts deeper than decode_limits.max_depth={limits.max_depth}; raise "
        "decode_limits.max_depth on the receiving node if it is legitimate"
    )


def check_json_limits(data: bytes, limits: DecodeLimits) -> bool:
    """Refuse a JSON document that certainly exceeds ``limits`` (:class:`PayloadTooLargeError`),
    without decoding it. Returns True when the depth could not be settled from the bytes (brackets
    inside strings): the caller then checks the decoded value with :func:`check_decoded_limits`,
    which costs no more than the containers the count above already allowed."""
    depth = limits.max_depth
    if len(data) <= 2 * depth:  # too short to nest deeper, or to hold more containers
        return False
    if not isinstance(data, (bytes, bytearray)):
        data = bytes(data)  # a memoryview: translate needs bytes
    brackets = data.translate(_BRACKETS, _NOT_BRACKETS)
    opens = brackets.count(b"(")
    if opens > limits.max_containers:
        raise _too_many(opens, limits, f"it has {opens} '[' and '{{'")
    if opens <= depth:
        return False
    for _ in range(depth):
        if not brackets:
            return False
        shorter = brackets.replace(b"()", b"")
        if len(shorter) == len(brackets):  # no pair left: unbalanced, decided by the decoded value
            return True
        brackets = shorter
    return bool(brackets)


def check_decoded_limits(value: Any, limits: DecodeLimits) -> None:
    """Raise :class:`PayloadTooLargeError` when the decoded ``value`` nests lists/dicts deeper than
    ``limits.max_depth`` or holds more than ``limits.max_containers`` of them."""
    depth, cap = limits.max_depth, limits.max_containers
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, (list, dict)) else []
    count = 0
    while stack:
        obj, level = stack.pop()
        count += 1
        if level > depth:
            raise _too_deep(limits)
        if count > cap:
            raise _too_many(count, limits, "counted after decoding")
        items = obj.values() if isinstance(obj, dict) else obj
        stack.extend((v, level + 1) for v in items if isinstance(v, (list, dict)))


class StdlibJsonSerializer(Serializer):
    """The kernel's fallback ``json``: stdlib only, used when no plugin provides ``json``."""

    @property
    def name(self) -> str:
        return "json"

    def serialize(self, obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()

    def deserialize(self, data: bytes) -> Any:
        return json.loads(data, parse_constant=_refuse_constant)

    def deserialize_bounded(self, data: bytes, limits: DecodeLimits) -> Any:
        measure = check_json_limits(data, limits)
        value = self.deserialize(data)
        if measure:
            check_decoded_limits(value, limits)
        return value
