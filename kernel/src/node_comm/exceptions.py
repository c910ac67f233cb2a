"""Typed errors. Every error a user can cause is a :class:`NodeCommError` with a :class:`ErrorCode`."""

from __future__ import annotations

import enum


class ErrorCode(str, enum.Enum):
    """Why a call failed; travels on the wire as its string value."""

    METHOD_NOT_FOUND = "METHOD_NOT_FOUND"
    HANDLER_ERROR = "HANDLER_ERROR"
    SERIALIZATION_ERROR = "SERIALIZATION_ERROR"
    SERIALIZER_MISMATCH = "SERIALIZER_MISMATCH"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    CANCELLED = "CANCELLED"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    INTERNAL = "INTERNAL"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: str) -> ErrorCode:
        """The code named ``value``; unknown codes (a newer peer) become ``INTERNAL``."""
        try:
            return cls(value)
        except ValueError:
            return cls.INTERNAL


class NodeCommError(Exception):
    """Base of every node-comm error."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str = "", *, code: ErrorCode | str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = ErrorCode.parse(str(code))

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigError(NodeCommError, ValueError):
    """A configuration value, file or plugin name is wrong; the message names the key and the fix."""

    code = ErrorCode.INVALID_ARGUMENT


class SerializationError(NodeCommError):
    """A payload could not be encoded or decoded with the chosen serializer."""

    code = ErrorCode.SERIALIZATION_ERROR


class NodeNotConnectedError(NodeCommError):
    """The target node is not connected (never was, or the connection was lost)."""

    code = ErrorCode.UNAVAILABLE

    def __init__(self, node_id: str, message: str | None = None) -> None:
        self.node_id = node_id
        super().__init__(
            message or f"node {node_id!r} is not connected; call `await node.connect({node_id!r}, ...)` first"
        )


class ConnectFailedError(NodeNotConnectedError):
    """``connect()`` could not reach or verify the node it was asked for."""

    def __init__(self, node_id: str, message: str, address: str | None = None) -> None:
        self.address = address
        super().__init__(node_id, message)


class ConnectionLostError(NodeNotConnectedError):
    """The connection to the node dropped while the call was pending (killed peer, heartbeat timeout)."""

    def __init__(self, node_id: str, reason: str) -> None:
        self.reason = reason
        super().__init__(node_id, f"connection to node {node_id!r} was lost: {reason}")


class PeersNotConnectedError(NodeCommError):
    """``wait_for_peers`` timed out: ``.missing`` are the ids still not connected (or, when waiting
    for a number, how many more are needed is in the message); ``.connected`` the ones that are."""

    code = ErrorCode.UNAVAILABLE

    def __init__(self, message: str, *, missing: list[str] | None = None, connected: list[str] | None = None) -> None:
        super().__init__(message)
        self.missing = list(missing or [])
        self.connected = list(connected or [])


class NodeNotStartedError(NodeCommError):
    """The local node was used before ``await node.start()`` or after ``stop()``."""

    code = ErrorCode.UNAVAILABLE


class CallTimeoutError(NodeCommError, TimeoutError):
    """The call did not complete before its deadline; the remote handler was told to cancel."""

    code = ErrorCode.DEADLINE_EXCEEDED

    def __init__(self, target: str, method: str, timeout: float | None = None) -> None:
        self.target = target
        self.method = method
        self.timeout = timeout
        after = f" after {timeout:.3g}s" if timeout is not None else ""
        super().__init__(f"call to {target}.{method} timed out{after}")


class PayloadTooLargeError(NodeCommError):
    """A payload is larger than the configured maximum; only this call fails."""

    code = ErrorCode.RESOURCE_EXHAUSTED


class RemoteExecutionError(NodeCommError):
    """The remote node answered the call with an error.

    ``code`` says why (an :class:`ErrorCode`); ``remote_traceback`` is set only when the serving node
    runs with ``debug: true``.
    """

    def __init__(
        self,
        message: str,
        code: ErrorCode | str = ErrorCode.INTERNAL,
        remote_traceback: str | None = None,
        *,
        target: str | None = None,
        method: str | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.remote_traceback = remote_traceback
        self.target = target
        self.method = method

    @property
    def traceback(self) -> str | None:
        """The remote traceback (debug mode only), else ``None``."""
        return self.remote_traceback

    def __str__(self) -> str:
        text = self.message
        if self.remote_traceback:
            text = f"{text}\n--- remote traceback ---\n{self.remote_traceback}"
        return text


class CallRejectedError(NodeCommError):
    """Raised by an interceptor or the dispatcher to refuse a call with a code (e.g. UNAUTHENTICATED)."""

    def __init__(self, code: ErrorCode | str, message: str) -> None:
        super().__init__(message, code=code)
