"""``msgpack``: compact and bytes-friendly, for model weights and arrays as raw bytes."""

from __future__ import annotations

import itertools
from typing import Any

import msgpack

from node_comm import DecodeLimits, PayloadTooLargeError, Serializer


class MsgpackSerializer(Serializer):
    """msgpack with bin type: ``bytes`` stay bytes, ``str`` stays str; tuples become lists."""

    #: A class attribute, not a property: read on every call (a Python call less each time).
    name = "msgpack"

    def serialize(self, obj: Any) -> bytes:
        return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]

    def deserialize(self, data: bytes) -> Any:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)

    def deserialize_bounded(self, data: bytes, limits: DecodeLimits) -> Any:
        """``deserialize``, refusing a payload with more than ``limits.max_containers`` arrays/maps
        as soon as the decoder passes that many (an empty array is one byte: 60 MiB of them would
        decode into gigabytes). Nesting is bounded by msgpack itself (1023 levels)."""
        cap = limits.max_containers
        if len(data) <= cap:  # every array/map takes at least one byte
            return self.deserialize(data)
        counter = itertools.count(1)

        def count(obj: Any) -> Any:
            if next(counter) > cap:
                raise PayloadTooLargeError(
                    f"payload holds more than decode_limits.max_containers={cap} arrays/maps; raise "
                    "decode_limits.max_containers on the receiving node if it is legitimate, or send "
                    "bulk data as bin"
                )
            return obj

        return msgpack.unpackb(data, raw=False, strict_map_key=False, list_hook=count, object_hook=count)
