"""Serializers for node-comm: ``json`` (orjson-backed), ``pickle``, ``msgpack``, ``raw`` and ``numpy``."""

from .json_serializer import JsonSerializer
from .msgpack_serializer import MsgpackSerializer
from .numpy_serializer import NumpySerializer
from .pickle_serializer import PickleSerializer
from .raw_serializer import RawSerializer

__all__ = ["JsonSerializer", "MsgpackSerializer", "NumpySerializer", "PickleSerializer", "RawSerializer"]
