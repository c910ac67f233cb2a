"""Example third-party node-comm plugin (a test fixture): ``loopback``, ``rot13json``, ``stamp``."""

from .plugin import STATS, LoopbackOptions, LoopbackTransport, Rot13JsonSerializer, StampInterceptor

__all__ = ["STATS", "LoopbackOptions", "LoopbackTransport", "Rot13JsonSerializer", "StampInterceptor"]
