"""Serializers for node-comm: ``json`` (orjson-backed), ``pickle`` and ``msgpack``."""

from .json_serializer import JsonSerializer
from .msgpack_serializer import MsgpackSerializer
from .pickle_serializer import PickleSerializer

__all__ = ["JsonSerializer", "MsgpackSerializer", "PickleSerializer"]
