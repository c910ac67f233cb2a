"""``json``: the default. orjson for speed, stdlib json semantics kept.

What stdlib ``json`` accepts encodes here too, to the same JSON: non-string keys become strings,
tuples become lists, integers beyond 64 bits fall back to the stdlib encoder. NaN and infinity are
refused (they are not JSON) rather than silently turned into ``null``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

from node_comm import Serializer

_OPTS = orjson.OPT_NON_STR_KEYS
_dumps = orjson.dumps
_loads = orjson.loads


def _check_finite(obj: Any) -> None:
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"{obj!r} is not valid JSON")
    elif isinstance(obj, dict):
        for v in obj.values():
            _check_finite(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _check_finite(v)


class JsonSerializer(Serializer):
    """UTF-8 JSON, encoded with orjson (stdlib for what orjson cannot take, e.g. huge ints)."""

    @property
    def name(self) -> str:
        return "json"

    def serialize(self, obj: Any) -> bytes:
        try:
            data = _dumps(obj, option=_OPTS)
        except TypeError as exc:
            if "Integer exceeds 64-bit range" not in str(exc):
                raise
            return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
        if b"null" in data:  # orjson writes NaN/inf as null: find out whether it did
            _check_finite(obj)
        return data

    def deserialize(self, data: bytes) -> Any:
        return _loads(data)
