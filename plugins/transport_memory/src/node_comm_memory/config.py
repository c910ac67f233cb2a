"""Options of the ``memory`` transport (YAML ``transport.memory``)."""

from __future__ import annotations

from dataclasses import dataclass

from node_comm.validate import check_seconds


@dataclass
class MemoryTransportConfig:
    """Options of the ``memory`` transport (YAML ``transport.memory``)."""

    #: Seconds added to every message this node sends (simulated network latency).
    latency: float = 0.0

    def __post_init__(self) -> None:
        check_seconds("transport.memory.latency", self.latency, minimum=0)
