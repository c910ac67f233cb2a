"""The standard ``grpc.health.v1`` service, with a node-wide cap on ``Watch`` streams.

Health checks are answered without a handshake (load balancers and orchestrators probe them), so
a ``Watch`` stream is a task anybody can open and hold: they are capped node-wide.
"""

from __future__ import annotations

from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2

#: ``Watch`` streams served at once, node-wide; more are refused with RESOURCE_EXHAUSTED.
MAX_WATCHERS = 64


class BoundedHealthServicer(health.aio.HealthServicer):  # type: ignore[misc]
    """grpc's asyncio health servicer, refusing ``Watch`` streams past :data:`MAX_WATCHERS`."""

    def __init__(self, max_watchers: int | None = None) -> None:
        super().__init__()
        self.max_watchers = MAX_WATCHERS if max_watchers is None else max_watchers
        self.watchers = 0

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        if self.watchers >= self.max_watchers:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED, f"at most {self.max_watchers} health Watch streams at once"
            )
        self.watchers += 1
        try:
            await super().Watch(request, context)
        finally:
            self.watchers -= 1
