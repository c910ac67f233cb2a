"""Chunked payloads: reassembly on the receiving side (bounded node-wide) and flow-control state on
the sending side.

A payload larger than one NATS message travels as a head frame (message fields, ``transfer`` id,
total size, the sender's flow window) and ``CHUNK`` frames carrying their offset. A broadcast's
chunks go to a subject of their own that only its targets subscribe to (each says so with a
``CHUNK_ACK`` of 0 bytes before the first chunk is sent), so nodes it is not for never receive them. The receiver
copies each chunk straight into one buffer of the announced size and acknowledges every half window
(``CHUNK_ACK`` with the bytes received); the sender keeps at most one window unacknowledged per
receiver, so neither side's memory grows with the payload beyond that buffer, and a receiver that
stops reading stops the sender instead of being flooded (NATS itself has no back-pressure).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from node_comm import MessageType

#: Chunked payloads one node may be receiving at once, from all peers together.
MAX_TRANSFERS = 1024


@dataclass(slots=True)
class Incoming:
    """A chunked payload being reassembled in place."""

    source: str
    mtype: MessageType
    id: int
    method: str
    serializer: str
    deadline: float | None
    metadata: dict[str, str]
    total: int
    window: int
    got: int = 0
    acked: int = 0
    buf: bytearray | bytes | None = None  # allocated by the first chunk
    touched: float = field(default_factory=time.monotonic)
    #: The subscription to a broadcast's own chunk subject, closed when the transfer ends.
    sub: Any = None


class Receiving:
    """Every chunked payload this node is receiving, within one node-wide byte budget."""

    def __init__(self, budget: int, on_drop: Callable[[Incoming], None] | None = None) -> None:
        self.budget = budget
        #: Called with every transfer that ends (complete or dropped).
        self.on_drop = on_drop
        self.buffered = 0
        self.transfers: dict[tuple[str, int], Incoming] = {}

    def refusal(self, total: int, limit: int, what: str, source: str, node_id: str) -> str | None:
        """Why a new transfer of ``total`` bytes cannot be taken now, or ``None`` when it can."""
        if total > limit:
            return (
                f"payload of {what} from {source!r} is {total} bytes, over max_payload_size={limit} of node {node_id!r}"
            )
        if self.buffered + total > self.budget:
            return (
                f"node {node_id!r} is already receiving {self.buffered} bytes of large payloads; "
                f"{total} more would pass max_receive_buffer={self.budget}"
            )
        if len(self.transfers) >= MAX_TRANSFERS:
            return f"node {node_id!r} is already receiving {MAX_TRANSFERS} large payloads"
        return None

    def begin(self, transfer: int, inc: Incoming) -> bool:
        """Take transfer ``transfer`` of ``inc.source``; ``False`` when that id is in use already."""
        key = (inc.source, transfer)
        if key in self.transfers:
            return False
        self.transfers[key] = inc
        self.buffered += inc.total
        return True

    def add(self, source: str, transfer: int, offset: int, data: bytes | memoryview) -> Incoming | bool | None:
        """Copy one chunk into place. Returns the transfer when it is complete (removed), ``True`` when
        more is expected, ``None`` for an unknown transfer, ``False`` for a chunk out of place (the
        transfer is dropped)."""
        inc = self.transfers.get((source, transfer))
        if inc is None:
            return None
        got = inc.got
        end = got + len(data)
        if offset != got or end > inc.total:
            self.drop(source, transfer)
            return False
        if inc.buf is None:
            if end == inc.total:  # the whole payload in one chunk: one copy, no buffer
                inc.buf = bytes(data)
                inc.got = end
                self.drop(source, transfer)
                return inc
            inc.buf = bytearray(inc.total)
        buf = inc.buf
        assert isinstance(buf, bytearray)
        buf[got:end] = data
        inc.got = end
        inc.touched = time.monotonic()
        if end == inc.total:
            self.drop(source, transfer)
            return inc
        return True

    def drop(self, source: str, transfer: int) -> Incoming | None:
        inc = self.transfers.pop((source, transfer), None)
        if inc is not None:
            self.buffered -= inc.total
            if self.on_drop is not None:
                self.on_drop(inc)
        return inc

    def drop_peer(self, source: str) -> None:
        for key in [k for k in self.transfers if k[0] == source]:
            self.drop(*key)

    def stalled(self, timeout: float) -> list[tuple[int, Incoming]]:
        """Drop and return transfers that made no progress for ``timeout`` seconds."""
        limit = time.monotonic() - timeout
        out = []
        for (source, transfer), inc in list(self.transfers.items()):
            if inc.touched < limit:
                self.drop(source, transfer)
                out.append((transfer, inc))
        return out

    def clear(self) -> None:
        for source, transfer in list(self.transfers):
            self.drop(source, transfer)


class Outgoing:
    """Flow-control state of one chunked payload being sent: bytes acknowledged per receiver, and
    why a receiver left (``refused`` it, ``stalled``, link ``lost``)."""

    __slots__ = ("acked", "gone", "wake")

    def __init__(self, receivers: list[str], *, ready: bool = True) -> None:
        #: -1 until a receiver said it is ready (subscribed to a broadcast's chunk subject).
        self.acked: dict[str, int] = dict.fromkeys(receivers, 0 if ready else -1)
        self.gone: dict[str, str] = {}
        self.wake = asyncio.Event()

    def ack(self, peer: str, got: int) -> None:
        if peer in self.acked and got > self.acked[peer]:
            self.acked[peer] = got
            self.wake.set()

    def leave(self, peer: str, why: str) -> None:
        if self.acked.pop(peer, None) is not None:
            self.gone[peer] = why
            self.wake.set()

    def slowest(self) -> int:
        return min(self.acked.values())

    def blocked(self, offset: int, window: int) -> bool:
        """Whether sending the chunk at ``offset`` must wait: a receiver is not ready, or the slowest
        is a whole window behind."""
        slowest = self.slowest()
        return slowest < 0 or offset - slowest >= window
