"""Options of the ``grpc`` transport (YAML ``transport.grpc``). Importing this never imports grpc."""

from __future__ import annotations

from dataclasses import dataclass, field

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
    #: Shared secret a dialler must present in its handshake (``None``: not checked).
    token: str | None = None
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
        if self.port is not None and not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535 or null, got {self.port}")
        if self.chunk_size < 1024:
            raise ValueError(f"chunk_size must be at least 1024 bytes, got {self.chunk_size}")
        if self.max_batch_bytes < 1024 or self.send_queue_bytes < 1024:
            raise ValueError("max_batch_bytes and send_queue_bytes must be at least 1024 bytes")
        if self.max_payload_size < 0:
            raise ValueError(f"max_payload_size must be >= 0, got {self.max_payload_size}")
        for key in ("transfer_timeout", "stall_timeout"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{key} must be a number of seconds > 0, got {value!r}")
