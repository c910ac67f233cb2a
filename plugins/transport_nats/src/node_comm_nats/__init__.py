"""The ``nats`` transport: node-comm peers found by id through a NATS broker.

Importing this package never imports nats-py; ``NatsTransport`` (in ``.transport``) does.
"""

from .config import NatsRedialConfig, NatsTlsConfig, NatsTransportConfig

__all__ = ["NatsRedialConfig", "NatsTlsConfig", "NatsTransportConfig"]
