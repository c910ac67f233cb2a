"""Entry point of the nats transport plugin."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from node_comm import hookimpl


@hookimpl
def node_comm_register_transports(register: Callable[[str, Callable[..., Any]], None]) -> None:
    from .transport import NatsTransport

    register("nats", NatsTransport)
