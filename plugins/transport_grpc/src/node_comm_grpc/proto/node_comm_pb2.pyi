from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FrameType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FRAME_TYPE_UNSPECIFIED: _ClassVar[FrameType]
    REQUEST: _ClassVar[FrameType]
    RESPONSE: _ClassVar[FrameType]
    ERROR: _ClassVar[FrameType]
    NOTIFY: _ClassVar[FrameType]
    CANCEL: _ClassVar[FrameType]
    HEARTBEAT: _ClassVar[FrameType]
    HEARTBEAT_ACK: _ClassVar[FrameType]
    HANDSHAKE: _ClassVar[FrameType]
    HANDSHAKE_ACK: _ClassVar[FrameType]
    CHUNK: _ClassVar[FrameType]
    GOODBYE: _ClassVar[FrameType]
    PROBE: _ClassVar[FrameType]
    PROBE_ACK: _ClassVar[FrameType]
FRAME_TYPE_UNSPECIFIED: FrameType
REQUEST: FrameType
RESPONSE: FrameType
ERROR: FrameType
NOTIFY: FrameType
CANCEL: FrameType
HEARTBEAT: FrameType
HEARTBEAT_ACK: FrameType
HANDSHAKE: FrameType
HANDSHAKE_ACK: FrameType
CHUNK: FrameType
GOODBYE: FrameType
PROBE: FrameType
PROBE_ACK: FrameType

class ErrorInfo(_message.Message):
    __slots__ = ("code", "message", "traceback")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TRACEBACK_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    traceback: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., traceback: _Optional[str] = ...) -> None: ...

class Handshake(_message.Message):
    __slots__ = ("node_id", "protocol_version", "expected_node_id", "address", "refused", "nonce", "proof", "challenge", "code")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    CHALLENGE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    protocol_version: int
    expected_node_id: str
    address: str
    refused: str
    nonce: bytes
    proof: bytes
    challenge: bool
    code: str
    def __init__(self, node_id: _Optional[str] = ..., protocol_version: _Optional[int] = ..., expected_node_id: _Optional[str] = ..., address: _Optional[str] = ..., refused: _Optional[str] = ..., nonce: _Optional[bytes] = ..., proof: _Optional[bytes] = ..., challenge: _Optional[bool] = ..., code: _Optional[str] = ...) -> None: ...

class Envelope(_message.Message):
    __slots__ = ("type", "id", "method", "payload", "serializer", "metadata", "deadline", "error", "transfer", "total_size", "handshake", "reason")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SERIALIZER_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    HANDSHAKE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    type: FrameType
    id: int
    method: str
    payload: bytes
    serializer: str
    metadata: _containers.ScalarMap[str, str]
    deadline: float
    error: ErrorInfo
    transfer: int
    total_size: int
    handshake: Handshake
    reason: str
    def __init__(self, type: _Optional[_Union[FrameType, str]] = ..., id: _Optional[int] = ..., method: _Optional[str] = ..., payload: _Optional[bytes] = ..., serializer: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., deadline: _Optional[float] = ..., error: _Optional[_Union[ErrorInfo, _Mapping]] = ..., transfer: _Optional[int] = ..., total_size: _Optional[int] = ..., handshake: _Optional[_Union[Handshake, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class Batch(_message.Message):
    __slots__ = ("frames",)
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedCompositeFieldContainer[Envelope]
    def __init__(self, frames: _Optional[_Iterable[_Union[Envelope, _Mapping]]] = ...) -> None: ...
