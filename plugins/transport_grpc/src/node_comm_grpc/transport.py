"""The ``grpc`` transport: symmetric peers over one bidirectional gRPC stream per connection.

Every connection is one ``node_comm.v1.NodeComm/Connect`` stream. Each gRPC message on it is a
``Batch`` of ``Envelope`` frames: a writer task per connection drains an outbound queue and sends
everything queued as one message. Payloads larger than ``chunk_size`` travel as a head frame plus
``CHUNK`` frames, interleaved with other traffic. See ``proto/node_comm.proto`` for the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import grpc
from google.protobuf.message import DecodeError
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from node_comm import (
    ConfigError,
    ConnectFailedError,
    ErrorCode,
    ErrorInfo,
    Message,
    MessageType,
    NodeNotConnectedError,
    PayloadTooLargeError,
    Transport,
    TransportHost,
)

from .config import GrpcTransportConfig, TlsConfig
from .proto import node_comm_pb2 as pb

log = logging.getLogger("node_comm.grpc")

PROTOCOL_VERSION = 1
SERVICE = "node_comm.v1.NodeComm"
METHOD = f"/{SERVICE}/Connect"

_Envelope = pb.Envelope
_Batch = pb.Batch
_MESSAGE_TYPES = {int(t): t for t in MessageType}
_REQUEST = MessageType.REQUEST
_RESPONSE = MessageType.RESPONSE
_ERROR = MessageType.ERROR
_NOTIFY = MessageType.NOTIFY
_F_HANDSHAKE = pb.HANDSHAKE
_F_HANDSHAKE_ACK = pb.HANDSHAKE_ACK
_F_CHUNK = pb.CHUNK
_F_GOODBYE = pb.GOODBYE
_FRAME_OVERHEAD = 256 * 1024  # room for method, metadata, error text beside a payload in one frame
_HEARTBEAT_REASON = "heartbeat timeout"


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _item(env_bytes: bytes) -> tuple[bytes, bytes]:
    """One ``Batch.frames`` entry: field tag, length, the encoded envelope."""
    return b"\x0a" + _varint(len(env_bytes)), env_bytes


def _batch_bytes(*envs: Any) -> bytes:
    data: bytes = _Batch(frames=list(envs)).SerializeToString()
    return data


def _encode(msg: Message, payload: bytes, transfer: int = 0, total: int = 0) -> bytes:
    """The encoded envelope of ``msg`` (hot path: set only what is present)."""
    mtype: Any = int(msg.type)  # MessageType values are FrameType numbers 1..7
    env = _Envelope(type=mtype, id=msg.id, method=msg.method, payload=payload,
                    serializer=msg.serializer, transfer=transfer, total_size=total)
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


def _chunk_header(transfer: int, size: int) -> tuple[bytes, int]:
    """Batch entry prefix of a CHUNK frame whose payload (``size`` bytes) follows verbatim."""
    env_head = b"\x08\x0a\x48" + _varint(transfer) + b"\x22" + _varint(size)
    prefix = b"\x0a" + _varint(len(env_head) + size) + env_head
    return prefix, len(prefix) + size


def _read_file(path: str | None, key: str) -> bytes | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigError(f"transport.grpc.tls.{key}: cannot read {path!r}: {exc}") from exc


class _Partial:
    """A chunked payload being reassembled."""

    __slots__ = ("env", "got", "parts", "total")

    def __init__(self, env: Any, total: int) -> None:
        self.env = env
        self.total = total
        self.got = 0
        self.parts: list[bytes] = []


class _Link:
    """One connection to one peer: the stream, its outbound queue and writer, its reader."""

    def __init__(
        self,
        transport: GrpcTransport,
        peer_id: str,
        address: str | None,
        read: Callable[[], Awaitable[Any]],
        write: Callable[[bytes], Awaitable[None]],
        *,
        dialled: bool,
        call: Any = None,
        channel: aio.Channel | None = None,
    ) -> None:
        self.t = transport
        self.peer_id = peer_id
        self.address = address
        self._read = read
        self._write = write
        self.dialled = dialled
        self._call = call
        self._channel = channel
        self._loop = asyncio.get_running_loop()
        self._queue: deque[tuple[tuple[bytes | memoryview, ...], int]] = deque()
        self._queued = 0
        self._wakeup = asyncio.Event()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._final = False
        self._transfers = itertools.count(1)
        self._partials: dict[int, _Partial] = {}
        self._buffered = 0  # announced bytes of the chunked payloads being received
        self._dropped: dict[int, int] = {}  # transfer id -> bytes still to skip
        self.closed = False
        self.close_reason = ""
        self.status: tuple[grpc.StatusCode, str] | None = None
        self.finished: asyncio.Future[None] = self._loop.create_future()
        self._writer: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self.early: list[Any] = []

    def start(self) -> None:
        self._writer = self._loop.create_task(self._write_loop())
        self._reader = self._loop.create_task(self._read_loop())

    # ------------------------------------------------------------------ outbound
    async def _put(self, parts: tuple[bytes | memoryview, ...], size: int) -> None:
        while self._queued >= self.t.cfg.send_queue_bytes and not self.closed:
            fut: asyncio.Future[None] = self._loop.create_future()
            self._waiters.append(fut)
            await fut
        if self.closed:
            raise NodeNotConnectedError(self.peer_id, f"connection to node {self.peer_id!r} is closed: "
                                        f"{self.close_reason}")
        self._queue.append((parts, size))
        self._queued += size
        if not self._wakeup.is_set():
            self._wakeup.set()

    def _put_nowait(self, env_bytes: bytes) -> None:
        """Queue a small control frame ignoring the byte limit (replies to bad input, aborts)."""
        if self.closed:
            return
        parts = _item(env_bytes)
        size = len(parts[0]) + len(parts[1])
        self._queue.append((parts, size))
        self._queued += size
        self._wakeup.set()

    async def send(self, msg: Message) -> None:
        cfg = self.t.cfg
        payload = msg.payload
        n = len(payload)
        if n > cfg.max_payload_size:
            text = (f"payload of {msg.method or msg.type.name} to {msg.target!r} is {n} bytes, over "
                    f"max_payload_size={cfg.max_payload_size}")
            if msg.type is _RESPONSE:  # tell the caller instead of leaving it waiting
                msg = Message(msg.id, _ERROR, msg.source, msg.target, msg.method,
                              error=ErrorInfo(ErrorCode.RESOURCE_EXHAUSTED.value, text))
                payload, n = b"", 0
            else:
                raise PayloadTooLargeError(text)
        if n <= cfg.chunk_size:
            env = _encode(msg, payload)
            if len(env) > cfg.chunk_size + _FRAME_OVERHEAD:
                raise PayloadTooLargeError(
                    f"frame of {msg.method or msg.type.name} to {msg.target!r} is {len(env)} bytes "
                    "(metadata too large)"
                )
            if self._queued < cfg.send_queue_bytes and not self.closed:  # fast path
                prefix = b"\x0a" + _varint(len(env))
                size = len(prefix) + len(env)
                self._queue.append(((prefix, env), size))
                self._queued += size
                if not self._wakeup.is_set():
                    self._wakeup.set()
                return
            parts = _item(env)
            await self._put(parts, len(parts[0]) + len(parts[1]))
            return
        await self._send_chunked(msg, payload, n)

    async def _send_chunked(self, msg: Message, payload: bytes, n: int) -> None:
        transfer = next(self._transfers)
        head = _item(_encode(msg, b"", transfer, n))
        await self._put(head, len(head[0]) + len(head[1]))
        view = memoryview(payload)
        step = self.t.cfg.chunk_size
        try:
            for off in range(0, n, step):
                part = view[off : off + step]
                prefix, size = _chunk_header(transfer, len(part))
                await self._put((prefix, part), size)
                await asyncio.sleep(0)  # let other senders' frames in between the chunks
        except BaseException:
            # Tell the receiver to drop what it has of this transfer.
            abort = _Envelope(type=_F_CHUNK, transfer=transfer, reason="aborted")
            self._put_nowait(abort.SerializeToString())
            raise

    async def _write_loop(self) -> None:
        limit = self.t.cfg.max_batch_bytes
        queue = self._queue
        try:
            while True:
                while not queue:
                    if self._final:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                chunks: list[bytes | memoryview] = []
                size = 0
                while queue and (size < limit):
                    parts, n = queue.popleft()
                    chunks.extend(parts)
                    size += n
                self._queued -= size
                if self._waiters and self._queued < self.t.cfg.send_queue_bytes:
                    self._wake_waiters()
                data = b"".join(chunks)
                del chunks
                await self._write(data)
        except asyncio.CancelledError:
            if self.closed:
                raise
            self.t._lost(self, f"node {self.peer_id!r} cancelled the stream")
        except Exception as exc:
            if not self.closed:
                self.t._lost(self, f"stream to node {self.peer_id!r} broke while sending: {_describe(exc)}")

    def _wake_waiters(self) -> None:
        waiters, self._waiters = self._waiters, deque()
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    # ------------------------------------------------------------------ inbound
    async def _read_loop(self) -> None:
        reason = f"node {self.peer_id!r} closed the stream"
        try:
            while True:
                data = await self._read()
                if data is aio.EOF or data is None:
                    break
                try:
                    batch = _Batch.FromString(data)
                except DecodeError:
                    reason = f"node {self.peer_id!r} sent a malformed frame"
                    self.status = (grpc.StatusCode.INVALID_ARGUMENT,
                                   "malformed frame (not a node_comm Batch)")
                    break
                for env in batch.frames:
                    if self.closed:
                        return
                    self._on_frame(env)
        except asyncio.CancelledError:
            if self.closed:
                raise
            # grpc.aio raises CancelledError from read() when the peer cancelled the RPC.
            reason = f"node {self.peer_id!r} cancelled the stream"
        except Exception as exc:
            reason = f"stream to node {self.peer_id!r} broke: {_describe(exc)}"
        if not self.closed:
            self.t._lost(self, reason)

    def _on_frame(self, env: Any) -> None:
        ftype = env.type
        mtype = _MESSAGE_TYPES.get(ftype)
        if mtype is not None:
            if env.transfer:
                self._begin_transfer(env, mtype)
            else:
                self._deliver(env, mtype, env.payload)
        elif ftype == _F_CHUNK:
            self._on_chunk(env)
        elif ftype == _F_GOODBYE:
            self.t._goodbye(self, env.reason or f"node {self.peer_id!r} said goodbye")
        else:
            log.warning("%s: frame of unknown type %d from %r", self.t.node_id, ftype, self.peer_id)
            self._put_nowait(_Envelope(
                type=pb.ERROR, id=env.id,
                error=pb.ErrorInfo(code=ErrorCode.INVALID_ARGUMENT.value,
                                   message=f"unknown frame type {ftype}"),
            ).SerializeToString())

    def _deliver(self, env: Any, mtype: MessageType, payload: bytes) -> None:
        err = None
        if env.HasField("error"):
            e = env.error
            err = ErrorInfo(e.code, e.message, e.traceback if e.HasField("traceback") else None)
        msg = Message(env.id, mtype, self.peer_id, self.t.node_id, env.method, payload, env.serializer,
                      dict(env.metadata) if env.metadata else {}, err,
                      env.deadline if env.HasField("deadline") else None)
        try:
            self.t.host.deliver(msg)
        except Exception:
            log.exception("%s: deliver failed for a message from %r", self.t.node_id, self.peer_id)

    def _begin_transfer(self, env: Any, mtype: MessageType) -> None:
        total = env.total_size
        limit = self.t.cfg.max_payload_size
        if total <= limit and self._buffered + total <= self.t.receive_buffer:
            self._partials[env.transfer] = _Partial(env, total)
            self._buffered += total
            if total == 0:
                self._finish(env.transfer)
            return
        self._dropped[env.transfer] = total
        if total > limit:
            text = (f"payload of {env.method or mtype.name} from {self.peer_id!r} is {total} bytes, over "
                    f"max_payload_size={limit} of node {self.t.node_id!r}")
        else:
            text = (f"node {self.t.node_id!r} is already receiving {self._buffered} bytes of large payloads "
                    f"from {self.peer_id!r}; {total} more would pass max_receive_buffer="
                    f"{self.t.receive_buffer}")
        if mtype is _REQUEST:
            self._put_nowait(_Envelope(
                type=pb.ERROR, id=env.id, method=env.method,
                error=pb.ErrorInfo(code=ErrorCode.RESOURCE_EXHAUSTED.value, message=text),
            ).SerializeToString())
        elif mtype is _RESPONSE or mtype is _ERROR:
            fake = _Envelope(type=pb.ERROR, id=env.id, method=env.method,
                             error=pb.ErrorInfo(code=ErrorCode.RESOURCE_EXHAUSTED.value, message=text))
            self._deliver(fake, _ERROR, b"")
        else:
            log.warning("%s: dropped %s", self.t.node_id, text)

    def _on_chunk(self, env: Any) -> None:
        transfer = env.transfer
        part = self._partials.get(transfer)
        if part is None:
            left = self._dropped.get(transfer)
            if left is not None:
                left -= len(env.payload)
                if left <= 0 or env.reason:
                    del self._dropped[transfer]
                else:
                    self._dropped[transfer] = left
            return
        if env.reason:  # the sender aborted this transfer
            del self._partials[transfer]
            self._buffered -= part.total
            return
        data = env.payload
        part.parts.append(data)
        part.got += len(data)
        if part.got >= part.total:
            self._finish(transfer)

    def _finish(self, transfer: int) -> None:
        part = self._partials.pop(transfer)
        self._buffered -= part.total
        if part.got != part.total:
            log.warning("%s: chunked payload from %r has %d bytes, announced %d; dropped",
                        self.t.node_id, self.peer_id, part.got, part.total)
            return
        parts, part.parts = part.parts, []
        payload = parts[0] if len(parts) == 1 else b"".join(parts)
        del parts
        env = part.env
        self._deliver(env, _MESSAGE_TYPES[env.type], payload)

    # ------------------------------------------------------------------ closing
    def close(self, reason: str, *, goodbye: bool) -> asyncio.Task[None] | None:
        """Mark closed and tear the stream down in the background (after a goodbye frame when
        ``goodbye``). Returns the teardown task, or ``None`` when already closed."""
        if self.closed:
            return None
        self.closed = True
        self.close_reason = reason
        self._partials.clear()
        self._dropped.clear()
        self._wake_waiters()
        task = self._loop.create_task(self._teardown(reason if goodbye else None))
        self.t._tasks.add(task)
        task.add_done_callback(self.t._tasks.discard)
        return task

    async def _teardown(self, goodbye: str | None) -> None:
        grace = self.t.cfg.stop_grace
        writer = self._writer
        try:
            if goodbye is not None and writer is not None and not writer.done():
                self._queue.clear()
                self._queued = 0
                parts = _item(_Envelope(type=_F_GOODBYE, reason=goodbye).SerializeToString())
                self._queue.append((parts, len(parts[0]) + len(parts[1])))
                self._final = True
                self._wakeup.set()
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(asyncio.shield(writer), grace)
                if self._call is not None:
                    with contextlib.suppress(BaseException):
                        await asyncio.wait_for(self._call.done_writing(), grace)
                    if self._reader is not None and self._reader is not asyncio.current_task():
                        with contextlib.suppress(BaseException):
                            await asyncio.wait_for(asyncio.shield(self._reader), grace)
        finally:
            current = asyncio.current_task()
            for task in (self._writer, self._reader):
                if task is not None and task is not current and not task.done():
                    task.cancel()
            if self._call is not None:
                self._call.cancel()
            if not self.finished.done():
                self.finished.set_result(None)
            if self._channel is not None:
                with contextlib.suppress(Exception):
                    await self._channel.close(grace=None)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"


class GrpcTransport(Transport):
    """``mode: grpc``. Options: :class:`~node_comm_grpc.config.GrpcTransportConfig`."""

    options_class: ClassVar[type[Any] | None] = GrpcTransportConfig

    def __init__(self, options: GrpcTransportConfig | None = None) -> None:
        super().__init__(options or GrpcTransportConfig())
        self.cfg: GrpcTransportConfig = self.options
        self.node_id = ""
        self._links: dict[str, _Link] = {}
        self._dials: dict[str, tuple[str, float]] = {}  # peer -> (address, timeout) to redial
        self._redials: dict[str, asyncio.Task[None]] = {}
        self._connecting: dict[str, asyncio.Future[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: aio.Server | None = None
        self._health: Any = None
        self._address: str | None = None
        self._stopping = False
        self._stop_reason = "node stopped"
        self._client_creds: grpc.ChannelCredentials | None = None
        cfg = self.cfg
        frame = cfg.chunk_size + _FRAME_OVERHEAD
        self._max_send = cfg.max_batch_bytes + frame + 65536
        self._max_recv = max(64 * 1024 * 1024, 2 * self._max_send)
        #: Bytes of chunked payloads one connection may be receiving at once.
        self.receive_buffer = (
            cfg.max_receive_buffer if cfg.max_receive_buffer is not None else 2 * cfg.max_payload_size
        )

    @property
    def address(self) -> str | None:
        return self._address

    @property
    def links(self) -> list[str]:
        """Peers with an open stream now."""
        return list(self._links)

    # ------------------------------------------------------------------ options
    def _channel_options(self) -> list[tuple[str, Any]]:
        cfg = self.cfg
        opts: list[tuple[str, Any]] = [
            ("grpc.max_send_message_length", self._max_send),
            ("grpc.max_receive_message_length", self._max_recv),
            ("grpc.keepalive_time_ms", int(cfg.keepalive_time * 1000)),
            ("grpc.keepalive_timeout_ms", int(cfg.keepalive_timeout * 1000)),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.enable_retries", 0),
            ("grpc.use_local_subchannel_pool", 1),
        ]
        if cfg.tls is not None and cfg.tls.server_name:
            opts.append(("grpc.ssl_target_name_override", cfg.tls.server_name))
        return opts

    def _server_options(self) -> list[tuple[str, Any]]:
        cfg = self.cfg
        return [
            ("grpc.max_send_message_length", self._max_send),
            ("grpc.max_receive_message_length", self._max_recv),
            ("grpc.keepalive_time_ms", int(cfg.keepalive_time * 1000)),
            ("grpc.keepalive_timeout_ms", int(cfg.keepalive_timeout * 1000)),
            # Accept client pings as often as once a second, with or without calls, and never
            # answer them with a "too_many_pings" GOAWAY.
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 1000),
            ("grpc.http2.min_ping_interval_without_data_ms", 1000),
            ("grpc.http2.max_ping_strikes", 0),
            ("grpc.so_reuseport", 0),
        ]

    def _server_credentials(self, tls: TlsConfig) -> grpc.ServerCredentials:
        cert = _read_file(tls.cert_file, "cert_file")
        key = _read_file(tls.key_file, "key_file")
        if cert is None or key is None:
            raise ConfigError("transport.grpc.tls: a listening node needs cert_file and key_file")
        ca = _read_file(tls.ca_file, "ca_file")
        if tls.client_auth and ca is None:
            raise ConfigError("transport.grpc.tls.client_auth needs ca_file (the CA of client certificates)")
        return grpc.ssl_server_credentials(
            [(key, cert)],
            root_certificates=ca if tls.client_auth else None,
            require_client_auth=tls.client_auth,
        )

    # ------------------------------------------------------------------ lifecycle
    async def start(self, host: TransportHost) -> None:
        await super().start(host)
        self.node_id = host.node_id
        self._stopping = False
        cfg = self.cfg
        tls = cfg.tls
        if tls is not None:
            self._client_creds = grpc.ssl_channel_credentials(
                root_certificates=_read_file(tls.ca_file, "ca_file"),
                private_key=_read_file(tls.key_file, "key_file"),
                certificate_chain=_read_file(tls.cert_file, "cert_file"),
            )
        if cfg.port is None:
            self._address = None
            return
        server = aio.server(options=self._server_options())
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            SERVICE, {"Connect": grpc.stream_stream_rpc_method_handler(self._serve)}
        ),))
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        bind_host = f"[{cfg.host}]" if ":" in cfg.host and not cfg.host.startswith("[") else cfg.host
        bind = f"{bind_host}:{cfg.port}"
        try:
            if tls is not None:
                port = server.add_secure_port(bind, self._server_credentials(tls))
            else:
                port = server.add_insecure_port(bind)
        except RuntimeError as exc:
            raise ConfigError(f"transport.grpc: cannot listen on {bind}: {exc} (port in use?)") from exc
        if not port:
            raise ConfigError(f"transport.grpc: cannot listen on {bind} (port in use?)")
        await server.start()
        self._server = server
        host_part = bind_host
        if cfg.host in ("0.0.0.0", "", "::", "[::]"):
            host_part = "127.0.0.1"
        self._address = f"{host_part}:{port}"
        await self._health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self._health.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, reason: str = "node stopped") -> None:
        self._stopping = True
        self._stop_reason = reason
        for task in list(self._redials.values()):
            task.cancel()
        self._redials.clear()
        self._dials.clear()
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        teardowns: list[asyncio.Task[None]] = []
        for link in list(self._links.values()):
            closing = self._drop(link, reason, goodbye=True)
            if closing is not None:
                teardowns.append(closing)
        if teardowns:
            await asyncio.wait(teardowns, timeout=self.cfg.stop_grace * 3)
        if self._server is not None:
            await self._server.stop(self.cfg.stop_grace)
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)

    # ------------------------------------------------------------------ links
    def _install(self, link: _Link) -> None:
        old = self._links.get(link.peer_id)
        if old is not None:
            self._drop(old, f"replaced by a new connection from node {link.peer_id!r}", goodbye=False)
        redial = self._redials.pop(link.peer_id, None)
        if redial is not None and redial is not asyncio.current_task():
            redial.cancel()
        self._links[link.peer_id] = link
        link.start()
        self.host.peer_connected(link.peer_id, link.address)
        early, link.early = link.early, []
        for env in early:  # frames that arrived in the same batch as the handshake ack
            if link.closed:
                break
            link._on_frame(env)

    def _drop(self, link: _Link, reason: str, *, goodbye: bool) -> asyncio.Task[None] | None:
        """Close ``link`` and tell the node (once)."""
        task = link.close(reason, goodbye=goodbye)
        if self._links.get(link.peer_id) is link:
            del self._links[link.peer_id]
            if self._host is not None:
                self.host.peer_disconnected(link.peer_id, reason)
        return task

    def _lost(self, link: _Link, reason: str) -> None:
        """The stream broke (peer killed, network gone): drop it and redial a dialled link."""
        was_current = self._links.get(link.peer_id) is link
        self._drop(link, reason, goodbye=False)
        if was_current and link.dialled:
            self._schedule_redial(link.peer_id)

    def _goodbye(self, link: _Link, reason: str) -> None:
        was_current = self._links.get(link.peer_id) is link
        self._drop(link, reason, goodbye=False)
        if was_current and link.dialled and self.cfg.reconnect.after_goodbye:
            self._schedule_redial(link.peer_id)

    def _schedule_redial(self, peer_id: str) -> None:
        if self._stopping or not self.cfg.reconnect.enabled or peer_id in self._redials:
            return
        target = self._dials.get(peer_id)
        if target is None:
            return
        task = asyncio.get_running_loop().create_task(self._redial(peer_id, *target))
        self._redials[peer_id] = task

        def forget(t: asyncio.Task[None], p: str = peer_id) -> None:
            if self._redials.get(p) is t:
                del self._redials[p]

        task.add_done_callback(forget)

    async def _redial(self, peer_id: str, address: str, timeout: float) -> None:
        rc = self.cfg.reconnect
        delay = rc.initial_backoff
        attempt = 0
        while rc.max_attempts <= 0 or attempt < rc.max_attempts:
            attempt += 1
            await asyncio.sleep(max(0.0, delay * (1 + random.uniform(-rc.jitter, rc.jitter))))
            delay = min(delay * rc.multiplier, rc.max_backoff)
            if self._stopping or peer_id in self._links:
                return
            try:
                link = await self._dial(peer_id, address, timeout)
            except ConnectFailedError as exc:
                log.info("%s: redial %d of %r failed: %s", self.node_id, attempt, peer_id, exc)
                continue
            if self._stopping or peer_id in self._links:
                link.close("redial no longer needed", goodbye=False)
                return
            log.info("%s: reconnected to %r at %s", self.node_id, peer_id, address)
            self._install(link)
            return
        log.warning("%s: gave up redialling %r after %d attempts", self.node_id, peer_id, attempt)
        self._dials.pop(peer_id, None)

    # ------------------------------------------------------------------ dialling
    async def connect(self, node_id: str, address: str | None, timeout: float) -> None:
        if not address:
            raise ConnectFailedError(
                node_id, f"the grpc transport needs an address ('host:port') to connect to node {node_id!r}"
            )
        link = self._links.get(node_id)
        if link is not None and not link.closed:
            return
        inflight = self._connecting.get(node_id)
        if inflight is not None:  # a concurrent connect() to the same node: share its outcome
            await asyncio.shield(inflight)
            return
        pending = self._redials.pop(node_id, None)
        if pending is not None:
            pending.cancel()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._connecting[node_id] = fut
        try:
            await self._connect(node_id, address, timeout)
        except BaseException as exc:
            if isinstance(exc, Exception):
                fut.set_exception(exc)
                fut.exception()  # retrieved here; waiters get it through the shield
            else:
                fut.cancel()
            raise
        else:
            fut.set_result(None)
        finally:
            del self._connecting[node_id]

    async def _connect(self, node_id: str, address: str, timeout: float) -> None:
        link = await self._dial(node_id, address, timeout)
        if node_id in self._links:  # accepted a connection from it meanwhile
            link.close("duplicate connection", goodbye=False)
            return
        self._dials[node_id] = (address, timeout)
        self._install(link)

    async def _dial(self, node_id: str, address: str, timeout: float) -> _Link:
        if self._client_creds is not None:
            channel = aio.secure_channel(address, self._client_creds, options=self._channel_options())
        else:
            channel = aio.insecure_channel(address, options=self._channel_options())
        call = None
        try:
            call = channel.stream_stream(METHOD)(wait_for_ready=False)
            early = await asyncio.wait_for(self._handshake(call, node_id, address), timeout)
        except BaseException as exc:
            if call is not None:
                call.cancel()
            with contextlib.suppress(Exception):
                await channel.close(grace=None)
            if isinstance(exc, ConnectFailedError):
                exc.address = address
                raise
            if isinstance(exc, asyncio.TimeoutError):
                raise ConnectFailedError(
                    node_id,
                    f"node {node_id!r} at {address} did not answer the handshake within {timeout:g}s",
                    address,
                ) from None
            if isinstance(exc, aio.AioRpcError):
                hint = "" if self._client_creds is not None else (
                    " (is the node running there? if it uses TLS, set transport.grpc.tls)"
                )
                raise ConnectFailedError(
                    node_id,
                    f"cannot connect to node {node_id!r} at {address}: {_describe(exc)}{hint}",
                    address,
                ) from None
            raise
        link = _Link(self, node_id, address, call.read, call.write, dialled=True, call=call, channel=channel)
        link.early = early
        return link

    async def _handshake(self, call: Any, node_id: str, address: str) -> list[Any]:
        """Send the handshake and check the ack; returns frames that came in the ack's batch."""
        hello = _Envelope(type=_F_HANDSHAKE, handshake=pb.Handshake(
            node_id=self.node_id, protocol_version=PROTOCOL_VERSION, expected_node_id=node_id,
            token=self.cfg.token or "", address=self._address or "",
        ))
        await call.write(_batch_bytes(hello))
        data = await call.read()
        if data is aio.EOF:
            raise ConnectFailedError(node_id, f"the node at {address} closed the stream during the handshake "
                                     f"(expected node {node_id!r})")
        try:
            frames = _Batch.FromString(data).frames
        except DecodeError:
            raise ConnectFailedError(node_id, "the server answered the handshake with a malformed frame") \
                from None
        if not frames or frames[0].type != _F_HANDSHAKE_ACK:
            raise ConnectFailedError(node_id, "the server did not answer the handshake")
        ack = frames[0].handshake
        if ack.node_id and ack.node_id != node_id:
            raise ConnectFailedError(
                node_id, f"the node at {address} is node {ack.node_id!r}, not {node_id!r}"
            )
        if ack.refused:
            raise ConnectFailedError(node_id, f"node {node_id!r} refused the connection: {ack.refused}")
        return list(frames[1:])

    # ------------------------------------------------------------------ serving
    async def _serve(self, request_iterator: Any, context: aio.ServicerContext[Any, Any]) -> None:
        link = await self._accept(context)
        if link is None:
            return
        try:
            await link.finished
        except asyncio.CancelledError:
            self._lost(link, f"node {link.peer_id!r} cancelled the stream")
            raise
        if link.status is not None:
            context.set_code(link.status[0])
            context.set_details(link.status[1])

    async def _accept(self, context: aio.ServicerContext[Any, Any]) -> _Link | None:
        cfg = self.cfg
        try:
            data = await asyncio.wait_for(context.read(), cfg.handshake_timeout)
        except asyncio.TimeoutError:
            context.set_code(grpc.StatusCode.DEADLINE_EXCEEDED)
            context.set_details(f"no handshake within {cfg.handshake_timeout:g}s")
            return None
        if data is aio.EOF:
            return None
        try:
            frames = _Batch.FromString(data).frames
        except DecodeError:
            context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
            context.set_details("malformed frame (not a node_comm Batch)")
            return None
        if not frames or frames[0].type != _F_HANDSHAKE:
            context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
            context.set_details("the first frame of a connection must be a handshake")
            return None
        hs = frames[0].handshake
        refused = ""
        if hs.protocol_version != PROTOCOL_VERSION:
            refused = (f"protocol version {hs.protocol_version} is not supported "
                       f"(node {self.node_id!r} speaks {PROTOCOL_VERSION})")
        elif not hs.node_id:
            refused = "the handshake has no node id"
        elif hs.node_id == self.node_id:
            refused = f"a node cannot connect to itself (both are {self.node_id!r})"
        elif hs.expected_node_id and hs.expected_node_id != self.node_id:
            refused = f"this is node {self.node_id!r}, not {hs.expected_node_id!r}"
        elif cfg.token is not None and hs.token != cfg.token:
            refused = "bad credentials: the handshake token does not match transport.grpc.token"
        elif self._stopping:
            refused = f"node {self.node_id!r} is stopping"
        ack = _Envelope(type=_F_HANDSHAKE_ACK, handshake=pb.Handshake(
            node_id=self.node_id, protocol_version=PROTOCOL_VERSION, address=self._address or "",
            refused=refused,
        ))
        if refused:
            await context.write(_batch_bytes(ack))
            context.set_code(grpc.StatusCode.FAILED_PRECONDITION)
            context.set_details(refused)
            return None
        link = _Link(self, hs.node_id, hs.address or None, context.read, context.write, dialled=False)
        # The ack is the link's first outbound frame, queued before the node learns of the peer:
        # when the dialler's connect() returns, this side already lists it as connected.
        link._put_nowait(ack.SerializeToString())
        link.early = list(frames[1:])
        self._install(link)
        if self._stopping:  # stop() began during the handshake: say goodbye at once
            self._drop(link, self._stop_reason, goodbye=True)
        return link

    # ------------------------------------------------------------------ Transport API
    async def send(self, message: Message) -> None:
        link = self._links.get(message.target)
        if link is None:
            raise NodeNotConnectedError(message.target)
        await link.send(message)

    async def disconnect(self, node_id: str, reason: str) -> None:
        link = self._links.get(node_id)
        heartbeat = reason.startswith(_HEARTBEAT_REASON)
        if not heartbeat:
            self._dials.pop(node_id, None)
            pending = self._redials.pop(node_id, None)
            if pending is not None:
                pending.cancel()
        if link is None:
            return
        if heartbeat:
            # The peer may be frozen or unreachable: no goodbye, and redial (it may come back).
            self._lost(link, reason)
        else:
            self._drop(link, reason, goodbye=True)
