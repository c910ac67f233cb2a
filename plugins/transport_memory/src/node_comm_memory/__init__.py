"""The ``memory`` transport: nodes in one process, with fault injection for tests."""

from .config import MemoryTransportConfig
from .transport import MemoryTransport, memory_transport

__all__ = ["MemoryTransport", "MemoryTransportConfig", "memory_transport"]
