"""What a handler or interceptor learns about the call it is part of."""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .node import Node

#: Absolute deadline (``time.monotonic()``) of the inbound call whose handler is running, if any.
#: Calls made inside a handler inherit it.
current_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "node_comm_current_deadline", default=None
)


@dataclass(slots=True)
class CallContext:
    """Passed to handlers as ``ctx`` and to interceptors as ``context``.

    ``source`` is the caller's node id, ``target`` the callee's, ``node`` the local node,
    ``metadata`` the call's string metadata, ``deadline`` a ``time.monotonic()`` instant or ``None``.
    ``peer_identity`` is how the transport authenticated the other node (a certificate subject,
    ``"shared-secret"``, ``"memory"``) or ``None``; ``authenticated`` is whether it did.
    """

    node: Node
    source: str
    target: str
    method: str
    direction: Literal["inbound", "outbound"]
    metadata: dict[str, str] = field(default_factory=dict)
    deadline: float | None = None
    message_id: int = 0
    notify: bool = False
    peer_identity: str | None = None

    @property
    def authenticated(self) -> bool:
        """Whether the transport verified who the other node is (shared secret, client certificate,
        or the same process); ``ctx.source`` of an unauthenticated peer is only its claim."""
        return self.peer_identity is not None

    def time_remaining(self) -> float | None:
        """Seconds left before the call's deadline (never negative), or ``None`` for no deadline
        (a method, as in grpc's ``ServicerContext.time_remaining()``)."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())
