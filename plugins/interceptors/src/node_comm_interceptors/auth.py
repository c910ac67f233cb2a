"""``auth``: a shared token, sent in call metadata and checked in constant time before the handler
runs and before the payload is decoded. A wrong or missing token is ``UNAUTHENTICATED``."""

from __future__ import annotations

import hmac

from node_comm import CallContext, CallRejectedError, ErrorCode, Interceptor, Message
from node_comm.interceptor import NextHandler

METADATA_KEY = "authorization"


class AuthInterceptor(Interceptor):
    """Options: ``token`` (required; use ``${ENV_VAR}`` in YAML to keep it out of the file),
    ``metadata_key`` (default ``authorization``)."""

    name = "auth"

    def __init__(self, token: str, metadata_key: str = METADATA_KEY) -> None:
        if not isinstance(token, str) or not token:
            raise ValueError("token: a non-empty string is required (e.g. token: ${NODE_COMM_TOKEN})")
        self._token = token.encode()
        self._key = metadata_key

    def __repr__(self) -> str:
        return f"<AuthInterceptor key={self._key!r} token=***>"

    async def intercept_outbound(
        self, message: Message, context: CallContext, next_handler: NextHandler
    ) -> Message | None:
        message.metadata[self._key] = self._token.decode()
        return await next_handler(message)

    async def intercept_inbound(
        self, message: Message, context: CallContext, next_handler: NextHandler
    ) -> Message | None:
        presented = message.metadata.pop(self._key, None)
        if presented is None:
            raise CallRejectedError(
                ErrorCode.UNAUTHENTICATED,
                "missing auth token; configure the 'auth' interceptor with the shared token",
            )
        if not hmac.compare_digest(presented.encode(), self._token):
            raise CallRejectedError(ErrorCode.UNAUTHENTICATED, "invalid auth token")
        return await next_handler(message)
