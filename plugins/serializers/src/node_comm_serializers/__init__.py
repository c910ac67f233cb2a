"""Serializers for node-comm: ``json`` (orjson-backed), ``pickle``, ``msgpack`` and ``raw``."""

from .json_serializer import JsonSerializer
from .msgpack_serializer import MsgpackSerializer
from .pickle_serializer import PickleSerializer
from .raw_serializer import RawSerializer

__all__ = ["JsonSerializer", "MsgpackSerializer", "PickleSerializer", "RawSerializer"]
