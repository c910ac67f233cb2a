"""The loopback ceiling: a raw asyncio TCP echo of the same bytes, no framework and no encoding.

A message is an 8-byte big-endian length, then the bytes. Both ends use the event loop's socket
calls on a non-blocking socket: ``sock_recv_into`` straight into a buffer preallocated once and
reused from message to message, ``sock_sendall`` straight from it (the kernel copies; nothing else
does). Two Python processes moving bytes over 127.0.0.1 with asyncio cannot go faster than this;
the large-payload figures are also measured against it (issue 9: node-comm >= 0.3x at 64 MiB)."""

from __future__ import annotations

import asyncio
import contextlib
import socket

_HEAD = 8
#: The largest message the server takes (the bench sends 1 GiB at most); past it, it hangs up.
MAX_MESSAGE = 2 << 30


async def _read_exactly(sock: socket.socket, view: memoryview) -> None:
    loop = asyncio.get_running_loop()
    got, n = 0, len(view)
    while got < n:
        k = await loop.sock_recv_into(sock, view[got:])
        if k == 0:
            raise ConnectionError("raw TCP echo: the other end closed the connection")
        got += k


class _Buffer:
    """A receive buffer reused while messages keep their size."""

    def __init__(self) -> None:
        self.head = bytearray(_HEAD)
        self.body = bytearray()

    async def read(self, sock: socket.socket) -> memoryview:
        await _read_exactly(sock, memoryview(self.head))
        n = int.from_bytes(self.head, "big")
        if n > MAX_MESSAGE:
            raise ConnectionError(f"raw TCP echo: a message of {n} bytes is over {MAX_MESSAGE}")
        if len(self.body) != n:
            self.body = bytearray(n)
        view = memoryview(self.body)
        await _read_exactly(sock, view)
        return view


async def _serve(conn: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    buf = _Buffer()
    with contextlib.suppress(ConnectionError, OSError), conn:
        while True:
            body = await buf.read(conn)
            await loop.sock_sendall(conn, len(body).to_bytes(_HEAD, "big"))
            await loop.sock_sendall(conn, body)


class TcpEchoServer:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.task = asyncio.ensure_future(self._accept())
        self.conns: set[asyncio.Task[None]] = set()

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(self.sock)
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = asyncio.ensure_future(_serve(conn))
            self.conns.add(task)
            task.add_done_callback(self.conns.discard)

    def close(self) -> None:
        self.task.cancel()
        for task in list(self.conns):
            task.cancel()
        self.sock.close()


async def start_tcp_server(host: str = "127.0.0.1") -> tuple[TcpEchoServer, str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen()
    sock.setblocking(False)
    return TcpEchoServer(sock), f"{host}:{sock.getsockname()[1]}"


class TcpEchoClient:
    """One connection; :meth:`echo` sends ``data`` and returns the server's copy (a view of a
    buffer that the next echo reuses)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._sock: socket.socket | None = None
        self._buf = _Buffer()

    async def echo(self, data: bytes) -> memoryview:
        loop = asyncio.get_running_loop()
        sock = self._sock
        if sock is None:
            host, port = self.address.rsplit(":", 1)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            await loop.sock_connect(sock, (host, int(port)))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock = sock
        await loop.sock_sendall(sock, len(data).to_bytes(_HEAD, "big"))
        await loop.sock_sendall(sock, data)
        return await self._buf.read(sock)

    async def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
