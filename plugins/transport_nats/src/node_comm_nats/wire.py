"""The wire: subjects, and the binary frame every NATS message of this transport carries.

Subjects (``P`` is ``subject_prefix``; node ids are subject tokens, see :func:`token`):

* ``P.node.TARGET.SOURCE`` — every frame from SOURCE to TARGET. TARGET subscribes ``P.node.TARGET.*``
  and reads the sender from the subject, so a broker that limits each user's publish permissions
  to ``P.node.*.ITS_ID`` makes node ids unforgeable.
* ``P.bcast.SOURCE.G`` — SOURCE's small broadcasts to the targets in group G (each node subscribes
  ``P.bcast.*.G`` for its own group, told in the handshake); the frame names the targets and
  their call ids, and a node acts only on one that names it, from a peer it is linked to.
* ``P.xfer.SOURCE.N`` — the chunks of SOURCE's broadcast N, read by its targets only (each got
  its own head frame on its node subject first).

A frame is a fixed header, then method, serializer, an optional JSON ``extra`` (metadata, error,
flow window, handshake fields) and the payload, so the common small call needs no JSON and
a payload is sliced, never re-encoded. Nothing in a frame is trusted: :func:`decode` checks every
length and type, and raises :class:`BadFrame` for anything else.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any

from node_comm import ErrorInfo, Message, MessageType

VERSION = 1
# version, kind, method length, id, deadline (NaN: none), transfer, size/offset, serializer length,
# extra length
_HEAD = struct.Struct("!BBHQdIQBI")
HEAD_SIZE = _HEAD.size

HELLO = 16
HELLO_ACK = 17
GOODBYE = 18
CHUNK = 19
CHUNK_ACK = 20
ABORT = 21
PROBE = 22
#: A small broadcast: one message to a group subject, naming its targets and their call ids.
BCAST = 23
#: Small frames to one peer queued while a publish to it was pending, in one NATS message: the
#: payload is each frame after its 4-byte length.
BATCH = 24
_LEN = struct.Struct("!I")
#: Most targets one group broadcast frame may name.
MAX_BCAST_TARGETS = 65536
MESSAGE_TYPES = {int(t): t for t in MessageType}
#: Largest ``extra`` a frame may carry (broadcast target lists of thousands of nodes fit).
MAX_EXTRA = 4 * 1024 * 1024
_NAN = float("nan")


class BadFrame(ValueError):
    """Bytes that are not a frame of this protocol."""


def token(node_id: str) -> str:
    """``node_id`` as one subject token: kept when it is letters, digits, ``_`` and ``-``; else
    ``~`` and its UTF-8 in hex (ids with dots, spaces or wildcards stay distinct and legal)."""
    if node_id and all(c.isascii() and (c.isalnum() or c in "_-") for c in node_id):
        return node_id
    return "~" + node_id.encode("utf-8").hex()


def untoken(tok: str) -> str | None:
    """The node id a subject token names, or ``None`` for a malformed one."""
    if tok.startswith("~"):
        try:
            return bytes.fromhex(tok[1:]).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
    return tok or None


@dataclass(slots=True)
class Frame:
    kind: int
    id: int
    method: str
    serializer: str
    deadline: float | None
    transfer: int
    size: int  # payload size of a transfer head; offset of a CHUNK; bytes received in a CHUNK_ACK
    extra: dict[str, Any]
    payload: bytes | memoryview


def encode(
    kind: int,
    *,
    id: int = 0,
    method: str = "",
    serializer: str = "",
    deadline: float | None = None,
    transfer: int = 0,
    size: int = 0,
    extra: dict[str, Any] | None = None,
    payload: bytes | memoryview = b"",
) -> bytes:
    """One frame as bytes (the payload is copied once, into the frame)."""
    m = method.encode("utf-8")
    s = serializer.encode("utf-8")
    x = json.dumps(extra, separators=(",", ":")).encode("utf-8") if extra else b""
    if len(m) > 0xFFFF or len(s) > 0xFF:
        raise ValueError("method or serializer name too long")
    head = _HEAD.pack(VERSION, kind, len(m), id, _NAN if deadline is None else deadline, transfer, size, len(s), len(x))
    return b"".join((head, m, s, x, payload))


def message_extra(msg: Message) -> dict[str, Any] | None:
    """The ``extra`` of a frame carrying ``msg``: metadata and error, when present."""
    extra: dict[str, Any] = {}
    if msg.metadata:
        extra["md"] = msg.metadata
    err = msg.error
    if err is not None:
        extra["err"] = [err.code, err.message, err.traceback]
    return extra or None


def encode_message(msg: Message, *, transfer: int = 0, size: int = 0, with_payload: bool = True) -> bytes:
    """The frame of ``msg`` (a transfer head, without payload, when ``transfer`` is set)."""
    return encode(
        int(msg.type),
        id=msg.id,
        method=msg.method,
        serializer=msg.serializer,
        deadline=msg.deadline,
        transfer=transfer,
        size=size,
        extra=message_extra(msg),
        payload=msg.payload if with_payload else b"",
    )


def decode(data: bytes) -> Frame:
    """Parse a frame; the payload of a ``CHUNK`` is a view of ``data`` (no copy), any other a copy."""
    if len(data) < HEAD_SIZE:
        raise BadFrame(f"frame of {len(data)} bytes is shorter than the {HEAD_SIZE}-byte header")
    version, kind, mlen, ident, deadline, transfer, size, slen, xlen = _HEAD.unpack_from(data)
    if version != VERSION:
        raise BadFrame(f"protocol version {version} is not supported (this node speaks {VERSION})")
    pos = HEAD_SIZE
    end = pos + mlen + slen + xlen
    if xlen > MAX_EXTRA or end > len(data):
        raise BadFrame("frame lengths exceed the frame")
    try:
        method = data[pos : pos + mlen].decode("utf-8")
        pos += mlen
        serializer = data[pos : pos + slen].decode("utf-8")
        pos += slen
        extra = json.loads(data[pos:end]) if xlen else {}
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadFrame(f"malformed frame: {exc}") from None
    if not isinstance(extra, dict):
        raise BadFrame("frame extra is not a mapping")
    if math.isnan(deadline):
        dl: float | None = None
    elif math.isfinite(deadline) and deadline >= 0:
        dl = deadline
    else:
        raise BadFrame(f"frame deadline {deadline!r} is not a time budget")
    payload: bytes | memoryview = memoryview(data)[end:] if kind == CHUNK else data[end:]
    return Frame(kind, ident, method, serializer, dl, transfer, size, extra, payload)


def _str_map(value: Any) -> dict[str, str] | None:
    if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return value
    return None


def encode_batch(frames: list[bytes]) -> bytes:
    """One ``BATCH`` frame carrying ``frames``."""
    parts = [encode(BATCH)]
    for f in frames:
        parts.append(_LEN.pack(len(f)))
        parts.append(f)
    return b"".join(parts)


def split_batch(payload: bytes | memoryview) -> list[Frame]:
    """The frames of a ``BATCH`` payload; raises :class:`BadFrame` for a malformed one, or one that
    carries anything but messages (no handshakes, transfers or nested batches)."""
    out = []
    view = memoryview(payload)
    pos, end = 0, len(view)
    while pos < end:
        if end - pos < _LEN.size:
            raise BadFrame("batch ends inside a length")
        (n,) = _LEN.unpack_from(view, pos)
        pos += _LEN.size
        if n > end - pos:
            raise BadFrame("batch frame length exceeds the batch")
        frame = decode(bytes(view[pos : pos + n]))
        pos += n
        if frame.kind not in MESSAGE_TYPES or frame.transfer:
            raise BadFrame(f"a batch carries small messages only, not kind {frame.kind}")
        out.append(frame)
    return out


def bcast_call_id(extra: dict[str, Any], node_id: str) -> int | None:
    """The call id a group broadcast's target list gives ``node_id`` (``None``: not named); raises
    :class:`BadFrame` for a list that is not ``[[node_id, call_id], ...]`` within bounds."""
    to = extra.get("to")
    if not isinstance(to, list) or len(to) > MAX_BCAST_TARGETS:
        raise BadFrame("broadcast target list is missing, malformed or too long")
    for entry in to:
        if not isinstance(entry, list) or len(entry) != 2:
            raise BadFrame("broadcast target list is malformed")
        if entry[0] == node_id:
            ident = entry[1]
            if isinstance(ident, bool) or not isinstance(ident, int) or not 0 <= ident < 1 << 64:
                raise BadFrame("broadcast call id is not an integer")
            return ident
    return None


def metadata_of(extra: dict[str, Any]) -> dict[str, str]:
    """Metadata of a frame; raises :class:`BadFrame` when it is not a str -> str mapping."""
    md = extra.get("md")
    if md is None:
        return {}
    checked = _str_map(md)
    if checked is None:
        raise BadFrame("frame metadata is not a mapping of strings")
    return checked


def error_of(extra: dict[str, Any]) -> ErrorInfo | None:
    """Error info of a frame; raises :class:`BadFrame` when malformed."""
    err = extra.get("err")
    if err is None:
        return None
    if (
        not isinstance(err, list)
        or len(err) != 3
        or not isinstance(err[0], str)
        or not isinstance(err[1], str)
        or not (err[2] is None or isinstance(err[2], str))
    ):
        raise BadFrame("frame error is malformed")
    return ErrorInfo(err[0], err[1], err[2])
