"""Options of the ``grpc`` transport (YAML ``transport.grpc``). Importing this never imports grpc.

Every number is range-checked when the dataclass is built (from YAML or in code); a bad one is a
:class:`node_comm.ConfigError` naming its key path under ``transport.grpc``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from node_comm import ConfigError
from node_comm.validate import GiB, MiB, check_bytes, check_int, check_number, check_seconds

#: Where these options live in a config file: the prefix of every error's key path.
PATH = "transport.grpc"
#: Ranges of the size options. ``chunk_size`` and ``max_batch_bytes`` together stay under the
#: 64 MiB every node accepts in one gRPC message, so any two nodes' settings work together.
MAX_CHUNK_SIZE = 16 * MiB
MAX_BATCH_BYTES = 32 * MiB
MAX_SEND_QUEUE_BYTES = 1 * GiB
MAX_PAYLOAD_SIZE = 64 * GiB
MAX_RECEIVE_BUFFER = 2 * MAX_PAYLOAD_SIZE
MIN_BUFFER = 1024
#: Seconds: an accepted stream may wait this long at most for its handshake (it holds a connection
#: slot meanwhile); keepalive pings no more often than every 100 ms; redials no more often than
#: every 10 ms.
MAX_HANDSHAKE_TIMEOUT = 600.0
MIN_KEEPALIVE = 0.1
MIN_BACKOFF = 0.01
MAX_MULTIPLIER = 100.0
MAX_ATTEMPTS = 1_000_000


@dataclass
class TlsConfig:
    """TLS for the server and for dialled connections (YAML ``transport.grpc.tls``).

    The server presents ``cert_file``/``key_file``; with ``client_auth: true`` it also requires a
    client certificate signed by ``ca_file`` (mutual TLS). A dialler verifies the server against
    ``ca_file`` (system roots when absent) and presents ``cert_file``/``key_file`` as its client
    certificate when given. ``server_name`` overrides the name checked in the server's certificate
    (for a certificate issued to e.g. ``localhost`` reached at ``127.0.0.1``).
    """

    cert_file: str | None = None
    key_file: str | None = None
    ca_file: str | None = None
    client_auth: bool = False
    server_name: str | None = None
    #: Require a peer's node id to be named by its certificate (common name or a subject alternative
    #: name): a listening node checks the client certificate of every dialler; a dialler checks the
    #: server's certificate against the node id it dials (instead of ``server_name``). ``None``
    #: (default) means on exactly when ``client_auth`` is on: under mutual TLS a valid certificate
    #: of ``alice`` cannot claim to be ``bob`` unless this is explicitly ``false``.
    bind_node_id: bool | None = None

    @property
    def binds_node_id(self) -> bool:
        """Whether node ids are bound to certificates (``bind_node_id``, defaulting to ``client_auth``)."""
        return self.client_auth if self.bind_node_id is None else bool(self.bind_node_id)


@dataclass
class ReconnectConfig:
    """Background redial of a dialled connection that dropped (YAML ``transport.grpc.reconnect``).

    The n-th attempt waits ``min(initial_backoff * multiplier**(n-1), max_backoff)`` seconds, times
    a random factor in ``[1 - jitter, 1 + jitter]``. ``max_attempts: 0`` retries until the node
    stops; ``give_up_after`` (seconds since the link dropped, ``null``: never) stops sooner. When it
    gives up, the node fires the ``gave_up(node_id, reason)`` event. A peer that said goodbye
    (stopped gracefully) is redialled only with ``after_goodbye``.
    """

    enabled: bool = True
    initial_backoff: float = 0.1
    max_backoff: float = 10.0
    multiplier: float = 2.0
    jitter: float = 0.2
    max_attempts: int = 0
    give_up_after: float | None = None
    after_goodbye: bool = False

    def __post_init__(self) -> None:
        path = f"{PATH}.reconnect"
        floor = "redialling more often than every 10 ms floods the peer; e.g. initial_backoff: 0.1"
        check_seconds(f"{path}.initial_backoff", self.initial_backoff, minimum=MIN_BACKOFF, fix=floor)
        check_seconds(f"{path}.max_backoff", self.max_backoff, minimum=MIN_BACKOFF, fix=floor)
        check_seconds(f"{path}.give_up_after", self.give_up_after, allow_none=True, fix="seconds, or null for never")
        if self.max_backoff < self.initial_backoff:
            raise ConfigError(
                f"{path}.max_backoff: must be >= {path}.initial_backoff ({self.max_backoff:g} < "
                f"{self.initial_backoff:g}); raise max_backoff or lower initial_backoff"
            )
        check_number(
            f"{path}.multiplier",
            self.multiplier,
            minimum=1,
            maximum=MAX_MULTIPLIER,
            fix="1 keeps the wait constant, 2 doubles it each attempt",
        )
        check_number(
            f"{path}.jitter",
            self.jitter,
            minimum=0,
            maximum=1,
            fix="a fraction: 0.2 waits between 0.8 and 1.2 times the backoff",
        )
        check_int(
            f"{path}.max_attempts",
            self.max_attempts,
            minimum=0,
            maximum=MAX_ATTEMPTS,
            fix="0 retries until the node stops",
        )


@dataclass
class GrpcTransportConfig:
    """Where this node listens: ``host`` (default loopback; ``0.0.0.0`` binds every interface) and
    ``port`` (``None`` for a dial-only node, ``0`` for any free port); plus TLS, payload, flow
    control, keepalive and reconnect options (see the plugin README for the table)."""

    host: str = "127.0.0.1"
    port: int | None = 50051
    #: TLS / mutual TLS; ``None`` is plaintext.
    tls: TlsConfig | None = None
    #: Shared secret both ends of a connection prove they hold, without sending it (a mutual
    #: challenge-response in the handshake). ``None``: peers are not authenticated by a secret.
    token: str | None = None
    #: Connections (handshaked peers and handshakes in progress) this node accepts at once; more are
    #: refused with RESOURCE_EXHAUSTED.
    max_connections: int = 4096
    #: Payloads larger than this travel in chunks of this size.
    chunk_size: int = 1 * MiB
    #: Largest payload sent or accepted; larger ones fail that call with RESOURCE_EXHAUSTED.
    max_payload_size: int = 2048 * MiB
    #: Bytes of chunked payloads this node may be reassembling at once, across all its connections
    #: (``None``: twice ``max_payload_size``); a transfer past it fails that call with RESOURCE_EXHAUSTED.
    max_receive_buffer: int | None = None
    #: Seconds a chunked transfer may go without a new chunk before it is dropped and its buffer freed.
    transfer_timeout: float = 60.0
    #: Frames queued on a connection are coalesced into one gRPC message of up to this size.
    max_batch_bytes: int = 4 * MiB
    #: Bytes queued per connection before ``send`` waits (back-pressure).
    send_queue_bytes: int = 8 * MiB
    #: Seconds a connection's outbound queue may stay full with no write completing (the peer is
    #: not reading) before the connection is closed.
    stall_timeout: float = 30.0
    #: Seconds an accepted stream may take to send its handshake.
    handshake_timeout: float = 10.0
    #: gRPC keepalive ping interval and ack timeout, in seconds.
    keepalive_time: float = 30.0
    keepalive_timeout: float = 20.0
    #: Seconds ``stop()`` waits for goodbye frames to flush and for the server to finish.
    stop_grace: float = 1.0
    reconnect: ReconnectConfig = field(default_factory=ReconnectConfig)

    def __post_init__(self) -> None:
        if self.port is not None and self.tls is not None and self.tls.bind_node_id and not self.tls.client_auth:
            raise ConfigError(
                f"{PATH}.tls.bind_node_id: a listening node binds the node ids of diallers to their "
                "certificates only under mutual TLS: set client_auth: true (with ca_file), or bind_node_id: false"
            )
        check_int(f"{PATH}.max_connections", self.max_connections, minimum=1, maximum=1_000_000)
        check_int(
            f"{PATH}.port",
            self.port,
            minimum=0,
            maximum=65535,
            allow_none=True,
            fix="null for a dial-only node, 0 for any free port",
        )
        check_bytes(f"{PATH}.chunk_size", self.chunk_size, minimum=MIN_BUFFER, maximum=MAX_CHUNK_SIZE)
        check_bytes(f"{PATH}.max_payload_size", self.max_payload_size, minimum=0, maximum=MAX_PAYLOAD_SIZE)
        check_bytes(
            f"{PATH}.max_receive_buffer",
            self.max_receive_buffer,
            minimum=MIN_BUFFER,
            maximum=MAX_RECEIVE_BUFFER,
            allow_none=True,
            fix="null for twice max_payload_size",
        )
        check_bytes(f"{PATH}.max_batch_bytes", self.max_batch_bytes, minimum=MIN_BUFFER, maximum=MAX_BATCH_BYTES)
        check_bytes(f"{PATH}.send_queue_bytes", self.send_queue_bytes, minimum=MIN_BUFFER, maximum=MAX_SEND_QUEUE_BYTES)
        check_seconds(f"{PATH}.handshake_timeout", self.handshake_timeout, maximum=MAX_HANDSHAKE_TIMEOUT)
        check_seconds(f"{PATH}.keepalive_time", self.keepalive_time, minimum=MIN_KEEPALIVE)
        check_seconds(f"{PATH}.keepalive_timeout", self.keepalive_timeout, minimum=MIN_KEEPALIVE)
        check_seconds(f"{PATH}.stop_grace", self.stop_grace, minimum=0)
        check_seconds(f"{PATH}.transfer_timeout", self.transfer_timeout)
        check_seconds(f"{PATH}.stall_timeout", self.stall_timeout)
