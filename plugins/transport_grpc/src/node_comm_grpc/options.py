"""The gRPC channel and server arguments of a :class:`~node_comm_grpc.config.GrpcTransportConfig`."""

from __future__ import annotations

from typing import Any

from .config import GrpcTransportConfig
from .wire import FRAME_OVERHEAD


def message_limits(cfg: GrpcTransportConfig) -> tuple[int, int]:
    """The largest gRPC message (one ``Batch``) this node sends, and the largest it accepts."""
    frame = cfg.chunk_size + FRAME_OVERHEAD
    max_send = cfg.max_batch_bytes + frame + 65536
    return max_send, max(64 * 1024 * 1024, 2 * max_send)


def _stream_options(cfg: GrpcTransportConfig, max_send: int, max_recv: int) -> list[tuple[str, Any]]:
    """Arguments both ends of a connection use: message sizes and keepalive pings."""
    return [
        ("grpc.max_send_message_length", max_send),
        ("grpc.max_receive_message_length", max_recv),
        ("grpc.keepalive_time_ms", int(cfg.keepalive_time * 1000)),
        ("grpc.keepalive_timeout_ms", int(cfg.keepalive_timeout * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


def channel_options(cfg: GrpcTransportConfig, max_send: int, max_recv: int) -> list[tuple[str, Any]]:
    """Arguments of a dialled channel: no retries, no shared subchannels, TLS name override."""
    opts = _stream_options(cfg, max_send, max_recv)
    opts += [
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.enable_retries", 0),
        ("grpc.use_local_subchannel_pool", 1),
    ]
    if cfg.tls is not None and cfg.tls.server_name:
        opts.append(("grpc.ssl_target_name_override", cfg.tls.server_name))
    return opts


def server_options(cfg: GrpcTransportConfig, max_send: int, max_recv: int) -> list[tuple[str, Any]]:
    """Arguments of the listening server."""
    opts = _stream_options(cfg, max_send, max_recv)
    opts += [
        # Accept client pings as often as once a second, with or without calls, and never
        # answer them with a "too_many_pings" GOAWAY.
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 1000),
        ("grpc.http2.min_ping_interval_without_data_ms", 1000),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.so_reuseport", 0),
        # A connection that never opens a stream (or whose streams all ended) is closed after
        # handshake_timeout, and so is one stuck in its TLS/HTTP2 handshake: idle connections
        # cannot pile up. A node_comm link keeps its one stream open, so it is never idle.
        ("grpc.max_connection_idle_ms", int(cfg.handshake_timeout * 1000)),
        ("grpc.server_handshake_timeout_ms", int(cfg.handshake_timeout * 1000)),
        # Streams per connection: a link uses one, a health checker a few.
        ("grpc.max_concurrent_streams", 16),
    ]
    return opts
