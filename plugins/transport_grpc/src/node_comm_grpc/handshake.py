"""Who is on the other end of a connection: the shared-secret proofs of the handshake, and the node
ids a TLS certificate names.

With ``transport.grpc.token`` set, both ends prove they hold the secret without sending it: each
sends a fresh random nonce, and each proves knowledge of the secret with an HMAC-SHA256 over both
nonces, both node ids, the protocol version and its own role. The server proves first, so a dialler
reaches an impostor without giving it anything; fresh nonces make a recorded proof worthless, and
the role makes a server's proof useless as a dialler's. Proofs are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping, Sequence

NONCE_SIZE = 32
#: The first gRPC message of a connection holds one handshake frame: anything larger is refused
#: unparsed, before the dialler is authenticated.
MAX_HANDSHAKE_BYTES = 16 * 1024
#: Longest node id a handshake may claim.
MAX_NODE_ID = 256
_LABEL = b"node-comm/grpc/handshake"
SERVER = "server"
DIALLER = "dialler"
#: ``ctx.peer_identity`` of a peer authenticated by the shared secret.
SHARED_SECRET = "shared-secret"


def new_nonce() -> bytes:
    """A fresh random nonce."""
    return os.urandom(NONCE_SIZE)


def proof(
    secret: bytes,
    role: str,
    dialler_nonce: bytes,
    server_nonce: bytes,
    dialler_id: str,
    server_id: str,
    version: int,
) -> bytes:
    """The proof that ``role`` (``"server"`` or ``"dialler"``) holds ``secret`` in this handshake."""
    mac = hmac.new(secret, digestmod=hashlib.sha256)
    for part in (
        _LABEL,
        role.encode(),
        dialler_nonce,
        server_nonce,
        dialler_id.encode(),
        server_id.encode(),
        str(version).encode(),
    ):
        mac.update(len(part).to_bytes(4, "big"))
        mac.update(part)
    return mac.digest()


def verify(expected: bytes, presented: bytes) -> bool:
    """Whether a presented proof is the expected one (constant time)."""
    return hmac.compare_digest(expected, presented)


def bad_node_id(node_id: str) -> str:
    """Why ``node_id`` (from a peer) is not acceptable, or ``""``."""
    if not node_id:
        return "the handshake has no node id"
    if len(node_id) > MAX_NODE_ID:
        return f"node id of {len(node_id)} characters (at most {MAX_NODE_ID})"
    if not node_id.isprintable():
        return f"node id {node_id!r} has control characters"
    return ""


def certificate_names(auth_context: Mapping[str, Sequence[bytes]]) -> tuple[str | None, list[str]]:
    """The subject (common name) of the peer's verified client certificate and every name it holds
    (common name and subject alternative names); ``(None, [])`` without one."""
    common = [v.decode(errors="replace") for v in auth_context.get("x509_common_name", ())]
    alt = [v.decode(errors="replace") for v in auth_context.get("x509_subject_alternative_name", ())]
    names = common + alt
    if not names:
        return None, []
    return (common[0] if common else alt[0]), names
