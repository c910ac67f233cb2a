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

from node_comm import DecodeLimits, Serializer
from node_comm.serializer import check_decoded_limits, check_json_limits

# Passthrough makes orjson refuse datetimes and dataclasses, as stdlib json does, instead of
# silently turning them into strings and dicts.
_OPTS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_dumps = orjson.dumps
_loads = orjson.loads
# orjson decodes integers beyond 64 bits as floats (precision lost), so documents that may hold one
# are decoded by the stdlib, which keeps them exact. The check runs in C: map digits to "0", "." to
# itself and every other byte to " ", then look for 19+ digits not preceded by a "." (so the long
# fractions of small floats such as 0.0027884756165381663 do not count). False positives (digits in
# strings, exponents) only cost speed, never correctness.
_SCAN = bytes(48 if 48 <= c <= 57 else 46 if c == 46 else 32 for c in range(256))
_BIG_RUN = b" " + b"0" * 19
_BIG_START = b"0" * 19
_BIG_INT_ERRORS = ("Integer exceeds 64-bit range", "Dict integer key must be within 64-bit range")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


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

    #: A class attribute, not a property: read on every call (a Python call less each time).
    name = "json"

    def serialize(self, obj: Any) -> bytes:
        try:
            data = _dumps(obj, option=_OPTS)
        except TypeError as exc:
            if str(exc) not in _BIG_INT_ERRORS:
                raise
            return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
        if b"null" in data:  # orjson writes NaN/inf as null: find out whether it did
            _check_finite(obj)
        return data

    def deserialize(self, data: bytes) -> Any:
        if len(data) >= 19:
            scan = data.translate(_SCAN)
            if scan.startswith(_BIG_START) or _BIG_RUN in scan:
                return json.loads(data, parse_constant=_refuse_constant)
        return _loads(data)

    def deserialize_bounded(self, data: bytes, limits: DecodeLimits) -> Any:
        """``deserialize`` after a C-speed scan that refuses, undecoded, a document nesting deeper
        than ``limits.max_depth`` or holding more than ``limits.max_containers`` lists/dicts."""
        n = len(data)
        if n <= 2 * limits.max_depth:  # too short to pass either limit (and most calls are)
            # ``deserialize`` inlined: this runs twice per small call.
            if n >= 19:
                scan = data.translate(_SCAN)
                if scan.startswith(_BIG_START) or _BIG_RUN in scan:
                    return json.loads(data, parse_constant=_refuse_constant)
            return _loads(data)
        measure = check_json_limits(data, limits)
        value = self.deserialize(data)
        if measure:
            check_decoded_limits(value, limits)
        return value
