"""Entry point of the serializers plugin."""

from __future__ import annotations

from node_comm import hookimpl
from node_comm.registry import SerializerRegister

from .json_serializer import JsonSerializer
from .msgpack_serializer import MsgpackSerializer
from .numpy_serializer import NumpySerializer
from .pickle_serializer import PickleSerializer
from .raw_serializer import RawSerializer


@hookimpl
def node_comm_register_serializers(register: SerializerRegister) -> None:
    register(JsonSerializer())
    register(PickleSerializer())
    register(MsgpackSerializer())
    register(RawSerializer())
    register(NumpySerializer())
