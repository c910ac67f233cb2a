"""The ``nats`` transport: every node holds one connection to a NATS broker and finds its peers by
node id through it; nobody dials anybody else, so nodes behind NAT work and a broadcast is
published once and fanned out by the broker.

A link is a handshake, not a socket: ``connect(b)`` is a NATS request to b's subject (answered by
b, or at once with "no responders" when no b is there); after it both sides list each other and
either may call the other. Loss is noticed three ways: a goodbye frame (a peer that stops), a
"no responders" status for a frame or a presence probe sent to a peer whose subscription is gone
(process killed, broker connection lost), and the loss of this node's own broker connection,
which drops every link at once. Links this node opened are re-opened in the background when the
peer or the broker comes back, and ``connect`` fires again.

See ``wire`` for subjects and frames and ``transfers`` for chunked payloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import re
import secrets
import ssl
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Sequence
from typing import Any, ClassVar

from nats import errors as nats_errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from node_comm import (
    ConfigError,
    ConnectFailedError,
    DisconnectKind,
    ErrorCode,
    ErrorInfo,
    Message,
    MessageType,
    NodeCommError,
    NodeNotConnectedError,
    PayloadTooLargeError,
    Transport,
    TransportHost,
)
from node_comm.connecting import SharedConnects, backoff
from node_comm.message import report_progress
from node_comm.peers import past_held_bound

from .config import NatsTransportConfig
from .transfers import Incoming, Outgoing, Receiving
from .wire import (
    ABORT,
    BATCH,
    BCAST,
    CHUNK,
    CHUNK_ACK,
    GOODBYE,
    HELLO,
    HELLO_ACK,
    MESSAGE_TYPES,
    PROBE,
    BadFrame,
    Frame,
    bcast_call_id,
    decode,
    encode,
    encode_batch,
    encode_message,
    error_of,
    message_extra,
    metadata_of,
    split_batch,
    token,
    untoken,
)

__all__ = ["NatsTransport"]

log = logging.getLogger("node_comm.nats")

_REQUEST = MessageType.REQUEST
_RESPONSE = MessageType.RESPONSE
_ERROR = MessageType.ERROR
_NOTIFY = MessageType.NOTIFY
_PROBE_FRAME = encode(PROBE)
#: Room kept in every NATS message beside a chunk for the frame header and subject.
_FRAME_ROOM = 4096
#: Frames from a peer whose handshake answer is still on its way, kept until it arrives.
_MAX_EARLY = 256
#: ABORT frame's ``id``: who gave up on the transfer.
_SENDER, _RECEIVER = 0, 1


#: An incarnation id: random per start of a node, told in the handshake.
_INCARNATION = re.compile(r"[0-9a-f]{16}")


def _group(extra: dict[str, Any]) -> int | None:
    grp = extra.get("grp")
    return grp if isinstance(grp, int) and not isinstance(grp, bool) and 0 <= grp < 65536 else None


def _incarnation(extra: dict[str, Any]) -> str | None:
    inc = extra.get("inc")
    return inc if isinstance(inc, str) and _INCARNATION.fullmatch(inc) else None


class _Link:
    __slots__ = (
        "dialled",
        "gen",
        "group",
        "inc",
        "out",
        "out_size",
        "parked",
        "parked_bytes",
        "peer_id",
        "reply",
        "subject",
    )

    def __init__(
        self, peer_id: str, subject: str, reply: str, dialled: bool, gen: int, inc: str | None, group: int | None
    ) -> None:
        self.peer_id = peer_id
        self.subject = subject  # where frames to the peer go
        self.reply = reply  # where the broker reports "no responders" for them
        self.dialled = dialled
        self.gen = gen
        #: The peer's incarnation (``None``: it did not say): what a takeover probe asks for.
        self.inc = inc
        #: The peer's broadcast group (``None``: it has none; small broadcasts go to it alone).
        self.group = group
        #: Small frames waiting for the publish a sender is about to make (``None``: none pending).
        self.out: list[bytes] | None = None
        self.out_size = 0
        #: Messages from the peer that arrived while the node did not read it (``reading_paused``),
        #: in order (``None``: reading). The broker pushes, so they wait here, bounded.
        self.parked: deque[Message] | None = None
        self.parked_bytes = 0


class NatsTransport(Transport):
    """``mode: nats``. Options: :class:`~node_comm_nats.config.NatsTransportConfig`."""

    options_class: ClassVar[type[Any] | None] = NatsTransportConfig

    def __init__(self, options: NatsTransportConfig | None = None) -> None:
        super().__init__(options or NatsTransportConfig())
        self.cfg: NatsTransportConfig = self.options
        self.node_id = ""
        self._nc: Client | None = None
        self._reset()

    def _reset(self) -> None:
        self._links: dict[str, _Link] = {}
        self._by_gen: dict[int, _Link] = {}
        self._gens = itertools.count(1)
        self._connects = SharedConnects()  # handshakes under way, by peer id
        #: This start's incarnation id; the old link of a restarted peer is probed by it.
        self._inc = secrets.token_hex(8)
        #: Peer ids whose connected link is being probed for a claim by another incarnation.
        self._claims: set[str] = set()
        self._group = zlib.crc32(self.node_id.encode("utf-8")) % self.cfg.broadcast_groups
        #: How this node's id appears in a broadcast's target list (JSON), for a quick check.
        self._named = json.dumps(self.node_id).encode("utf-8")
        #: Linked peers per broadcast group.
        self._group_links: dict[int, int] = {}
        self._early: dict[str, list[Frame]] = {}
        self._dials: dict[str, float] = {}  # peer -> connect timeout, for redials
        self._redials: dict[str, asyncio.Task[None]] = {}
        self._told: dict[str, float] = {}  # unlinked peer -> when it was last told so
        self._receiving = Receiving(self.cfg.receive_buffer, self._transfer_ended)
        self._outgoing: dict[int, Outgoing] = {}
        self._transfers = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._broker_up = asyncio.Event()
        self._status = ""
        #: Distinct errors of the tries to reach a server while starting (a few).
        self._start_errors: list[str] = []
        #: Set when a try failed in a way another try cannot fix (credentials, certificates).
        self._start_refused = asyncio.Event()

    # ------------------------------------------------------------------ properties
    @property
    def address(self) -> str | None:
        return self._address_of(self.node_id) if self._nc is not None else None

    def _address_of(self, node_id: str) -> str:
        return f"nats:{self.cfg.subject_prefix}.node.{token(node_id)}"

    @property
    def links(self) -> list[str]:
        """Peers linked now."""
        return list(self._links)

    @property
    def client(self) -> Client | None:
        """The nats-py connection (``None`` when stopped); for monitoring and tests."""
        return self._nc

    def peer_identity(self, peer_id: str) -> str | None:
        """The verified identity of linked peer ``peer_id``: its node id when the broker binds NATS
        users to node ids (``broker_enforces_identity``), else ``None`` (the id is only claimed).
        The hook for the kernel's ``ctx.authenticated`` / ``ctx.peer_identity``."""
        if self.cfg.broker_enforces_identity and peer_id in self._links:
            return f"nats:{peer_id}"
        return None

    @property
    def _max_frame(self) -> int:
        nc = self._nc
        return nc.max_payload if nc is not None else 1024 * 1024

    @property
    def _chunk_size(self) -> int:
        return max(1024, min(self.cfg.chunk_size, self._max_frame - _FRAME_ROOM))

    # ------------------------------------------------------------------ lifecycle
    async def start(self, host: TransportHost) -> None:
        await super().start(host)
        self.node_id = host.node_id
        self._reset()
        cfg = self.cfg
        nc = Client()
        connecting = asyncio.ensure_future(nc.connect(**self._connect_options()))
        refused = asyncio.ensure_future(self._start_refused.wait())
        try:
            await asyncio.wait({connecting, refused}, timeout=cfg.start_timeout, return_when=asyncio.FIRST_COMPLETED)
            refused.cancel()
            if not connecting.done():  # timed out, or refused for good (credentials, certificates)
                connecting.cancel()
                with contextlib.suppress(BaseException):
                    await connecting
                raise asyncio.TimeoutError
            connecting.result()
        except Exception as exc:
            # nats-py retries the servers until it gets in; what stopped each try went to _on_error.
            why = "; ".join(self._start_errors) or _describe(exc)
            self._start_errors = []
            with contextlib.suppress(Exception):
                await nc.close()
            when = "" if self._start_refused.is_set() else f" within {cfg.start_timeout:g}s (start_timeout)"
            raise ConfigError(
                f"transport.nats: node {self.node_id!r} cannot connect to the NATS servers "
                f"{', '.join(cfg.servers)}{when}: {why}; check "
                "transport.nats.servers, the credentials and TLS options, and that a server is running"
            ) from None
        self._nc = nc
        if (
            (cfg.password is not None or cfg.token is not None)
            and cfg.tls is None
            and not all(url.startswith(("tls://", "wss://")) for url in cfg.servers)
        ):
            log.warning(
                "%s: transport.nats: a password or token is sent to the NATS server in the clear; "
                "use tls:// servers (or nkeys_seed / creds_file, which never send the secret)",
                self.node_id,
            )
        prefix = cfg.subject_prefix
        limit = cfg.max_pending_bytes
        try:
            await nc.subscribe(
                f"{prefix}.node.{token(self.node_id)}.*", cb=self._on_node_msg, pending_bytes_limit=limit
            )
            self._status = nc.new_inbox()
            await nc.subscribe(f"{self._status}.*", cb=self._on_status)
            # Takeover probes: only this incarnation answers them (see _claim).
            await nc.subscribe(f"{prefix}.node.{token(self.node_id)}.*.{self._inc}", cb=self._on_inc_probe)
            await nc.subscribe(f"{prefix}.bcast.*.{self._group}", cb=self._on_bcast, pending_bytes_limit=limit)
            await _flush(nc, cfg.connect_timeout)  # subscriptions live at the server before we return
        except Exception as exc:
            self._nc = None
            await nc.close()
            raise ConfigError(
                f"transport.nats: node {self.node_id!r} cannot subscribe under {prefix!r}: {_describe(exc)}; "
                "check the subscribe permissions of its NATS user"
            ) from None
        self._broker_up.set()
        self._spawn(self._presence_loop())

    def _connect_options(self) -> dict[str, Any]:
        cfg = self.cfg
        opts: dict[str, Any] = {
            "servers": list(cfg.servers),
            "name": f"node_comm:{self.node_id}",
            "no_echo": True,
            "allow_reconnect": True,
            "connect_timeout": cfg.connect_timeout,
            "reconnect_time_wait": cfg.reconnect_time_wait,
            "max_reconnect_attempts": cfg.max_reconnect_attempts,
            "ping_interval": cfg.ping_interval,
            "error_cb": self._on_error,
            "disconnected_cb": self._on_broker_down,
            "reconnected_cb": self._on_broker_back,
            "closed_cb": self._on_broker_closed,
        }
        if cfg.user is not None:
            opts["user"], opts["password"] = cfg.user, cfg.password
        if cfg.token is not None:
            opts["token"] = cfg.token
        if cfg.nkeys_seed is not None:
            opts["nkeys_seed"] = cfg.nkeys_seed
        if cfg.creds_file is not None:
            opts["user_credentials"] = cfg.creds_file
        tls = cfg.tls
        if tls is not None:
            try:
                ctx = ssl.create_default_context(cafile=tls.ca_file)
                if tls.cert_file is not None:
                    ctx.load_cert_chain(tls.cert_file, tls.key_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"transport.nats.tls: cannot load the certificates: {exc}") from None
            opts["tls"] = ctx
            if tls.server_name is not None:
                opts["tls_hostname"] = tls.server_name
            opts["tls_handshake_first"] = tls.handshake_first
        return opts

    async def stop(self, reason: str = "node stopped") -> None:
        nc = self._nc
        if nc is None:
            return
        self._stopping = True
        for task in list(self._redials.values()):
            task.cancel()
        self._redials.clear()
        self._dials.clear()
        bye = encode(GOODBYE, extra={"reason": reason, "inc": self._inc})
        for link in list(self._links.values()):
            if nc.is_connected:
                try:
                    await nc.publish(link.subject, bye)
                except Exception as exc:
                    log.debug("%s: goodbye to %r not sent: %s", self.node_id, link.peer_id, _describe(exc))
            self._drop(link, reason)
        self._receiving.clear()
        self._nc = None
        if nc.is_connected:
            try:
                await asyncio.wait_for(nc.flush(), self.cfg.stop_grace or 0.001)
            except Exception as exc:
                log.debug("%s: goodbyes not flushed: %s", self.node_id, _describe(exc))
        try:
            await nc.close()
        except Exception as exc:  # pragma: no cover - nats-py closing a broken connection
            log.debug("%s: closing the NATS connection: %s", self.node_id, _describe(exc))
        me = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not me]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)

    # ------------------------------------------------------------------ broker events
    async def _on_error(self, exc: Exception) -> None:
        if self._nc is None:
            if len(self._start_errors) < 3 and _describe(exc) not in self._start_errors:
                self._start_errors.append(_describe(exc))
            if isinstance(exc, (ssl.SSLError, nats_errors.AuthorizationError)) or "authorization" in str(exc).lower():
                self._start_refused.set()
        if isinstance(exc, nats_errors.SlowConsumerError):
            log.warning(
                "%s: NATS dropped messages to %s: this node reads too slowly (raise transport.nats.max_pending_bytes?)",
                self.node_id,
                exc.subject,
            )
        else:
            log.info("%s: NATS: %s", self.node_id, _describe(exc))

    async def _on_broker_down(self) -> None:
        self._broker_up.clear()
        if self._stopping or self._nc is None:
            return
        log.warning("%s: lost the connection to the NATS server; reconnecting", self.node_id)
        for link in list(self._links.values()):
            self._lost(link, f"node {self.node_id!r} lost its connection to the NATS server")

    async def _on_broker_back(self) -> None:
        if self._stopping or self._nc is None:
            return
        url = self._nc.connected_url
        log.warning("%s: reconnected to the NATS server %s", self.node_id, url.netloc if url else "?")
        self._broker_up.set()

    async def _on_broker_closed(self) -> None:
        self._broker_up.clear()
        if self._stopping or self._nc is None:
            return
        log.error("%s: gave up reconnecting to the NATS servers; the node has no peers until it restarts", self.node_id)
        for link in list(self._links.values()):
            self._drop(link, f"node {self.node_id!r} lost its connection to the NATS servers for good")

    # ------------------------------------------------------------------ links
    def _install(self, peer_id: str, *, dialled: bool, inc: str | None, group: int | None) -> None:
        gen = next(self._gens)
        link = _Link(
            peer_id,
            f"{self.cfg.subject_prefix}.node.{token(peer_id)}.{token(self.node_id)}",
            f"{self._status}.{gen}",
            dialled,
            gen,
            inc,
            group,
        )
        self._links[peer_id] = link
        if group is not None:
            self._group_links[group] = self._group_links.get(group, 0) + 1
        self._by_gen[gen] = link
        redial = self._redials.pop(peer_id, None)
        if redial is not None and redial is not asyncio.current_task():
            redial.cancel()
        # With the broker's permissions binding NATS users to node ids, the sender's id (the last
        # subject token) is vouched for by the broker: the peer counts as authenticated.
        identity = f"nats:{peer_id}" if self.cfg.broker_enforces_identity else None
        self.host.peer_connected(peer_id, self._address_of(peer_id), identity=identity)

    def _drop(self, link: _Link, reason: str, kind: DisconnectKind = DisconnectKind.LOST) -> None:
        """Forget ``link`` and tell the node (once)."""
        self._by_gen.pop(link.gen, None)
        if self._links.get(link.peer_id) is not link:
            return
        del self._links[link.peer_id]
        if link.group is not None:
            left = self._group_links.get(link.group, 1) - 1
            if left > 0:
                self._group_links[link.group] = left
            else:
                self._group_links.pop(link.group, None)
        self._receiving.drop_peer(link.peer_id)
        for out in self._outgoing.values():
            out.leave(link.peer_id, "lost")
        if self.attached:
            self.host.peer_disconnected(link.peer_id, reason, kind=kind)

    def _lost(self, link: _Link, reason: str) -> None:
        """The peer went away without a goodbye: drop the link and re-open it if we opened it."""
        current = self._links.get(link.peer_id) is link
        self._drop(link, reason)
        if current and link.dialled:
            self._schedule_redial(link.peer_id)

    def _schedule_redial(self, peer_id: str) -> None:
        if self._stopping or not self.cfg.redial.enabled or peer_id in self._redials:
            return
        timeout = self._dials.get(peer_id)
        if timeout is None:
            return
        task = asyncio.get_running_loop().create_task(self._redial(peer_id, timeout))
        self._redials[peer_id] = task

        def forget(t: asyncio.Task[None], p: str = peer_id) -> None:
            if self._redials.get(p) is t:
                del self._redials[p]

        task.add_done_callback(forget)

    async def _redial(self, peer_id: str, timeout: float) -> None:
        rc = self.cfg.redial
        delays = backoff(rc.initial_backoff, rc.max_backoff)
        attempt = 0
        while rc.max_attempts <= 0 or attempt < rc.max_attempts:
            await asyncio.sleep(next(delays))
            if not self._broker_up.is_set():
                await self._broker_up.wait()  # no point knocking while the broker is away
                delays = backoff(rc.initial_backoff, rc.max_backoff)
            if self._stopping or peer_id in self._links:
                return
            attempt += 1
            try:
                await self._handshake(peer_id, timeout)
            except ConnectFailedError as exc:
                log.info("%s: redial %d of %r failed: %s", self.node_id, attempt, peer_id, exc)
                continue
            log.info("%s: reconnected to %r", self.node_id, peer_id)
            return
        log.warning("%s: gave up redialling %r after %d attempts", self.node_id, peer_id, attempt)
        self._dials.pop(peer_id, None)

    # ------------------------------------------------------------------ connecting
    async def connect(self, node_id: str, address: str | None, timeout: float) -> None:
        if node_id in self._links:
            return
        if not self._connects.busy(node_id):  # else share the handshake under way (a redial's too)
            pending = self._redials.pop(node_id, None)
            if pending is not None:
                pending.cancel()
        await self._handshake(node_id, timeout)
        self._dials[node_id] = timeout

    async def _handshake(self, node_id: str, timeout: float) -> None:
        """Open a link to ``node_id``; a concurrent handshake with it shares this one's outcome."""
        await self._connects.run(node_id, lambda: self._shake(node_id, timeout))

    async def _shake(self, node_id: str, timeout: float) -> None:
        nc = self._nc
        if nc is None or not nc.is_connected:
            raise ConnectFailedError(
                node_id, f"node {self.node_id!r} is not connected to the NATS servers (reconnecting?)"
            )
        self._early[node_id] = []
        subject = f"{self.cfg.subject_prefix}.node.{token(node_id)}.{token(self.node_id)}"
        try:
            try:
                reply = await self._ask(
                    nc, subject, encode(HELLO, extra={"expect": node_id, "inc": self._inc, "grp": self._group}), timeout
                )
            except nats_errors.NoRespondersError:
                raise ConnectFailedError(
                    node_id,
                    f"no node {node_id!r} is connected to the NATS servers under subject prefix "
                    f"{self.cfg.subject_prefix!r}; start it first, or check the id and "
                    "transport.nats.subject_prefix",
                    self._address_of(node_id),
                ) from None
            except (asyncio.TimeoutError, nats_errors.TimeoutError):
                raise ConnectFailedError(
                    node_id,
                    f"node {node_id!r} did not answer the handshake within {timeout:g}s",
                    self._address_of(node_id),
                ) from None
            except nats_errors.Error as exc:
                raise ConnectFailedError(
                    node_id,
                    f"cannot reach node {node_id!r} through NATS: {_describe(exc)}",
                    self._address_of(node_id),
                ) from None
            try:
                ack = decode(reply.data)
            except BadFrame as exc:
                raise ConnectFailedError(node_id, f"node {node_id!r} answered the handshake with {exc}") from None
            if ack.kind != HELLO_ACK:
                raise ConnectFailedError(node_id, f"node {node_id!r} did not answer the handshake")
            refused = ack.extra.get("refused")
            if refused:
                raise ConnectFailedError(node_id, f"node {node_id!r} refused the connection: {str(refused)[:500]}")
            if self._stopping:
                raise ConnectFailedError(node_id, f"node {self.node_id!r} is stopping")
            if node_id not in self._links:
                self._install(node_id, dialled=True, inc=_incarnation(ack.extra), group=_group(ack.extra))
            else:
                self._links[node_id].dialled = True
            early = self._early.pop(node_id, [])
            for frame in early:
                link = self._links.get(node_id)
                if link is None:
                    break
                await self._on_frame(link, frame)
        finally:
            self._early.pop(node_id, None)

    async def _ask(self, nc: Client, subject: str, hello: bytes, timeout: float) -> Msg:
        """The handshake request, asked again for ``no_responders_grace`` seconds while nobody
        answers (within ``timeout`` in all)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        grace = min(self.cfg.no_responders_grace, timeout)
        while True:
            try:
                return await nc.request(subject, hello, timeout=max(0.001, timeout - (loop.time() - start)))
            except nats_errors.NoRespondersError:
                if loop.time() - start + 0.05 > grace:
                    raise
            await asyncio.sleep(0.05)

    async def _on_hello(self, source: str, frame: Frame, reply: str) -> None:
        if not reply:
            return
        refused = ""
        if self._stopping:
            refused = f"node {self.node_id!r} is stopping"
        elif frame.extra.get("expect") != self.node_id:
            refused = f"this is node {self.node_id!r}, not {frame.extra.get('expect')!r}"
        inc = _incarnation(frame.extra)
        old = self._links.get(source)
        if not refused and old is not None and old.inc is not None and old.inc != inc:
            # Another incarnation claims a connected id: a restarted peer, or an impostor. Probe the
            # old one off the subscription's task (frames from everyone else keep flowing).
            if source in self._claims:
                refused = f"node id {source!r} is already connected and being checked for another claim"
            else:
                self._claims.add(source)
                self._spawn(self._claim_then_answer(source, old, inc, _group(frame.extra), reply))
                return
        await self._answer_hello(source, inc, _group(frame.extra), reply, refused)

    async def _answer_hello(self, source: str, inc: str | None, group: int | None, reply: str, refused: str) -> None:
        if not refused:
            old = self._links.get(source)
            if old is not None:  # it restarted, or lost and regained the broker: a new link
                self._drop(
                    old, f"node {source!r} connected again (restarted, or reconnected to NATS)", DisconnectKind.REPLACED
                )
            self._install(source, dialled=source in self._dials, inc=inc, group=group)
        fields = {"refused": refused} if refused else {"node": self.node_id, "inc": self._inc, "grp": self._group}
        await self._publish(reply, encode(HELLO_ACK, extra=fields), source, quiet=True)

    async def _claim_then_answer(self, source: str, old: _Link, inc: str | None, group: int | None, reply: str) -> None:
        try:
            alive = await self._probe_incarnation(old)
        finally:
            self._claims.discard(source)
        refused = ""
        if alive:
            refused = (
                f"node id {source!r} is already connected to node {self.node_id!r} and its connection "
                "answers; a second node with the same id? (stop the other one, or pick another node_id)"
            )
            log.warning("%s: refused a second claim of node id %r: its connection answers", self.node_id, source)
        elif self._links.get(source) is old:
            self._drop(
                old,
                f"node {source!r} reconnected and its previous connection did not answer a probe",
                DisconnectKind.REPLACED,
            )
        if self._stopping:
            refused = f"node {self.node_id!r} is stopping"
        await self._answer_hello(source, inc, group, reply, refused)

    async def _probe_incarnation(self, link: _Link) -> bool:
        """Whether ``link``'s incarnation of the peer answers a probe within
        ``takeover_probe_timeout`` (the broker says "no responders" at once when it is gone)."""
        nc = self._nc
        if nc is None or link.inc is None:
            return False
        subject = f"{self.cfg.subject_prefix}.node.{token(link.peer_id)}.{token(self.node_id)}.{link.inc}"
        try:
            await nc.request(subject, _PROBE_FRAME, timeout=self.cfg.takeover_probe_timeout)
        except (asyncio.TimeoutError, nats_errors.Error):
            return False
        return True

    async def _on_inc_probe(self, msg: Msg) -> None:
        """A takeover probe for this incarnation: answer it (nothing else is read from it)."""
        if msg.reply and self._nc is not None and not self._stopping:
            with contextlib.suppress(Exception):
                await self._nc.publish(msg.reply, _PROBE_FRAME)

    # ------------------------------------------------------------------ inbound
    async def _on_node_msg(self, msg: Msg) -> None:
        source = untoken(msg.subject.rpartition(".")[2])
        if source is None or source == self.node_id or self._nc is None:
            return
        if msg.data == _PROBE_FRAME and source in self._links:
            return  # the common case of a probe: nothing to do (its delivery was the point)
        try:
            frame = decode(msg.data)
        except BadFrame as exc:
            log.warning("%s: dropped a malformed frame from %r: %s", self.node_id, source, exc)
            return
        if frame.kind == HELLO:
            await self._on_hello(source, frame, msg.reply)
            return
        if frame.kind == BATCH:
            try:
                frames = split_batch(frame.payload)
            except BadFrame as exc:
                log.warning("%s: dropped a malformed batch from %r: %s", self.node_id, source, exc)
                return
            for sub in frames:
                await self._on_peer_frame(source, sub)
            return
        await self._on_peer_frame(source, frame)

    async def _on_peer_frame(self, source: str, frame: Frame) -> None:
        link = self._links.get(source)
        if link is None:
            early = self._early.get(source)
            if early is not None:  # its answer to our handshake is still on the way
                if len(early) < _MAX_EARLY:
                    early.append(frame)
                return
            await self._tell_unlinked(source, frame)
            return
        try:
            await self._on_frame(link, frame)
        except BadFrame as exc:
            log.warning("%s: dropped a malformed frame from %r: %s", self.node_id, source, exc)

    async def _tell_unlinked(self, source: str, frame: Frame) -> None:
        """A peer sends as if linked, but is not (we restarted, or dropped it): say goodbye, at most
        once a second per peer, so it drops its side at once."""
        if frame.kind not in (_REQUEST, _NOTIFY, MessageType.HEARTBEAT, PROBE):
            return
        now = time.monotonic()
        if now - self._told.get(source, 0.0) < 1.0:
            return
        if len(self._told) > 4096:
            self._told.clear()
        self._told[source] = now
        subject = f"{self.cfg.subject_prefix}.node.{token(source)}.{token(self.node_id)}"
        reason = f"node {self.node_id!r} has no connection from node {source!r} (it restarted or dropped it)"
        await self._publish(
            subject, encode(GOODBYE, extra={"reason": reason, "unlinked": True, "inc": self._inc}), source, quiet=True
        )

    async def _on_frame(self, link: _Link, frame: Frame) -> None:
        kind = frame.kind
        mtype = MESSAGE_TYPES.get(kind)
        source = link.peer_id
        if mtype is not None:
            if frame.transfer:
                inc = await self._begin_incoming(
                    source, frame, mtype, frame.id, frame.deadline, metadata_of(frame.extra)
                )
                if inc is not None and frame.extra.get("xs") is True:
                    await self._join_chunks(source, frame.transfer, inc)
            else:
                self._deliver_read(
                    link,
                    Message(
                        frame.id,
                        mtype,
                        source,
                        self.node_id,
                        frame.method,
                        frame.payload,  # type: ignore[arg-type]
                        frame.serializer,
                        metadata_of(frame.extra),
                        error_of(frame.extra),
                        frame.deadline,
                    ),
                )
        elif kind == CHUNK:
            await self._on_chunk(source, frame)
        elif kind == CHUNK_ACK:
            out = self._outgoing.get(frame.transfer)
            if out is not None:
                out.ack(source, frame.size)
        elif kind == ABORT:
            if frame.id == _RECEIVER:
                out = self._outgoing.get(frame.transfer)
                if out is not None:
                    out.leave(source, "refused")
            else:
                self._receiving.drop(source, frame.transfer)
        elif kind == GOODBYE:
            if link.inc is not None and _incarnation(frame.extra) != link.inc:
                # Not from the incarnation of this link: a restarted peer (its HELLO replaces the
                # link) or another node claiming its id. The link stays while it answers.
                if link.peer_id not in self._claims:
                    self._claims.add(link.peer_id)
                    self._spawn(self._check_link(link))
                return
            reason = frame.extra.get("reason")
            text = str(reason)[:1000] if reason else f"node {source!r} said goodbye"
            if frame.extra.get("unlinked") is True:  # it is alive but lost our link: open it again
                self._lost(link, text)
            else:
                self._drop(link, text, DisconnectKind.STOPPED)
        elif kind != PROBE and kind != HELLO_ACK:
            log.warning("%s: frame of unknown kind %d from %r", self.node_id, kind, source)

    async def _check_link(self, link: _Link) -> None:
        try:
            alive = await self._probe_incarnation(link)
        finally:
            self._claims.discard(link.peer_id)
        if not alive and self._links.get(link.peer_id) is link:
            self._lost(link, f"node {link.peer_id!r} is gone: its connection did not answer a probe")

    def _deliver_read(self, link: _Link, msg: Message) -> None:
        """Deliver a message read from ``link``, or park it while the node does not read that peer
        (its notify handlers are at their cap: ``TransportHost.reading_paused``). The broker cannot
        be told to stop pushing one peer's messages, so they wait here, in order, at most
        as many as the kernel lets wait (``past_held_bound``); past that the peer is dropped."""
        if link.parked is None:
            paused = getattr(self.host, "reading_paused", None)
            gate = paused(link.peer_id) if paused is not None else None
            if gate is None:
                self._deliver(msg)
                return
            link.parked = deque()
            self._spawn(self._drain(link, gate))
        size = len(msg.payload)
        bound = past_held_bound(len(link.parked), link.parked_bytes, size)
        if bound is not None:
            self._lost(
                link,
                f"node {link.peer_id!r} sent {len(link.parked) + 1} messages ({link.parked_bytes + size} bytes) "
                f"while this node did not read it ({bound})",
            )
            return
        link.parked.append(msg)
        link.parked_bytes += size

    async def _drain(self, link: _Link, gate: Awaitable[None]) -> None:
        """Deliver ``link``'s parked messages, in order, as the node reads that peer again."""
        paused = getattr(self.host, "reading_paused", None)
        parked = link.parked
        assert parked is not None
        while True:
            await gate
            if self._links.get(link.peer_id) is not link:  # dropped meanwhile: nothing to deliver to
                parked.clear()
                link.parked_bytes = 0
                return
            while parked:
                next_gate = paused(link.peer_id) if paused is not None else None
                if next_gate is not None:
                    gate = next_gate
                    break
                msg = parked.popleft()
                link.parked_bytes -= len(msg.payload)
                self._deliver(msg)
            else:
                link.parked = None
                return

    def _deliver(self, msg: Message) -> None:
        try:
            self.host.deliver(msg)
        except Exception:
            log.exception("%s: deliver failed for a message from %r", self.node_id, msg.source)

    async def _begin_incoming(
        self,
        source: str,
        frame: Frame,
        mtype: MessageType,
        ident: int,
        deadline: float | None,
        metadata: dict[str, str],
    ) -> Incoming | None:
        """Take a transfer head; returns the transfer when it is under way (``None``: refused, or
        already complete when empty)."""
        total = frame.size
        window = frame.extra.get("win")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise BadFrame("transfer head without a flow window")
        cfg = self.cfg
        what = frame.method or mtype.name
        why = self._receiving.refusal(total, cfg.max_payload_size, what, source, self.node_id)
        if why is None:
            inc = Incoming(source, mtype, ident, frame.method, frame.serializer, deadline, metadata, total, window)
            if not self._receiving.begin(frame.transfer, inc):
                raise BadFrame(f"transfer {frame.transfer} is already in progress")
            if total == 0:
                self._receiving.drop(source, frame.transfer)
                self._finish(inc)
                return None
            return inc
        await self._send_abort(source, frame.transfer)
        if mtype is _REQUEST:
            err = Message(
                ident,
                _ERROR,
                self.node_id,
                source,
                frame.method,
                error=ErrorInfo(ErrorCode.RESOURCE_EXHAUSTED.value, why),
            )
            await self._send_quiet(err)
        elif mtype is _RESPONSE or mtype is _ERROR:  # fail our own call that waits for it
            self._deliver(
                Message(
                    ident,
                    _ERROR,
                    source,
                    self.node_id,
                    frame.method,
                    error=ErrorInfo(ErrorCode.RESOURCE_EXHAUSTED.value, why),
                )
            )
        else:
            log.warning("%s: dropped %s", self.node_id, why)
        return None

    def _chunk_subject(self, transfer: int, source: str | None = None) -> str:
        """Where the chunks of broadcast ``transfer`` of ``source`` (default: this node) go."""
        return f"{self.cfg.subject_prefix}.xfer.{token(source or self.node_id)}.{transfer}"

    async def _join_chunks(self, source: str, transfer: int, inc: Incoming) -> None:
        """Subscribe to a broadcast's chunk subject, then tell the sender (a CHUNK_ACK of 0 bytes,
        sent after the SUB on the same connection, so the broker knows of the interest first)."""
        nc = self._nc
        if nc is None:
            return

        async def on_chunk(msg: Msg) -> None:
            try:
                frame = decode(msg.data)
            except BadFrame as exc:
                log.warning("%s: dropped a malformed chunk from %r: %s", self.node_id, source, exc)
                return
            if frame.transfer != transfer:
                return
            if frame.kind == CHUNK:
                await self._on_chunk(source, frame)
            elif frame.kind == ABORT:
                self._receiving.drop(source, transfer)

        try:
            # An honest sender keeps one window in flight: room for two, whatever a head claims.
            limit = min(max(2 * inc.window, 4 * self._chunk_size), self.cfg.max_pending_bytes)
            inc.sub = await nc.subscribe(self._chunk_subject(transfer, source), cb=on_chunk, pending_bytes_limit=limit)
        except nats_errors.Error as exc:
            log.warning("%s: cannot take a broadcast from %r: %s", self.node_id, source, _describe(exc))
            self._receiving.drop(source, transfer)
            await self._send_abort(source, transfer)
            return
        if (source, transfer) not in self._receiving.transfers:  # ended meanwhile
            self._transfer_ended(inc)
            return
        await self._send_control(source, encode(CHUNK_ACK, transfer=transfer, size=0))

    def _transfer_ended(self, inc: Incoming) -> None:
        sub, inc.sub = inc.sub, None
        if sub is not None and self._nc is not None:
            self._spawn(_unsubscribe(sub))

    async def _on_chunk(self, source: str, frame: Frame) -> None:
        done = self._receiving.add(source, frame.transfer, frame.size, frame.payload)
        if done is None or done is True:
            inc = self._receiving.transfers.get((source, frame.transfer))
            if inc is None:
                return
            self._progress(inc)
            if inc.got - inc.acked >= max(1, inc.window // 2):
                inc.acked = inc.got
                await self._send_control(source, encode(CHUNK_ACK, transfer=frame.transfer, size=inc.got))
            return
        if done is False:
            log.warning("%s: chunk out of place in a payload from %r; transfer dropped", self.node_id, source)
            await self._send_abort(source, frame.transfer)
            return
        self._progress(done)
        self._finish(done)

    def _progress(self, inc: Incoming) -> None:
        """Tell the node how much of ``inc`` arrived (a reply's caller, or the ``transfer`` event)."""
        try:
            self.host.transfer_progress(inc.source, inc.id, inc.mtype, inc.method, inc.got, inc.total)
        except Exception:
            log.exception("%s: transfer_progress failed for a payload from %r", self.node_id, inc.source)

    def _finish(self, inc: Incoming) -> None:
        payload = inc.buf if inc.buf is not None else b""
        inc.buf = None
        err = None
        self._deliver(
            Message(
                inc.id,
                inc.mtype,
                inc.source,
                self.node_id,
                inc.method,
                payload,  # type: ignore[arg-type]
                inc.serializer,
                inc.metadata,
                err,
                inc.deadline,
            )
        )

    async def _send_abort(self, peer: str, transfer: int) -> None:
        await self._send_control(peer, encode(ABORT, id=_RECEIVER, transfer=transfer))

    async def _send_control(self, peer: str, data: bytes) -> None:
        subject = f"{self.cfg.subject_prefix}.node.{token(peer)}.{token(self.node_id)}"
        await self._publish(subject, data, peer, quiet=True)

    async def _on_status(self, msg: Msg) -> None:
        headers = msg.headers
        if not headers or headers.get("Status") != "503":
            return
        try:
            gen = int(msg.subject.rpartition(".")[2])
        except ValueError:
            return
        link = self._by_gen.get(gen)
        if link is not None and self._links.get(link.peer_id) is link:
            self._lost(
                link,
                f"node {link.peer_id!r} is gone: nothing listens on its NATS subject any more "
                "(its process ended or it lost its connection to NATS)",
            )

    async def _presence_loop(self) -> None:
        """Probe every peer; the broker answers "no responders" for one that is gone. Also drop
        chunked payloads that stalled."""
        cfg = self.cfg
        while True:
            await asyncio.sleep(cfg.presence_interval)
            nc = self._nc
            if nc is None:
                return
            for transfer, inc in self._receiving.stalled(cfg.transfer_timeout):
                why = (
                    f"payload of {inc.method or inc.mtype.name} from {inc.source!r} stalled: no part of it "
                    f"for {cfg.transfer_timeout:g}s (transport.nats.transfer_timeout)"
                )
                log.warning("%s: %s", self.node_id, why)
                await self._send_abort(inc.source, transfer)
                if inc.mtype is _RESPONSE or inc.mtype is _ERROR:
                    self._deliver(
                        Message(
                            inc.id,
                            _ERROR,
                            inc.source,
                            self.node_id,
                            inc.method,
                            error=ErrorInfo(ErrorCode.UNAVAILABLE.value, why),
                        )
                    )
            if not nc.is_connected:
                continue
            for link in list(self._links.values()):
                try:
                    await nc.publish(link.subject, _PROBE_FRAME, reply=link.reply)
                except Exception as exc:
                    log.debug("%s: probe of %r not sent: %s", self.node_id, link.peer_id, _describe(exc))
                    break

    # ------------------------------------------------------------------ outbound
    async def _publish(self, subject: str, data: bytes, peer: str, reply: str = "", *, quiet: bool = False) -> None:
        """Publish one NATS message; NATS errors become node-comm errors (or a log line when quiet)."""
        nc = self._nc
        try:
            if nc is None:
                raise nats_errors.ConnectionClosedError
            await nc.publish(subject, data, reply=reply)
        except nats_errors.MaxPayloadError:
            if quiet:
                return
            raise PayloadTooLargeError(
                f"a frame of {len(data)} bytes to {peer!r} is over the NATS server's max_payload"
            ) from None
        except (nats_errors.Error, OSError) as exc:
            if quiet:
                log.debug("%s: frame to %r not sent: %s", self.node_id, peer, _describe(exc))
                return
            raise NodeNotConnectedError(
                peer, f"cannot reach node {peer!r}: the connection to NATS is down ({_describe(exc)})"
            ) from None

    async def _send_quiet(self, msg: Message) -> None:
        try:
            await self.send(msg)
        except NodeCommError as exc:
            log.debug("%s: could not send %s to %r: %s", self.node_id, msg.type.name, msg.target, exc)

    def _check_size(self, msg: Message) -> Message | None:
        """``msg``, or an ERROR in place of a response too large to send; raises for a request."""
        n = len(msg.payload)
        limit = self.cfg.max_payload_size
        if n <= limit:
            return msg
        text = f"payload of {msg.method or msg.type.name} to {msg.target!r} is {n} bytes, over max_payload_size={limit}"
        if msg.type is _RESPONSE:  # tell the caller instead of leaving it waiting
            return Message(
                msg.id,
                _ERROR,
                msg.source,
                msg.target,
                msg.method,
                error=ErrorInfo(ErrorCode.RESOURCE_EXHAUSTED.value, text),
            )
        raise PayloadTooLargeError(text)

    async def send(self, message: Message) -> None:
        link = self._links.get(message.target)
        if link is None:
            raise NodeNotConnectedError(message.target)
        msg = self._check_size(message)
        assert msg is not None
        if len(msg.payload) <= self._chunk_size:
            frame = encode_message(msg)
            if len(frame) <= self._max_frame - _FRAME_ROOM // 4:
                await self._coalesce(link, frame)
                return
        out = await self._send_transfer([msg], msg.payload)
        why = out.gone.get(msg.target)
        if why == "lost":
            raise NodeNotConnectedError(msg.target, f"connection to node {msg.target!r} was lost during a transfer")
        if why == "stalled":
            raise NodeCommError(
                f"node {msg.target!r} took no part of the payload of {msg.method or msg.type.name} for "
                f"{self.cfg.transfer_timeout:g}s; transfer dropped",
                code=ErrorCode.UNAVAILABLE,
            )
        # "refused": the receiver answers the call with RESOURCE_EXHAUSTED itself.

    async def _coalesce(self, link: _Link, frame: bytes) -> None:
        """Publish ``frame`` to ``link``'s peer, together with the small frames other senders queue
        for it meanwhile: the first sender yields once to the loop, then publishes what queued up
        as one NATS message (a ``BATCH`` when there are several), within the broker's max_payload."""
        size = len(frame) + 4
        limit = self._max_frame - _FRAME_ROOM // 4
        while True:
            queued = link.out
            if queued is None:
                break
            if link.out_size + size <= limit:
                queued.append(frame)
                link.out_size += size
                return
            link.out = None  # full: out it goes now (the publish may yield: look again after it)
            await self._publish_batch(link, queued)
        mine = link.out = [frame]
        link.out_size = size
        try:
            await asyncio.sleep(0)
        except BaseException:
            # Cancelled (a deadline, or the peer cancelled the call this answers): this frame is
            # abandoned, but the frames others queued behind it still go out, or they would
            # wait for a sender that never comes.
            if link.out is mine:
                link.out = None
                del mine[0]
                if mine:
                    self._spawn(self._publish_batch(link, mine, quiet=True))
            raise
        if link.out is mine:  # else a sender that found it full published it
            link.out = None
            await self._publish_batch(link, mine)

    async def _publish_batch(self, link: _Link, frames: list[bytes], *, quiet: bool = False) -> None:
        data = frames[0] if len(frames) == 1 else encode_batch(frames)
        await self._publish(link.subject, data, link.peer_id, link.reply, quiet=quiet)

    def _head(self, msg: Message, transfer: int, size: int, shared: bool) -> bytes:
        """The head frame of ``msg``'s payload sent as transfer ``transfer`` of ``size`` bytes;
        ``shared``: its chunks go on the transfer's own subject (a broadcast)."""
        extra = message_extra(msg) or {}
        extra["win"] = self.cfg.flow_window
        if shared:
            extra["xs"] = True
        return encode(
            int(msg.type),
            id=msg.id,
            method=msg.method,
            serializer=msg.serializer,
            deadline=msg.deadline,
            transfer=transfer,
            size=size,
            extra=extra,
        )

    async def _send_transfer(self, msgs: list[Message], payload: bytes) -> Outgoing:
        """Send ``payload`` in chunks after a head frame to each target of ``msgs``, at most one
        flow window ahead of the slowest receiver; returns who left the transfer and why. For one
        target the chunks follow the head on its subject; for several (a broadcast) they go once,
        on the transfer's own subject, when every target said it subscribed."""
        cfg = self.cfg
        transfer = next(self._transfers)
        shared = len(msgs) > 1
        out = Outgoing([m.target for m in msgs], ready=not shared)
        links = [self._links[m.target] for m in msgs if m.target in self._links]
        chunks_to = self._chunk_subject(transfer) if shared or not links else links[0].subject
        self._outgoing[transfer] = out
        n = len(payload)
        view = memoryview(payload)
        step = self._chunk_size
        window = cfg.flow_window
        peer = msgs[0].target if not shared else "<broadcast>"
        done = False
        try:
            for m in msgs:
                link = self._links.get(m.target)
                if link is None:
                    out.leave(m.target, "lost")
                    continue
                await self._publish(link.subject, self._head(m, transfer, n, shared), m.target, link.reply)
            off = 0
            while off < n and out.acked:
                while out.acked and out.blocked(off, window):
                    out.wake.clear()
                    try:
                        await asyncio.wait_for(out.wake.wait(), cfg.transfer_timeout)
                    except asyncio.TimeoutError:
                        for p, got in list(out.acked.items()):
                            if got < 0 or off - got >= window:
                                out.leave(p, "stalled")
                if not out.acked:
                    break
                chunk = encode(CHUNK, transfer=transfer, size=off, payload=view[off : off + step])
                await self._publish(chunks_to, chunk, peer)
                off += step
                sent = min(off, n)
                for m in msgs:
                    if m.progress is not None and m.target in out.acked:
                        report_progress(m.progress, "sent", sent, n)
                await asyncio.sleep(0)  # let other senders' frames in between the chunks
            done = off >= n
        finally:
            del self._outgoing[transfer]
            if not done and self._nc is not None:
                abort = encode(ABORT, id=_SENDER, transfer=transfer)
                self._spawn(self._publish(chunks_to, abort, peer, quiet=True))
        return out

    async def send_many(self, messages: Sequence[Message]) -> list[BaseException | None]:
        """One broadcast. A payload from ``broadcast_once_min`` bytes on is published once: each
        target gets a small head frame with its own call id, then the chunks go once on the
        transfer's own subject, which only the targets join; the broker fans them out. Smaller
        payloads are published once per broadcast group (see :meth:`_send_grouped`)."""
        first = messages[0] if messages else None
        if (
            first is None
            or len(messages) < 2
            or first.type not in (_REQUEST, _NOTIFY)
            or any(
                m.payload is not first.payload
                or m.method != first.method
                or m.type is not first.type
                or m.serializer != first.serializer
                for m in messages
            )
        ):
            return await super().send_many(messages)
        if len(first.payload) < self.cfg.broadcast_once_min:
            if type(first) is Message and all(
                m.deadline == first.deadline and m.metadata == first.metadata for m in messages
            ):
                return await self._send_grouped(messages)
            return await super().send_many(messages)
        results: list[BaseException | None] = [None] * len(messages)
        index: dict[str, int] = {}
        for i, m in enumerate(messages):
            if m.target not in self._links or m.target in index:
                results[i] = NodeNotConnectedError(m.target)
            else:
                index[m.target] = i
        if not index:
            return results
        try:
            self._check_size(first)
        except PayloadTooLargeError as exc:
            return [exc] * len(messages)
        try:
            out = await self._send_transfer([messages[i] for i in index.values()], first.payload)
        except NodeCommError as exc:
            for i in index.values():
                results[i] = exc
            return results
        for peer, why in out.gone.items():
            if why == "lost":
                results[index[peer]] = NodeNotConnectedError(
                    peer, f"connection to node {peer!r} was lost during a broadcast"
                )
            elif why == "stalled":
                results[index[peer]] = NodeCommError(
                    f"node {peer!r} took no part of the broadcast payload for {self.cfg.transfer_timeout:g}s",
                    code=ErrorCode.UNAVAILABLE,
                )
        return results

    async def _send_grouped(self, messages: Sequence[Message]) -> list[BaseException | None]:
        """A small broadcast: one frame per broadcast group holding at least two targets and at
        least half of this node's peers of the group, naming those targets and their call ids, on
        the group's subject; the broker fans it out to the group. Other targets get their own."""
        first = messages[0]
        results: list[BaseException | None] = [None] * len(messages)
        try:
            self._check_size(first)
        except PayloadTooLargeError as exc:
            return [exc] * len(messages)
        groups: dict[int, list[int]] = {}
        single: list[int] = []
        seen: set[str] = set()
        for i, m in enumerate(messages):
            link = self._links.get(m.target)
            if link is None or m.target in seen:
                results[i] = NodeNotConnectedError(m.target)
                continue
            seen.add(m.target)
            if link.group is None:
                single.append(i)
            else:
                groups.setdefault(link.group, []).append(i)
        subject = f"{self.cfg.subject_prefix}.bcast.{token(self.node_id)}."
        limit = self._max_frame - _FRAME_ROOM // 4
        for group, idx in groups.items():
            if len(idx) < 2 or 2 * len(idx) < self._group_links.get(group, 0):
                single.extend(idx)
                continue
            extra = message_extra(first) or {}
            extra["to"] = [[messages[i].target, messages[i].id] for i in idx]
            frame = encode(
                BCAST,
                method=first.method,
                serializer=first.serializer,
                deadline=first.deadline,
                size=int(first.type),
                extra=extra,
                payload=first.payload,
            )
            if len(frame) > limit:
                single.extend(idx)
                continue
            try:
                await self._publish(subject + str(group), frame, "<broadcast>")
            except NodeCommError as exc:
                for i in idx:
                    results[i] = exc
        for i in single:
            try:
                await self.send(messages[i])
            except Exception as exc:
                results[i] = exc
        return results

    async def _on_bcast(self, msg: Msg) -> None:
        """A small broadcast to this node's group: acted on only when it names this node and comes
        from a peer linked to it."""
        parts = msg.subject.rsplit(".", 2)
        source = untoken(parts[-2]) if len(parts) == 3 else None
        link = self._links.get(source) if source is not None and source != self.node_id else None
        if link is None or self._nc is None:
            return
        data = msg.data
        if self._named not in data:  # cheap: most frames for other members of the group
            return
        try:
            frame = decode(data)
            if frame.kind != BCAST:
                raise BadFrame(f"frame of kind {frame.kind} on a broadcast subject")
            ident = bcast_call_id(frame.extra, self.node_id)
            if ident is None:
                return
            mtype = MESSAGE_TYPES.get(frame.size)
            if mtype is not _REQUEST and mtype is not _NOTIFY:
                raise BadFrame("a broadcast carries a request or a notify")
            metadata = metadata_of(frame.extra)
        except BadFrame as exc:
            log.warning("%s: dropped a malformed broadcast from %r: %s", self.node_id, source, exc)
            return
        # Read from that peer like any of its small messages: parked while the node does not read it.
        self._deliver_read(
            link,
            Message(
                ident,
                mtype,
                link.peer_id,
                self.node_id,
                frame.method,
                frame.payload,  # type: ignore[arg-type]
                frame.serializer,
                metadata,
                None,
                frame.deadline,
            ),
        )

    async def disconnect(self, node_id: str, reason: str, *, may_return: bool = False) -> None:
        link = self._links.get(node_id)
        heartbeat = may_return  # dropped for silence (heartbeat timeout): the peer may come back
        if not heartbeat:
            self._dials.pop(node_id, None)
            pending = self._redials.pop(node_id, None)
            if pending is not None:
                pending.cancel()
        if link is None:
            return
        if heartbeat:  # the peer may be frozen or cut off: no goodbye, and redial (it may come back)
            self._lost(link, reason)
            return
        await self._publish(
            link.subject, encode(GOODBYE, extra={"reason": reason, "inc": self._inc}), node_id, quiet=True
        )
        self._drop(link, reason)

    # ------------------------------------------------------------------ helpers
    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _unsubscribe(sub: Any) -> None:
    with contextlib.suppress(Exception):
        await sub.unsubscribe()


async def _flush(nc: Client, timeout: float) -> None:
    """Wait until the server has processed everything sent so far. nats-py's ``flush()`` writes its
    PING ahead of commands still in the client's buffer (SUBs just made), so its PONG alone does
    not prove the subscriptions are live: write the buffer out first."""
    force = getattr(nc, "_flush_pending", None)
    if force is not None:
        await force(force_flush=True)
    await nc.flush(timeout=max(1, math.ceil(timeout)))


def _describe(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    return f"{name}: {text}" if text and text != name else name
