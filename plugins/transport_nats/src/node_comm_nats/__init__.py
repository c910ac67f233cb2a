"""The ``nats`` transport: node-comm peers found by id through a NATS broker."""

from .config import NatsTransportConfig

__all__ = ["NatsTransportConfig"]
