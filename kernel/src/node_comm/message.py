"""The one message shape every transport carries."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, field


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
