"""Chunked payloads being received: the node-wide byte budget and one transfer's buffer."""

from __future__ import annotations

from typing import Any

#: Refused or dropped transfers a link remembers (to skip their remaining chunks quietly and to
#: refuse a head that reuses their id); the oldest is forgotten past this.
MAX_DROPPED = 256


class ReceiveBudget:
    """Bytes of chunked payloads being reassembled on this node, across all its connections
    (``transport.grpc.max_receive_buffer``). A transfer takes its announced size when its head
    arrives and gives it back when it completes, is aborted, stalls or its link closes."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, n: int) -> bool:
        """Reserve ``n`` bytes; False (nothing reserved) when that would pass the limit."""
        if self.used + n > self.limit:
            return False
        self.used += n
        return True

    def give(self, n: int) -> None:
        self.used -= n


class Partial:
    """A chunked payload being reassembled. Its buffer holds only the bytes that arrived: it grows
    with each chunk (amortized, in place where the allocator can), never to the announced size
    ahead of the data, and each chunk is freed once copied, so a payload of N bytes never needs 2N."""

    __slots__ = ("buf", "env", "got", "last", "total")

    def __init__(self, env: Any, total: int, now: float) -> None:
        self.env = env
        self.total = total
        self.got = 0
        self.last = now  # loop time of the last progress (head or chunk)
        self.buf: bytearray | bytes | None = None

    def add(self, data: bytes | memoryview) -> None:
        """Append one chunk (the caller checked it fits in ``total``)."""
        buf = self.buf
        if buf is None:
            if len(data) == self.total:  # a single chunk: keep it as is, no copy of bytes
                self.buf = data if isinstance(data, bytes) else data.tobytes()
            else:
                self.buf = bytearray(data)
        else:
            assert isinstance(buf, bytearray)
            buf += data
        self.got += len(data)

    def payload(self) -> bytes | bytearray:
        buf = self.buf if self.buf is not None else b""
        self.buf = None
        return buf
