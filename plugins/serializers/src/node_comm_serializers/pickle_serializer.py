"""``pickle``: any Python object, between nodes that trust each other.

Never the default and never chosen by the wire alone: a node decodes pickle only for a method
registered with ``MethodOptions(serializer="pickle")``, and a caller only for a call it made with
``serializer="pickle"``.
"""

from __future__ import annotations

import pickle
from typing import Any

from node_comm import Serializer


class PickleSerializer(Serializer):
    """Highest-protocol pickle (protocol 5 keeps large buffers cheap)."""

    @property
    def name(self) -> str:
        return "pickle"

    def serialize(self, obj: Any) -> bytes:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)

    def deserialize(self, data: bytes) -> Any:
        return pickle.loads(data)
