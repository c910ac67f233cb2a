"""``msgpack``: compact and bytes-friendly, for model weights and arrays as raw bytes."""

from __future__ import annotations

from typing import Any

import msgpack

from node_comm import Serializer


class MsgpackSerializer(Serializer):
    """msgpack with bin type: ``bytes`` stay bytes, ``str`` stays str; tuples become lists."""

    @property
    def name(self) -> str:
        return "msgpack"

    def serialize(self, obj: Any) -> bytes:
        return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]

    def deserialize(self, data: bytes) -> Any:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
