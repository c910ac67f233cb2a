"""Why a peer disconnected, in a form a program can branch on.

The ``disconnect`` event's ``reason`` is a :class:`DisconnectReason`: the human text (a ``str``, so
handlers written for text keep working) carrying a :class:`DisconnectKind` as ``reason.kind``.
"""

from __future__ import annotations

import enum


class DisconnectKind(str, enum.Enum):
    """What ended a connection."""

    #: The peer stopped gracefully (it said goodbye).
    STOPPED = "stopped"
    #: The connection broke: the peer was killed, crashed, or the network failed.
    LOST = "lost"
    #: The peer was silent past ``heartbeat.timeout`` (frozen, or unreachable).
    HEARTBEAT = "heartbeat"
    #: A new connection of the same node id replaced this one (the peer restarted).
    REPLACED = "replaced"
    #: This node closed it: ``node.disconnect()``, ``node.stop()``, or the peer went past a bound
    #: (e.g. notifies sent past ``max_concurrent_notifies_per_peer`` without waiting).
    LOCAL = "local"

    def __str__(self) -> str:
        return self.value


class DisconnectReason(str):
    """The text of why a peer disconnected, with its :class:`DisconnectKind` as ``.kind``."""

    kind: DisconnectKind

    def __new__(cls, text: str, kind: DisconnectKind = DisconnectKind.LOST) -> DisconnectReason:
        self = super().__new__(cls, text)
        self.kind = kind
        return self

    def __repr__(self) -> str:
        return f"DisconnectReason({str(self)!r}, {self.kind.name})"
