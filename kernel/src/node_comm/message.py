"""The one message shape every transport carries."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


class MessageType(enum.IntEnum):
    """What a frame is; values are stable wire numbers."""

    REQUEST = 1
    RESPONSE = 2
    ERROR = 3
    NOTIFY = 4
    CANCEL = 5
    HEARTBEAT = 6
    HEARTBEAT_ACK = 7


@dataclass(slots=True)
class ErrorInfo:
    """Why a request failed: an :class:`~node_comm.exceptions.ErrorCode` value, a message, and a
    traceback only when the serving node runs with ``debug: true``."""

    code: str
    message: str
    traceback: str | None = None


#: ``progress(direction, done, total)``: ``direction`` is ``"sent"`` or ``"received"``, ``done`` and
#: ``total`` are payload bytes; the last call has ``done == total``.
ProgressCallback = Callable[[str, int, int], None]

log = logging.getLogger("node_comm.node")


def report_progress(progress: ProgressCallback, direction: str, done: int, total: int) -> None:
    """Call a user's progress callback; its exceptions are logged, never raised into the transfer."""
    try:
        progress(direction, done, total)
    except Exception:
        log.exception("progress callback failed")


@dataclass(slots=True)
class Message:
    """A request, response, error, notify, cancel or heartbeat between two nodes.

    ``payload`` is always bytes produced by the serializer named in ``serializer``, in memory mode
    too (a transport may hand over a ``bytearray`` it reassembled a large payload in; serializers
    must accept any bytes-like buffer). ``deadline`` is the time budget in seconds left when the
    message was sent (relative, so clocks of two machines never need to agree), or ``None``.
    ``progress`` is local to the sending node and never travels: a transport that sends the payload
    in chunks calls ``progress("sent", done, total)`` as they go.
    """

    id: int
    type: MessageType
    source: str
    target: str
    method: str = ""
    payload: bytes = b""
    serializer: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    error: ErrorInfo | None = None
    deadline: float | None = None
    progress: ProgressCallback | None = None

    def copy(self) -> Message:
        """A copy safe to hand to another node: payload bytes are immutable, metadata is copied."""
        return Message(
            self.id,
            self.type,
            self.source,
            self.target,
            self.method,
            self.payload,
            self.serializer,
            dict(self.metadata),
            self.error,
            self.deadline,
        )


class PayloadParts:
    """An encoded payload as a list of buffers (scatter-gather): a serializer's
    :meth:`~node_comm.Serializer.serialize_parts`, e.g. a small header and the memory of numpy arrays
    (out-of-band, not copied). The payload is ``b"".join(buffers)``; :attr:`nbytes` is its size,
    known without joining. Buffers are ``bytes`` or flat byte ``memoryview``s; empty ones are dropped.
    The views borrow the objects' memory: valid while they are not changed."""

    __slots__ = ("buffers", "nbytes")

    def __init__(self, buffers: Iterable[Any]) -> None:
        bufs: list[bytes | memoryview] = []
        size = 0
        for b in buffers:
            if type(b) is not bytes:
                b = memoryview(b)
                if b.ndim != 1 or b.format != "B":
                    b = b.cast("B")  # a flat byte view, so len() counts bytes
            n = len(b)
            if n:
                bufs.append(b)
                size += n
        self.buffers: tuple[bytes | memoryview, ...] = tuple(bufs)
        self.nbytes = size

    def join(self) -> bytes:
        """The payload as one ``bytes`` (one copy of every buffer)."""
        return b"".join(self.buffers)

    def __len__(self) -> int:
        return self.nbytes

    def __repr__(self) -> str:
        return f"<PayloadParts {len(self.buffers)} buffers, {self.nbytes} bytes>"


_PAYLOAD_SLOT: Any = Message.__dict__["payload"]  # the slot PartsMessage.payload stores into


class PartsMessage(Message):
    """A :class:`Message` whose payload is a :class:`PayloadParts`, handed to a transport that
    declares :attr:`~node_comm.Transport.scatter_gather` (it sends :attr:`parts` without joining).

    Built like a ``Message`` with the ``PayloadParts`` as ``payload``. Whoever reads ``payload``
    (an interceptor that signs or logs the bytes, a transport that does not gather) gets the joined
    ``bytes``, joined once on first read; :attr:`parts` is ``None`` from then on. Sizes need no
    join: :func:`payload_size`."""

    __slots__ = ("parts",)

    parts: PayloadParts | None

    @property
    def payload(self) -> bytes:
        parts = self.parts
        if parts is not None:
            joined = parts.join()
            _PAYLOAD_SLOT.__set__(self, joined)
            self.parts = None
            return joined
        data: bytes = _PAYLOAD_SLOT.__get__(self, PartsMessage)
        return data

    @payload.setter
    def payload(self, value: bytes | PayloadParts) -> None:
        if isinstance(value, PayloadParts):
            self.parts = value
            _PAYLOAD_SLOT.__set__(self, b"")
        else:
            self.parts = None
            _PAYLOAD_SLOT.__set__(self, value)

    def __repr__(self) -> str:
        if self.parts is None:
            return super().__repr__()
        return (
            f"PartsMessage(id={self.id}, type={self.type!r}, target={self.target!r}, "
            f"method={self.method!r}, payload={self.parts!r})"
        )


def payload_size(msg: Message) -> int:
    """Bytes of ``msg``'s payload, without joining a :class:`PartsMessage`'s parts."""
    if type(msg) is PartsMessage and msg.parts is not None:
        return msg.parts.nbytes
    return len(msg.payload)


def payload_buffers(msg: Message) -> tuple[bytes | memoryview, ...] | tuple[bytes]:
    """``msg``'s payload as buffers whose concatenation is the payload (the parts of a
    :class:`PartsMessage`, without joining; else ``(msg.payload,)``): for hashing or writing."""
    if type(msg) is PartsMessage and msg.parts is not None:
        return msg.parts.buffers
    return (msg.payload,)
