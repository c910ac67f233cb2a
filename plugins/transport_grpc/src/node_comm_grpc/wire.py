"""The wire format: protocol constants, ``Batch`` framing, and ``Message`` -> ``Envelope`` encoding.

Every gRPC message on a ``Connect`` stream is a ``Batch`` of ``Envelope`` frames. A batch is built by
concatenating ready-made ``Batch.frames`` entries (tag, length, encoded envelope), so a large payload
chunk can be sent verbatim without copying it into a protobuf object. See ``proto/node_comm.proto``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from google.protobuf.message import DecodeError

from node_comm import Message, MessageType

from .proto import node_comm_pb2 as pb

PROTOCOL_VERSION = 1
SERVICE = "node_comm.v1.NodeComm"
METHOD = f"/{SERVICE}/Connect"

Envelope = pb.Envelope
Batch = pb.Batch
#: Frame type number -> message type (MessageType values are FrameType numbers 1..7).
MESSAGE_TYPES = {int(t): t for t in MessageType}
F_HANDSHAKE = pb.HANDSHAKE
F_HANDSHAKE_ACK = pb.HANDSHAKE_ACK
F_CHUNK = pb.CHUNK
F_GOODBYE = pb.GOODBYE
F_PROBE = pb.PROBE
F_PROBE_ACK = pb.PROBE_ACK
FRAME_OVERHEAD = 256 * 1024  # room for method, metadata, error text beside a payload in one frame


def varint(n: int) -> bytes:
    """``n`` as a protobuf base-128 varint."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def item(env_bytes: bytes) -> tuple[bytes, bytes]:
    """One ``Batch.frames`` entry: field tag, length, the encoded envelope."""
    return b"\x0a" + varint(len(env_bytes)), env_bytes


def batch_bytes(*envs: Any) -> bytes:
    """A whole encoded ``Batch`` of ``envs`` (handshake frames, sent before a link exists)."""
    data: bytes = Batch(frames=list(envs)).SerializeToString()
    return data


def encode(msg: Message, payload: bytes, transfer: int = 0, total: int = 0) -> bytes:
    """The encoded envelope of ``msg`` (hot path: set only what is present)."""
    mtype: Any = int(msg.type)  # MessageType values are FrameType numbers 1..7
    env = Envelope(
        type=mtype,
        id=msg.id,
        method=msg.method,
        payload=payload,
        serializer=msg.serializer,
        transfer=transfer,
        total_size=total,
    )
    if msg.metadata:
        env.metadata.update(msg.metadata)
    if msg.deadline is not None:
        env.deadline = msg.deadline
    err = msg.error
    if err is not None:
        e = env.error
        e.code = err.code
        e.message = err.message
        if err.traceback is not None:
            e.traceback = err.traceback
    data: bytes = env.SerializeToString()
    return data


def error_frame(msg_id: int, code: str, message: str, method: str = "") -> Any:
    """An ``ERROR`` envelope answering message ``msg_id`` (bad or too large input)."""
    return Envelope(type=pb.ERROR, id=msg_id, method=method, error=pb.ErrorInfo(code=code, message=message))


#: Payloads from this size on are appended to their encoded envelope as a raw ``payload`` field
#: instead of going through protobuf, which would copy them twice (into the message, then out).
INLINE_PAYLOAD_MIN = 16 * 1024


def inline_payload_item(head: bytes, payload: bytes) -> tuple[tuple[bytes, bytes, bytes, bytes], int]:
    """Batch entry of an envelope encoded without its payload (``head``) plus the payload as field 4,
    verbatim; returns the parts (joined once by the writer) and their total size."""
    field = b"\x22" + varint(len(payload))
    body = len(head) + len(field) + len(payload)
    prefix = b"\x0a" + varint(body)
    return (prefix, head, field, payload), len(prefix) + body


def inline_parts_item(head: bytes, buffers: Sequence[bytes | memoryview], n: int) -> tuple[tuple[Any, ...], int]:
    """:func:`inline_payload_item` of a payload given as ``buffers`` (``n`` bytes in all), which
    the writer joins into its batch once, with no join before."""
    field = b"\x22" + varint(n)
    body = len(head) + len(field) + n
    prefix = b"\x0a" + varint(body)
    return (prefix, head, field, *buffers), len(prefix) + body


def split_chunks(buffers: Sequence[bytes | memoryview], step: int) -> Iterator[list[memoryview]]:
    """The pieces of each ``step``-byte chunk of the payload ``b"".join(buffers)`` (the last may
    be shorter): views of the buffers, a chunk boundary falling inside or between them."""
    pieces: list[memoryview] = []
    room = step
    for buf in buffers:
        view = memoryview(buf)
        off, n = 0, len(view)
        while off < n:
            take = min(room, n - off)
            pieces.append(view[off : off + take])
            off += take
            room -= take
            if room == 0:
                yield pieces
                pieces, room = [], step
    if pieces:
        yield pieces


def chunk_header(transfer: int, size: int) -> tuple[bytes, int]:
    """Batch entry prefix of a CHUNK frame whose payload (``size`` bytes) follows verbatim."""
    env_head = b"\x08\x0a\x48" + varint(transfer) + b"\x22" + varint(size)
    prefix = b"\x0a" + varint(len(env_head) + size) + env_head
    return prefix, len(prefix) + size


#: Batches from this size on are split by :func:`scan_batch` (they carry chunks); smaller ones are
#: parsed whole by protobuf, which is faster for many small frames.
SCAN_BATCH_MIN = 256 * 1024
_CHUNK_HEAD = b"\x08\x0a\x48"  # type = CHUNK, then field 9 (transfer)


def _read_varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise DecodeError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def scan_batch(data: bytes) -> list[Any]:
    """The frames of an encoded ``Batch``: a CHUNK frame as written by :func:`chunk_header` comes
    back as ``(transfer, memoryview of its bytes)`` (no copy); a frame of ``INLINE_PAYLOAD_MIN``
    bytes or more whose payload is its last field (:func:`inline_payload_item`) as ``(Envelope
    without its payload, payload bytes)`` (one copy of the payload, not three); any other frame as
    an ``Envelope``. Raises ``DecodeError`` for bytes that are not a Batch."""
    view = memoryview(data)
    end = len(view)
    pos = 0
    out: list[Any] = []
    while pos < end:
        if view[pos] != 0x0A:
            raise DecodeError("not a node_comm Batch")
        size, pos = _read_varint(view, pos + 1)
        stop = pos + size
        if stop > end:
            raise DecodeError("truncated frame")
        if view[pos : pos + 3] == _CHUNK_HEAD:
            transfer, p = _read_varint(view, pos + 3)
            if p < stop and view[p] == 0x22:
                n, p = _read_varint(view, p + 1)
                if p + n == stop:
                    out.append((transfer, view[p:stop]))
                    pos = stop
                    continue
        if size >= INLINE_PAYLOAD_MIN:
            split = _trailing_payload(view, pos, stop)
            if split is not None:  # parse the head alone; the payload is copied once, into bytes
                tag, at = split
                out.append((Envelope.FromString(view[pos:tag].tobytes()), view[at:stop].tobytes()))
                pos = stop
                continue
        out.append(Envelope.FromString(view[pos:stop].tobytes()))
        pos = stop
    return out


def _trailing_payload(view: memoryview, pos: int, stop: int) -> tuple[int, int] | None:
    """``(tag, data)``: where the ``payload`` field (4) of the envelope in ``view[pos:stop]`` starts
    and where its bytes start, when it is the last field (as :func:`inline_payload_item` writes
    it): the rest of the envelope is then ``view[pos:tag]``. ``None``: parse it whole. Walks the
    field tags only, never the bytes of the fields."""
    while pos < stop:
        tag, p = _read_varint(view, pos)
        wire = tag & 7
        if wire == 0:
            _, p = _read_varint(view, p)
        elif wire == 1:
            p += 8
        elif wire == 5:
            p += 4
        elif wire == 2:
            n, p = _read_varint(view, p)
            if tag == 0x22 and p + n == stop:
                return pos, p
            p += n
        else:
            return None
        if p > stop:
            raise DecodeError("truncated field")
        pos = p
    return None


def first_frame(data: bytes) -> tuple[Any, bytes]:
    """The first frame of an encoded ``Batch`` and the undecoded bytes of the rest: a handshake is
    checked before any other frame of its message is parsed. Raises ``DecodeError``."""
    view = memoryview(data)
    if not view or view[0] != 0x0A:
        raise DecodeError("not a node_comm Batch")
    size, pos = _read_varint(view, 1)
    stop = pos + size
    if stop > len(view):
        raise DecodeError("truncated frame")
    return Envelope.FromString(view[pos:stop].tobytes()), bytes(view[stop:])
