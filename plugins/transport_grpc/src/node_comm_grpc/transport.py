"""The ``grpc`` transport: symmetric peers over one bidirectional gRPC stream per connection.

Every connection is one ``node_comm.v1.NodeComm/Connect`` stream. Each gRPC message on it is a
``Batch`` of ``Envelope`` frames: a writer task per connection drains an outbound queue and sends
everything queued as one message. Payloads larger than ``chunk_size`` travel as a head frame plus
``CHUNK`` frames, interleaved with other traffic. See ``proto/node_comm.proto`` for the wire.

This module holds the transport itself (server, handshake, dialling and redialling); ``wire`` the
framing, ``link`` one connection, ``security`` the TLS credentials, ``options`` the gRPC arguments.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, ClassVar

import grpc
from google.protobuf.message import DecodeError
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from node_comm import (
    ConfigError,
    ConnectFailedError,
    DisconnectKind,
    ErrorCode,
    Message,
    MessageType,
    NodeNotConnectedError,
    Transport,
    TransportHost,
)
from node_comm.connecting import SharedConnects, backoff
from node_comm.peer_logging import RateLimitedLog

from . import handshake as hsk
from .config import MIN_BACKOFF, GrpcTransportConfig
from .health import BoundedHealthServicer
from .link import Link, describe
from .options import channel_options, message_limits, server_options
from .proto import node_comm_pb2 as pb
from .reassembly import ReceiveBudget
from .security import channel_credentials, server_credentials
from .wire import (
    F_HANDSHAKE,
    F_HANDSHAKE_ACK,
    METHOD,
    PROTOCOL_VERSION,
    SERVICE,
    Batch,
    Envelope,
    batch_bytes,
    first_frame,
)
from .write_budget import WriteBudget

__all__ = ["METHOD", "PROTOCOL_VERSION", "SERVICE", "GrpcTransport"]

log = logging.getLogger("node_comm.grpc")

#: Large batches (of up to ``max_batch_bytes``) written at once across all of a node's links, and
#: how long one may take before it stops counting (a peer that stopped reading): see write_budget.
LARGE_WRITES_IN_FLIGHT = 2
LARGE_WRITE_PATIENCE = 1.0


class GrpcTransport(Transport):
    """``mode: grpc``. Options: :class:`~node_comm_grpc.config.GrpcTransportConfig`."""

    options_class: ClassVar[type[Any] | None] = GrpcTransportConfig
    #: Large pickle/numpy payloads come as buffer lists, chunked straight from them (see Link.send).
    scatter_gather: ClassVar[bool] = True

    def __init__(self, options: GrpcTransportConfig | None = None) -> None:
        super().__init__(options or GrpcTransportConfig())
        self.cfg: GrpcTransportConfig = self.options
        self.node_id = ""
        self._links: dict[str, Link] = {}
        # Lines a peer can cause (here and in link.py): rate-limited per transport and key, with
        # peer-supplied strings as %r.
        self.rlog = RateLimitedLog(log)
        self._dials: dict[str, tuple[str, float]] = {}  # peer -> (address, timeout) to redial
        self._redials: dict[str, asyncio.Task[None]] = {}
        self._connects = SharedConnects()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: aio.Server | None = None
        self._health: Any = None
        self._address: str | None = None
        self._stopping = False
        self._stop_reason = "node stopped"
        self._client_creds: grpc.ChannelCredentials | None = None
        self._handshaking = 0  # streams accepted whose handshake is in progress
        self._claims: set[str] = set()  # node ids whose connected link is being probed for a new claim
        cfg = self.cfg
        self._secret = cfg.token.encode() if cfg.token else None
        self._max_send, self._max_recv = message_limits(cfg)
        #: Bytes of chunked payloads this node is reassembling, across all its links.
        self.receive_budget = ReceiveBudget(
            cfg.max_receive_buffer if cfg.max_receive_buffer is not None else 2 * cfg.max_payload_size
        )
        #: Large batches being written, across all its links: a broadcast of a large payload holds
        #: a few joined batches (and grpc's copies of them) at a time, not one per target.
        self.write_budget = WriteBudget(LARGE_WRITES_IN_FLIGHT * cfg.max_batch_bytes, LARGE_WRITE_PATIENCE)

    @property
    def address(self) -> str | None:
        return self._address

    @property
    def links(self) -> list[str]:
        """Peers with an open stream now."""
        return list(self._links)

    # ------------------------------------------------------------------ lifecycle
    async def start(self, host: TransportHost) -> None:
        await super().start(host)
        self.node_id = host.node_id
        self._stopping = False
        cfg = self.cfg
        tls = cfg.tls
        if tls is not None:
            self._client_creds = channel_credentials(tls)
        if cfg.port is None:
            self._address = None
            return
        server = aio.server(options=server_options(self.cfg, self._max_send, self._max_recv))
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    SERVICE, {"Connect": grpc.stream_stream_rpc_method_handler(self._serve)}
                ),
            )
        )
        self._health = BoundedHealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        bind_host = f"[{cfg.host}]" if ":" in cfg.host and not cfg.host.startswith("[") else cfg.host
        bind = f"{bind_host}:{cfg.port}"
        try:
            if tls is not None:
                port = server.add_secure_port(bind, server_credentials(tls))
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
    def _install(self, link: Link) -> None:
        old = self._links.get(link.peer_id)
        if old is not None:
            self._drop(
                old,
                f"replaced by a new connection from node {link.peer_id!r}",
                goodbye=False,
                kind=DisconnectKind.REPLACED,
            )
        redial = self._redials.pop(link.peer_id, None)
        if redial is not None and redial is not asyncio.current_task():
            redial.cancel()
        self._links[link.peer_id] = link
        link.start()
        self.host.peer_connected(link.peer_id, link.address, identity=link.identity)
        link.deliver_early()

    def _drop(
        self, link: Link, reason: str, *, goodbye: bool, kind: DisconnectKind = DisconnectKind.LOST
    ) -> asyncio.Task[None] | None:
        """Close ``link`` and tell the node (once)."""
        task = link.close(reason, goodbye=goodbye)
        if self._links.get(link.peer_id) is link:
            del self._links[link.peer_id]
            if self.attached:
                self.host.peer_disconnected(link.peer_id, reason, kind=kind)
        return task

    # ------------------------------------------------------------------ LinkOwner (called by links)
    def lost(self, link: Link, reason: str, kind: DisconnectKind = DisconnectKind.LOST) -> None:
        """The stream broke (peer killed, network gone): drop it and redial a dialled link."""
        was_current = self._links.get(link.peer_id) is link
        self._drop(link, reason, goodbye=False, kind=kind)
        if was_current and link.dialled:
            self._schedule_redial(link.peer_id)

    def goodbye(self, link: Link, reason: str) -> None:
        """The peer said goodbye on ``link``: drop it (and redial if ``reconnect.after_goodbye``)."""
        was_current = self._links.get(link.peer_id) is link
        self._drop(link, reason, goodbye=False, kind=DisconnectKind.STOPPED)
        if was_current and link.dialled and self.cfg.reconnect.after_goodbye:
            self._schedule_redial(link.peer_id)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``coro`` as a task this transport keeps until it ends (cancelled by ``stop``)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def deliver(self, msg: Message) -> None:
        """Hand a message a link received to the node."""
        self.host.deliver(msg)

    def transfer_progress(
        self, peer_id: str, message_id: int, mtype: MessageType, method: str, done: int, total: int
    ) -> None:
        """Report a chunked payload's progress to the node."""
        self.host.transfer_progress(peer_id, message_id, mtype, method, done, total)

    def reading_paused(self, peer_id: str) -> Awaitable[Any] | None:
        """What a link waits on before reading more from ``peer_id`` (the node's flow control)."""
        paused = getattr(self.host, "reading_paused", None)
        return None if paused is None else paused(peer_id)

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
        # Never below the smallest backoff allowed, even with jitter 1: no redial floods.
        delays = backoff(
            rc.initial_backoff, rc.max_backoff, multiplier=rc.multiplier, jitter=rc.jitter, floor=MIN_BACKOFF
        )
        attempt = 0
        loop = asyncio.get_running_loop()
        deadline = None if rc.give_up_after is None else loop.time() + rc.give_up_after
        while (rc.max_attempts <= 0 or attempt < rc.max_attempts) and (deadline is None or loop.time() < deadline):
            attempt += 1
            await asyncio.sleep(next(delays))
            if self._stopping or peer_id in self._links:
                return
            try:
                link = await self._dial(peer_id, address, timeout)
            except ConnectFailedError as exc:
                self.rlog.info(
                    ("redial", peer_id), "%s: redial %d of %r failed: %r", self.node_id, attempt, peer_id, str(exc)
                )
                continue
            if self._stopping or peer_id in self._links:
                link.close("redial no longer needed", goodbye=False)
                return
            self.rlog.info(("redial", peer_id), "%s: reconnected to %r at %r", self.node_id, peer_id, address)
            self._install(link)
            return
        reason = f"gave up redialling {peer_id!r} at {address} after {attempt} attempts"
        if deadline is not None and loop.time() >= deadline:
            reason += f" ({rc.give_up_after:g}s, transport.grpc.reconnect.give_up_after)"
        self.rlog.warning(("redial", peer_id), "%s: %s", self.node_id, reason)
        self._dials.pop(peer_id, None)
        gave_up = getattr(self.host, "peer_given_up", None)  # optional in the host contract
        if gave_up is not None:
            gave_up(peer_id, reason)

    # ------------------------------------------------------------------ dialling
    async def connect(self, node_id: str, address: str | None, timeout: float) -> None:
        if not address:
            raise ConnectFailedError(
                node_id, f"the grpc transport needs an address ('host:port') to connect to node {node_id!r}"
            )
        link = self._links.get(node_id)
        if link is not None and not link.closed:
            return
        # A concurrent connect() to the same node shares the outcome of the one under way.
        await self._connects.run(node_id, lambda: self._connect_fresh(node_id, address, timeout))

    async def _connect_fresh(self, node_id: str, address: str, timeout: float) -> None:
        pending = self._redials.pop(node_id, None)
        if pending is not None:
            pending.cancel()
        await self._connect(node_id, address, timeout)

    async def _connect(self, node_id: str, address: str, timeout: float) -> None:
        try:
            link = await self._dial(node_id, address, timeout)
        except ConnectFailedError:
            if node_id in self._links:  # it dialled us meanwhile and refused our duplicate: connected
                return
            raise
        if node_id in self._links:  # accepted a connection from it meanwhile
            link.close("duplicate connection", goodbye=False)
            return
        self._dials[node_id] = (address, timeout)
        self._install(link)

    async def connect_any(self, address: str, timeout: float) -> str:
        """Connect to whichever node answers at ``address`` and return its node id: the id its
        handshake reply names (bound into its proof when ``token`` is set, so only a holder of the
        secret can claim it). For ``node-comm ping ADDRESS`` without a NODE_ID: allowed only on a
        dial-only transport (no ``port``), never with ``tls.bind_node_id`` (the certificate is checked
        against the id dialled, which is unknown here). The server sees an ordinary dialler that
        names no expected id."""
        if self.cfg.port is not None:
            raise ConfigError(
                "connect_any: only a dial-only grpc transport (transport.grpc.port unset) may connect "
                "without naming the node it expects"
            )
        tls = self.cfg.tls
        if tls is not None and tls.binds_node_id:
            raise ConfigError(
                "tls.bind_node_id is on: the server's certificate is checked against the node id "
                "dialled, so the node id must be given"
            )
        link = await self._dial(None, address, timeout)
        peer_id = link.peer_id
        if peer_id in self._links or self._connects.busy(peer_id):
            link.close("duplicate connection", goodbye=False)
            raise ConnectFailedError(peer_id, f"the node at {address} is {peer_id!r}, already connected", address)
        self._dials[peer_id] = (address, timeout)
        self._install(link)
        return peer_id

    async def _dial(self, node_id: str | None, address: str, timeout: float) -> Link:
        """A link to ``node_id`` at ``address`` (``None``: to whichever node answers there)."""
        who = node_id or f"at {address}"
        label = f"node {node_id!r} at {address}" if node_id is not None else f"the node at {address}"
        options = channel_options(self.cfg, self._max_send, self._max_recv)
        tls = self.cfg.tls
        if node_id is not None and tls is not None and tls.binds_node_id:
            # The server's certificate must name the node id dialled: check it as the TLS host name.
            options = [o for o in options if o[0] != "grpc.ssl_target_name_override"]
            options.append(("grpc.ssl_target_name_override", node_id))
        if self._client_creds is not None:
            channel = aio.secure_channel(address, self._client_creds, options=options)
        else:
            channel = aio.insecure_channel(address, options=options)
        call = None
        try:
            call = channel.stream_stream(METHOD)(wait_for_ready=False)
            peer_id, early, identity = await asyncio.wait_for(self._handshake(call, node_id, address), timeout)
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
                    who,
                    f"{label} did not answer the handshake within {timeout:g}s",
                    address,
                ) from None
            if isinstance(exc, aio.AioRpcError):
                hint = (
                    ""
                    if self._client_creds is not None
                    else (" (is the node running there? if it uses TLS, set transport.grpc.tls)")
                )
                if tls is not None and tls.binds_node_id and exc.code() == grpc.StatusCode.UNAVAILABLE:
                    hint = (
                        f" (with tls.bind_node_id the server's certificate must name {node_id!r} as "
                        "its common name or a subject alternative name)"
                    )
                raise ConnectFailedError(
                    who,
                    f"cannot connect to {label}: {describe(exc)}{hint}",
                    address,
                ) from None
            raise
        return self._link(
            peer_id, address, call.read, call.write, identity, early, dialled=True, call=call, channel=channel
        )

    def _link(
        self,
        peer_id: str,
        address: str | None,
        read: Callable[[], Awaitable[Any]],
        write: Callable[[bytes], Coroutine[Any, Any, None]],
        identity: str | None,
        early: list[Any],
        **kw: Any,
    ) -> Link:
        return Link(
            self,
            peer_id,
            address,
            read,
            write,
            cfg=self.cfg,
            node_id=self.node_id,
            rlog=self.rlog,
            budget=self.receive_budget,
            write_budget=self.write_budget,
            identity=identity,
            early=early,
            **kw,
        )

    async def _handshake(self, call: Any, wanted: str | None, address: str) -> tuple[str, list[Any], str | None]:
        """Run the dialler's side of the handshake with the node ``wanted`` (``None``: any node,
        whose id its reply names); returns the peer's id, the frames that came with the final ack and
        the server's identity (``None`` when it is not authenticated)."""
        nonce = hsk.new_nonce()
        hello = Envelope(
            type=F_HANDSHAKE,
            handshake=pb.Handshake(
                node_id=self.node_id,
                protocol_version=PROTOCOL_VERSION,
                expected_node_id=wanted or "",
                address=self._address or "",
                nonce=nonce,
            ),
        )
        await call.write(batch_bytes(hello))
        ack, rest = await self._read_ack(call, wanted, address)
        node_id = wanted if wanted is not None else self._answering_id(ack, address)
        identity = self._server_tls_identity(node_id, address)
        secret = self._secret
        if ack.challenge:
            if secret is None:
                raise ConnectFailedError(
                    node_id,
                    f"node {node_id!r} at {address} requires a shared secret: set transport.grpc.token "
                    "to the secret it uses",
                )
            expected = hsk.proof(secret, hsk.SERVER, nonce, ack.nonce, self.node_id, node_id, PROTOCOL_VERSION)
            if len(ack.nonce) != hsk.NONCE_SIZE or not hsk.verify(expected, ack.proof):
                raise ConnectFailedError(
                    node_id,
                    f"bad credentials: the node at {address} could not prove it holds the shared secret: its "
                    "transport.grpc.token differs from this node's, or it is an impostor (nothing "
                    "was revealed to it)",
                )
            mine = hsk.proof(secret, hsk.DIALLER, nonce, ack.nonce, self.node_id, node_id, PROTOCOL_VERSION)
            await call.write(batch_bytes(Envelope(type=F_HANDSHAKE, handshake=pb.Handshake(proof=mine))))
            ack, rest = await self._read_ack(call, node_id, address)
            if ack.challenge:
                raise ConnectFailedError(node_id, f"the node at {address} challenged the handshake twice")
            identity = identity or hsk.SHARED_SECRET
        elif secret is not None:
            raise ConnectFailedError(
                node_id,
                f"the node at {address} did not prove it holds the shared secret "
                "(transport.grpc.token): it has none set, or it is an impostor; refusing it",
            )
        try:
            early = list(Batch.FromString(rest).frames) if rest else []
        except DecodeError:
            raise ConnectFailedError(node_id, "the server sent a malformed frame after the handshake") from None
        return node_id, early, identity

    def _answering_id(self, ack: Any, address: str) -> str:
        """The node id a server's first handshake reply names, when the dialler named none."""
        peer_id = str(ack.node_id)
        bad = hsk.bad_node_id(peer_id) or (
            f"it claims this node's own id {peer_id!r}" if peer_id == self.node_id else ""
        )
        if bad:
            raise ConnectFailedError(f"at {address}", f"the node at {address} gave an unusable node id: {bad}", address)
        return peer_id

    async def _read_ack(self, call: Any, node_id: str | None, address: str) -> tuple[Any, bytes]:
        """Read a HANDSHAKE_ACK; a refusal, a node id other than ``node_id`` (``None``: any) or
        garbage is a ConnectFailedError."""
        who = node_id or f"at {address}"
        data = await call.read()
        if data is aio.EOF:
            expecting = f" (expected node {node_id!r})" if node_id is not None else ""
            raise ConnectFailedError(who, f"the node at {address} closed the stream during the handshake{expecting}")
        try:
            env, rest = first_frame(data)
        except DecodeError:
            raise ConnectFailedError(who, "the server answered the handshake with a malformed frame") from None
        if env.type != F_HANDSHAKE_ACK:
            raise ConnectFailedError(who, "the server did not answer the handshake")
        ack = env.handshake
        if node_id is not None and ack.node_id and ack.node_id != node_id:
            raise ConnectFailedError(node_id, f"the node at {address} is node {ack.node_id!r}, not {node_id!r}")
        if ack.refused:
            code = f" [{ack.code}]" if ack.code else ""
            refuser = node_id if node_id is not None else ack.node_id[: hsk.MAX_NODE_ID]
            raise ConnectFailedError(who, f"node {refuser!r} refused the connection{code}: {ack.refused}")
        return ack, rest

    def _server_tls_identity(self, node_id: str, address: str) -> str | None:
        """The name the server's certificate was verified against (TLS), or ``None`` (plaintext)."""
        tls = self.cfg.tls
        if tls is None:
            return None
        if tls.binds_node_id:
            return node_id
        return tls.server_name or address.rsplit(":", 1)[0].strip("[]")

    # ------------------------------------------------------------------ serving
    async def _serve(self, request_iterator: Any, context: aio.ServicerContext[Any, Any]) -> None:
        link = await self._accept(context)
        if link is None:
            return
        try:
            await link.finished
        except asyncio.CancelledError:
            self.lost(link, f"node {link.peer_id!r} cancelled the stream")
            raise
        if link.status is not None:
            context.set_code(link.status[0])
            context.set_details(link.status[1])

    async def _accept(self, context: aio.ServicerContext[Any, Any]) -> Link | None:
        cfg = self.cfg
        if self._handshaking + len(self._links) >= cfg.max_connections:
            context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
            context.set_details(f"node {self.node_id!r} has max_connections={cfg.max_connections} connections")
            return None
        self._handshaking += 1
        try:
            return await asyncio.wait_for(self._handshake_accept(context), cfg.handshake_timeout)
        except asyncio.TimeoutError:
            context.set_code(grpc.StatusCode.DEADLINE_EXCEEDED)
            context.set_details(f"no handshake within {cfg.handshake_timeout:g}s")
            return None
        finally:
            self._handshaking -= 1

    async def _read_hello(self, context: aio.ServicerContext[Any, Any]) -> tuple[Any, bytes] | None:
        """The first frame of the dialler's next message (a handshake) and the undecoded rest, or
        ``None`` (with the stream's status set) for end of stream, garbage or anything else."""
        data = await context.read()
        if data is aio.EOF:
            return None
        if len(data) > hsk.MAX_HANDSHAKE_BYTES:
            context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
            context.set_details(f"a handshake message is at most {hsk.MAX_HANDSHAKE_BYTES} bytes")
            return None
        try:
            env, rest = first_frame(data)
        except DecodeError:
            context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
            context.set_details("malformed frame (not a node_comm Batch)")
            return None
        if env.type != F_HANDSHAKE:
            context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
            context.set_details("the first frame of a connection must be a handshake")
            return None
        return env.handshake, rest

    async def _refuse(self, context: aio.ServicerContext[Any, Any], code: ErrorCode, reason: str) -> None:
        ack = Envelope(
            type=F_HANDSHAKE_ACK,
            handshake=pb.Handshake(
                node_id=self.node_id,
                protocol_version=PROTOCOL_VERSION,
                refused=reason,
                code=code.value,
            ),
        )
        with contextlib.suppress(Exception):
            await context.write(batch_bytes(ack))
        context.set_code(grpc.StatusCode.FAILED_PRECONDITION)
        context.set_details(reason)

    async def _handshake_accept(self, context: aio.ServicerContext[Any, Any]) -> Link | None:
        """The server's side of the handshake; installs and returns the link, or ``None``."""
        cfg = self.cfg
        hello = await self._read_hello(context)
        if hello is None:
            return None
        hs, rest = hello
        peer_id = hs.node_id
        code, refused = ErrorCode.INVALID_ARGUMENT, ""
        if hs.protocol_version != PROTOCOL_VERSION:
            refused = (
                f"protocol version {hs.protocol_version} is not supported "
                f"(node {self.node_id!r} speaks {PROTOCOL_VERSION})"
            )
        elif bad := hsk.bad_node_id(peer_id):
            refused = bad
        elif peer_id == self.node_id:
            refused = f"a node cannot connect to itself (both are {self.node_id!r})"
        elif hs.expected_node_id and hs.expected_node_id != self.node_id:
            refused = f"this is node {self.node_id!r}, not {hs.expected_node_id!r}"
        elif self._stopping:
            code, refused = ErrorCode.UNAVAILABLE, f"node {self.node_id!r} is stopping"
        identity: str | None = None
        tls = cfg.tls
        if not refused and tls is not None and tls.client_auth:
            subject, names = hsk.certificate_names(context.auth_context())
            identity = subject
            if tls.binds_node_id and peer_id not in names:
                code = ErrorCode.PERMISSION_DENIED
                refused = (
                    f"node id {peer_id!r} is not named by the client certificate (it names "
                    f"{', '.join(map(repr, names)) or 'nothing'}); tls.bind_node_id is on"
                )
        if not refused and self._secret is not None:
            if rest:
                refused = "frames before the handshake was authenticated"
            elif len(hs.nonce) != hsk.NONCE_SIZE:
                code, refused = ErrorCode.UNAUTHENTICATED, "the handshake has no valid nonce"
        if refused:
            await self._refuse(context, code, refused)
            return None
        if self._secret is not None:
            theirs, ours = hs.nonce, hsk.new_nonce()
            challenge = Envelope(
                type=F_HANDSHAKE_ACK,
                handshake=pb.Handshake(
                    node_id=self.node_id,
                    protocol_version=PROTOCOL_VERSION,
                    address=self._address or "",
                    nonce=ours,
                    challenge=True,
                    proof=hsk.proof(self._secret, hsk.SERVER, theirs, ours, peer_id, self.node_id, PROTOCOL_VERSION),
                ),
            )
            await context.write(batch_bytes(challenge))
            answer = await self._read_hello(context)
            if answer is None:
                return None
            hs2, rest = answer
            expected = hsk.proof(self._secret, hsk.DIALLER, theirs, ours, peer_id, self.node_id, PROTOCOL_VERSION)
            if not hsk.verify(expected, hs2.proof):
                await self._refuse(
                    context,
                    ErrorCode.UNAUTHENTICATED,
                    "bad credentials: the dialler could not prove it holds transport.grpc.token",
                )
                return None
            identity = identity or hsk.SHARED_SECRET
        if not await self._claim(peer_id):
            await self._refuse(
                context,
                ErrorCode.PERMISSION_DENIED,
                f"node id {peer_id!r} is already connected (its connection answers); a node "
                "id can have one connection at a time",
            )
            return None
        if self._stopping:
            await self._refuse(context, ErrorCode.UNAVAILABLE, f"node {self.node_id!r} is stopping")
            return None
        try:
            early = list(Batch.FromString(rest).frames) if rest else []
        except DecodeError:
            context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
            context.set_details("malformed frame (not a node_comm Batch)")
            return None
        ack = Envelope(
            type=F_HANDSHAKE_ACK,
            handshake=pb.Handshake(
                node_id=self.node_id,
                protocol_version=PROTOCOL_VERSION,
                address=self._address or "",
            ),
        )
        link = self._link(peer_id, hs.address or None, context.read, context.write, identity, early, dialled=False)
        # The ack is the link's first outbound frame, queued before the node learns of the peer:
        # when the dialler's connect() returns, this side already lists it as connected.
        link.queue_control(ack.SerializeToString())
        self._install(link)
        if self._stopping:  # stop() began during the handshake: say goodbye at once
            self._drop(link, self._stop_reason, goodbye=True)
        return link

    async def _claim(self, peer_id: str) -> bool:
        """Whether a new connection may take ``peer_id``: yes when no link has it, or when the link
        that has it does not answer a liveness probe (a restarted peer replaces its dead link at
        once); no while that link answers, or while another claim of the id is being checked."""
        old = self._links.get(peer_id)
        if old is None or old.closed:
            return True
        if peer_id in self._claims:
            return False
        self._claims.add(peer_id)
        try:
            alive = await old.probe(min(2.0, self.cfg.handshake_timeout / 3))
        finally:
            self._claims.discard(peer_id)
        if alive:
            return False
        if self._links.get(peer_id) is old:
            self.lost(
                old,
                f"node {peer_id!r} reconnected and its previous connection did not answer a probe",
                DisconnectKind.REPLACED,
            )
        return True

    # ------------------------------------------------------------------ Transport API
    async def send(self, message: Message) -> None:
        link = self._links.get(message.target)
        if link is None:
            raise NodeNotConnectedError(message.target)
        await link.send(message)

    async def send_many(self, messages: Sequence[Message]) -> list[BaseException | None]:
        """Every target has its own stream: each small request is queued on its link at once
        (no task per target); what must wait or fail goes through :meth:`send` as by default."""
        results: list[BaseException | None] = [None] * len(messages)
        rest: list[int] = []
        links = self._links
        for i, msg in enumerate(messages):
            link = links.get(msg.target)
            if link is None:
                results[i] = NodeNotConnectedError(msg.target)
                continue
            try:
                if link.send_nowait(msg):
                    continue
            except Exception as exc:  # what send() would have raised for this message
                results[i] = exc
                continue
            rest.append(i)
        if rest:
            for i, outcome in zip(rest, await super().send_many([messages[i] for i in rest]), strict=True):
                results[i] = outcome
        return results

    async def disconnect(self, node_id: str, reason: str, *, may_return: bool = False) -> None:
        link = self._links.get(node_id)
        if not may_return:
            self._dials.pop(node_id, None)
            pending = self._redials.pop(node_id, None)
            if pending is not None:
                pending.cancel()
        if link is None:
            return
        if may_return:
            # The peer may be frozen or unreachable: no goodbye, and redial (it may come back).
            self.lost(link, reason)
        else:
            self._drop(link, reason, goodbye=True)
