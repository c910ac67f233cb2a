"""Options of the ``nats`` transport (YAML ``transport.nats``). Importing this never imports nats-py.

Every value is checked when the config is built; a bad one is a :class:`~node_comm.ConfigError`
naming its key path (``transport.nats.servers[1]: ...``) and what to write instead.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field

from node_comm import ConfigError

KiB = 1024
MiB = 1024 * KiB
_PATH = "transport.nats"
_URL = re.compile(r"^(nats|tls|ws|wss)://[^\s/]+(/.*)?$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")


def _number(path: str, value: object, *, minimum: float = 0.0, strict: bool = True) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > minimum if strict else value >= minimum)  # type: ignore[operator]
    if not ok:
        want = f"a number > {minimum:g}" if strict else f"a number >= {minimum:g}"
        raise ConfigError(f"{path}: expected {want}, got {value!r}")


def _integer(path: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{path}: expected an integer >= {minimum}, got {value!r}")


def _file(path: str, value: str | None) -> None:
    if value is not None and not os.path.isfile(value):
        raise ConfigError(f"{path}: file {value!r} does not exist (looked in {os.getcwd()})")


@dataclass
class NatsTlsConfig:
    """TLS to the NATS servers (YAML ``transport.nats.tls``): verify them against ``ca_file``
    (system roots when absent), present ``cert_file``/``key_file`` when the server asks for a client
    certificate, check ``server_name`` instead of the host in the URL; ``handshake_first`` for
    servers configured with ``handshake_first``."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None
    handshake_first: bool = False

    def __post_init__(self) -> None:
        for key in ("ca_file", "cert_file", "key_file"):
            _file(f"{_PATH}.tls.{key}", getattr(self, key))
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError(
                f"{_PATH}.tls: cert_file and key_file go together (a client certificate and its key); "
                "give both or neither"
            )


@dataclass
class NatsRedialConfig:
    """Background re-handshake with a peer this node connected to, after the link dropped (peer
    gone, broker connection lost). The n-th try waits ``min(initial_backoff * 2**(n-1),
    max_backoff)`` seconds; ``max_attempts: 0`` tries until the node stops."""

    enabled: bool = True
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    max_attempts: int = 0

    def __post_init__(self) -> None:
        _number(f"{_PATH}.redial.initial_backoff", self.initial_backoff)
        _number(f"{_PATH}.redial.max_backoff", self.max_backoff)
        _integer(f"{_PATH}.redial.max_attempts", self.max_attempts, 0)


@dataclass
class NatsTransportConfig:
    """Where the NATS servers are, how to log in to them, and how payloads travel.

    Credentials are those nats-py offers: ``user``/``password``, ``token``, an NKey seed file
    (``nkeys_seed``) or a ``.creds`` file (``creds_file``, JWT + seed); at most one kind.
    """

    #: Server URLs (``nats://host:port``, ``tls://host:port``); several for failover or a cluster.
    servers: list[str] = field(default_factory=lambda: ["nats://127.0.0.1:4222"])
    #: First subject token(s) of every subject this transport uses: isolates deployments on one broker.
    subject_prefix: str = "node_comm"
    user: str | None = None
    password: str | None = None
    token: str | None = None
    nkeys_seed: str | None = None
    creds_file: str | None = None
    tls: NatsTlsConfig | None = None
    #: Seconds to dial one server.
    connect_timeout: float = 2.0
    #: Seconds ``start()`` keeps trying the servers before it fails.
    start_timeout: float = 10.0
    #: Seconds ``connect()`` keeps asking when no node answers ("no responders"): in a cluster, a
    #: node that just started takes a moment to be known on every server.
    no_responders_grace: float = 0.5
    #: Seconds between tries to reach a server again after the connection to it broke.
    reconnect_time_wait: float = 0.5
    #: Tries to reach a server again before the node gives up on the broker (-1: forever).
    max_reconnect_attempts: int = -1
    #: Seconds between pings to the server (the client side of broker keepalive).
    ping_interval: float = 20.0
    #: Seconds between presence probes to each peer: a peer whose subscription is gone (process
    #: killed, broker connection lost) is dropped at the next probe, its pending calls failing.
    presence_interval: float = 1.0
    #: Payloads larger than this travel in chunks of this size (capped by the server's max_payload).
    chunk_size: int = 512 * KiB
    #: Largest payload sent or accepted; larger ones fail that call with RESOURCE_EXHAUSTED.
    max_payload_size: int = 2048 * MiB
    #: Bytes of chunked payloads this node may be receiving at once, from all peers together
    #: (``None``: twice ``max_payload_size``); a transfer past it fails with RESOURCE_EXHAUSTED.
    max_receive_buffer: int | None = None
    #: Broadcast payloads from this size on are published once and fanned out by the broker;
    #: smaller ones go to each target on its own.
    broadcast_once_min: int = 64 * KiB
    #: Broadcast subjects per sender: each node listens on one, chosen by its id (and told to its
    #: peers), and a small broadcast is published once per group holding at least half of the
    #: sender's peers of that group (others get their own message). More groups: fewer nodes read
    #: a broadcast not meant for them; fewer: fewer publishes for a broadcast to everyone.
    broadcast_groups: int = 64
    #: Bytes of one chunked payload a sender may have in flight before the receiver acknowledges.
    flow_window: int = 8 * MiB
    #: Seconds a chunked transfer may make no progress before either side drops it.
    transfer_timeout: float = 30.0
    #: Bytes of messages the client may queue for this node before the broker's messages to it
    #: are dropped as a slow consumer (nats-py's subscription pending limit).
    max_pending_bytes: int = 256 * MiB
    #: Seconds ``stop()`` waits for goodbye frames to flush.
    stop_grace: float = 1.0
    #: Seconds a connected peer's connection has to answer a probe when another node claims its id
    #: (a restarted peer): while it answers, the claim is refused; a gone one is replaced at once.
    takeover_probe_timeout: float = 1.0
    #: Set only when the broker binds NATS users to node ids with per-subject publish permissions
    #: (see the plugin README): peers are then reported as authenticated, named by their node id.
    broker_enforces_identity: bool = False
    redial: NatsRedialConfig = field(default_factory=NatsRedialConfig)

    def __post_init__(self) -> None:
        if isinstance(self.servers, str):
            self.servers = [self.servers]
        if not isinstance(self.servers, list) or not self.servers:
            raise ConfigError(f"{_PATH}.servers: expected a non-empty list of URLs, got {self.servers!r}")
        for i, url in enumerate(self.servers):
            if not isinstance(url, str) or not _URL.match(url):
                raise ConfigError(
                    f"{_PATH}.servers[{i}]: expected a URL such as 'nats://127.0.0.1:4222' "
                    f"(schemes nats, tls, ws, wss), got {url!r}"
                )
        prefix = self.subject_prefix
        if not isinstance(prefix, str) or not all(_TOKEN.match(t) for t in prefix.split(".")):
            raise ConfigError(
                f"{_PATH}.subject_prefix: expected dot-separated tokens of letters, digits, '_' and '-' "
                f"(e.g. 'node_comm' or 'prod.node_comm'), got {prefix!r}"
            )
        kinds = [k for k in ("user", "token", "nkeys_seed", "creds_file") if getattr(self, k) is not None]
        if len(kinds) > 1:
            raise ConfigError(
                f"{_PATH}: {' and '.join(kinds)} are given; use one kind of credentials "
                "(user/password, token, nkeys_seed or creds_file)"
            )
        if (self.user is None) != (self.password is None):
            raise ConfigError(f"{_PATH}: user and password go together; give both or neither")
        _file(f"{_PATH}.nkeys_seed", self.nkeys_seed)
        _file(f"{_PATH}.creds_file", self.creds_file)
        for key in (
            "connect_timeout",
            "start_timeout",
            "reconnect_time_wait",
            "ping_interval",
            "presence_interval",
            "transfer_timeout",
            "takeover_probe_timeout",
        ):
            _number(f"{_PATH}.{key}", getattr(self, key))
        _number(f"{_PATH}.stop_grace", self.stop_grace, strict=False)
        _number(f"{_PATH}.no_responders_grace", self.no_responders_grace, strict=False)
        _integer(f"{_PATH}.max_reconnect_attempts", self.max_reconnect_attempts, -1)
        _integer(f"{_PATH}.chunk_size", self.chunk_size, 4 * KiB)
        _integer(f"{_PATH}.max_payload_size", self.max_payload_size, 0)
        _integer(f"{_PATH}.broadcast_once_min", self.broadcast_once_min, 0)
        _integer(f"{_PATH}.broadcast_groups", self.broadcast_groups, 1)
        if self.broadcast_groups > 65536:
            raise ConfigError(f"{_PATH}.broadcast_groups: expected at most 65536, got {self.broadcast_groups!r}")
        _integer(f"{_PATH}.flow_window", self.flow_window, self.chunk_size)
        _integer(f"{_PATH}.max_pending_bytes", self.max_pending_bytes, 1 * MiB)
        if self.max_receive_buffer is not None:
            _integer(f"{_PATH}.max_receive_buffer", self.max_receive_buffer, 0)

    @property
    def receive_buffer(self) -> int:
        """Bytes of chunked payloads this node may be receiving at once."""
        if self.max_receive_buffer is not None:
            return self.max_receive_buffer
        return 2 * self.max_payload_size
