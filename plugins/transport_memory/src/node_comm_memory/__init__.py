"""The ``memory`` transport: nodes in one process, with fault injection for tests."""

from .transport import MemoryTransport, memory_transport

__all__ = ["MemoryTransport", "memory_transport"]
