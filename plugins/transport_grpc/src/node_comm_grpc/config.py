"""Options of the ``grpc`` transport (YAML ``transport.grpc``). Importing this never imports grpc."""

from __future__ import annotations

from dataclasses import dataclass, field

from node_comm.exceptions import ConfigError

MiB = 1024 * 1024


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
    stops. A peer that said goodbye (stopped gracefully) is redialled only with ``after_goodbye``.
    """

    enabled: bool = True
    initial_backoff: float = 0.1
    max_backoff: float = 10.0
    multiplier: float = 2.0
    jitter: float = 0.2
    max_attempts: int = 0
    after_goodbye: bool = False


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
    #: Bytes of large payloads one connection may be receiving at once (``None``: twice
    #: ``max_payload_size``); a transfer past it fails that call with RESOURCE_EXHAUSTED.
    max_receive_buffer: int | None = None
    #: Frames queued on a connection are coalesced into one gRPC message of up to this size.
    max_batch_bytes: int = 4 * MiB
    #: Bytes queued per connection before ``send`` waits (back-pressure).
    send_queue_bytes: int = 8 * MiB
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
                "transport.grpc.tls.bind_node_id: a listening node binds the node ids of diallers to "
                "their certificates only under mutual TLS: set client_auth: true (with ca_file), or "
                "bind_node_id: false"
            )
        if self.port is not None and not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535 or null, got {self.port}")
        if self.chunk_size < 1024:
            raise ValueError(f"chunk_size must be at least 1024 bytes, got {self.chunk_size}")
        if self.max_batch_bytes < 1024 or self.send_queue_bytes < 1024:
            raise ValueError("max_batch_bytes and send_queue_bytes must be at least 1024 bytes")
        if self.max_payload_size < 0:
            raise ValueError(f"max_payload_size must be >= 0, got {self.max_payload_size}")
