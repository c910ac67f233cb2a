"""``auth``: every call and notify is signed with a key derived from a shared token; the token itself
never travels.

The signature (HMAC-SHA256, one metadata entry) covers the kind of message (request, notify or
response), the caller's and the callee's node ids, the call id, the method, the serializer, the
issue time and a random nonce, and with ``sign_payload`` a SHA-256 digest of the payload bytes.
The receiver checks it in constant time before the payload is decoded; a missing, wrong, stale or
replayed signature is ``UNAUTHENTICATED``. Replies to signed calls are signed too (bound to the
call's nonce), so a node that does not hold the token cannot pass off a result.

What it does not protect: other metadata entries and the deadline are not signed, and without
``sign_payload`` neither are the payload bytes; error replies are not signed (the kernel and the
transports make some of them, e.g. RESOURCE_EXHAUSTED), so a node without the token can still make
a call fail, never succeed; it does not hide anything (use TLS for that).
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import os
import re
import time
from collections.abc import Callable

from node_comm import CallContext, CallRejectedError, ConfigError, ErrorCode, Interceptor, Message, MessageType
from node_comm.interceptor import NextHandler
from node_comm.message import payload_buffers

METADATA_KEY = "authorization"
VERSION = "nc1"
_KEY_LABEL = b"node-comm auth interceptor v1: call signing key"
_MAX_VALUE = 160  # longer metadata values are refused before any parsing
_REQUEST_RE = re.compile(r"nc1\.(\d{1,16})\.([0-9a-f]{32})\.([p-])\.([0-9a-f]{64})")
_RESPONSE_RE = re.compile(r"nc1\.r\.([p-])\.([0-9a-f]{64})")
_KINDS = {MessageType.REQUEST: "REQUEST", MessageType.NOTIFY: "NOTIFY"}
_NO_DIGEST = ""


def _payload_digest(msg: Message) -> str:
    """SHA-256 of ``msg``'s payload bytes, over its buffers when it is a list of them (no join)."""
    h = hashlib.sha256()
    for buf in payload_buffers(msg):
        h.update(buf)
    return h.hexdigest()


def _signed_bytes(
    kind: str,
    source: str,
    target: str,
    call_id: int,
    method: str,
    serializer: str,
    stamp: str,
    nonce: str,
    digest: str,
) -> bytes:
    """The exact bytes an HMAC covers: a fixed label and the kind of message, then each field as
    ``length:text`` (so no two different messages share an encoding, whatever their ids or method
    names contain)."""
    return (
        f"node-comm/auth/{VERSION}/{kind}/{len(source)}:{source}{len(target)}:{target}{call_id}:"
        f"{len(method)}:{method}{len(serializer)}:{serializer}{len(stamp)}:{stamp}{len(nonce)}:{nonce}"
        f"{len(digest)}:{digest}"
    ).encode("utf-8", "surrogatepass")


class ReplayCache:
    """Nonces of accepted signatures, kept while their issue time is inside the freshness window.

    Bounded in time (an entry leaves once its signature would be refused as stale anyway) and in
    size: when full, the entry issued earliest is dropped and the cache's ``floor`` rises to it;
    signatures ordered at or before the floor (by issue time, then nonce) are refused from then on.
    So a flood of fresh nonces narrows the window instead of growing memory, and no nonce it dropped
    can be replayed. Only signatures that verified are recorded: a peer without the token cannot
    fill it.
    """

    def __init__(self, max_entries: int, window: float, clock: Callable[[], float] = time.time) -> None:
        self.max_entries = max_entries
        self.window = window
        self.floor: tuple[float, str] = (float("-inf"), "")
        self._clock = clock
        self._heap: list[tuple[float, str]] = []
        self._seen: set[str] = set()

    def __len__(self) -> int:
        return len(self._seen)

    def _evict_one(self) -> None:
        entry = heapq.heappop(self._heap)
        self._seen.discard(entry[1])
        if entry > self.floor:
            self.floor = entry

    def check_and_add(self, nonce: str, issued: float) -> str | None:
        """Record ``nonce``; returns why it is refused (``"replay"``, or ``"floor"``: behind the
        window the cache still covers) or ``None``."""
        horizon = self._clock() - self.window
        heap = self._heap
        while heap and heap[0][0] < horizon:
            self._evict_one()
        entry = (issued, nonce)
        if entry <= self.floor:
            return "floor"
        if nonce in self._seen:
            return "replay"
        while len(heap) >= self.max_entries:
            self._evict_one()
            if entry <= self.floor:
                return "floor"
        heapq.heappush(heap, entry)
        self._seen.add(nonce)
        return None


class AuthInterceptor(Interceptor):
    """Signs outbound calls and notifies, verifies inbound ones (and the replies to signed calls).

    Options:
      ``token`` (required; use ``${ENV_VAR}`` in YAML to keep it out of the file): the shared secret,
      the same on every node; only a key derived from it is used, and never sent.
      ``metadata_key`` (default ``authorization``): the metadata entry that carries the signature.
      ``max_skew`` (default 30 s): how far a signature's issue time may be from this node's clock,
      either way; also how long a nonce is remembered to refuse a replay.
      ``sign_payload`` (default false): also sign a SHA-256 digest of the payload bytes (a message
      cannot then be altered in transit; costs one hash over each payload). A node with it on
      refuses calls whose signature does not cover the payload.
      ``sign_responses`` (default true): sign the replies to verified calls, and require a valid
      signature on the replies to this node's calls (a node without the token cannot answer).
      ``replay_cache_size`` (default 100000): how many nonces are remembered at most.
    """

    name = "auth"

    def __init__(
        self,
        token: str,
        metadata_key: str = METADATA_KEY,
        max_skew: float = 30.0,
        sign_payload: bool = False,
        sign_responses: bool = True,
        replay_cache_size: int = 100_000,
    ) -> None:
        if not isinstance(token, str) or not token:
            raise ConfigError("token: a non-empty string is required (e.g. token: ${NODE_COMM_TOKEN})")
        if not isinstance(metadata_key, str) or not metadata_key:
            raise ConfigError(f"metadata_key: a non-empty string is required, got {metadata_key!r}")
        if isinstance(max_skew, bool) or not isinstance(max_skew, (int, float)) or not 0 < max_skew <= 86400:
            raise ConfigError(f"max_skew: a number of seconds in (0, 86400] is required, got {max_skew!r}")
        if isinstance(replay_cache_size, bool) or not isinstance(replay_cache_size, int) or replay_cache_size < 1:
            raise ConfigError(f"replay_cache_size: a positive integer is required, got {replay_cache_size!r}")
        # The token is only ever used as HMAC key material: the key derived from it signs, and
        # neither appears in any message.
        self._key = hmac.digest(token.encode("utf-8"), _KEY_LABEL, "sha256")
        self.metadata_key = metadata_key
        self.max_skew = float(max_skew)
        self.sign_payload = bool(sign_payload)
        self.sign_responses = bool(sign_responses)
        self.replays = ReplayCache(replay_cache_size, self.max_skew)

    def __repr__(self) -> str:
        return (
            f"<AuthInterceptor key={self.metadata_key!r} token=*** max_skew={self.max_skew:g} "
            f"sign_payload={self.sign_payload}>"
        )

    def _request_sig(self, kind: str, msg: Message, stamp: str, nonce: str, flag: str) -> str:
        digest = _payload_digest(msg) if flag == "p" else _NO_DIGEST
        data = _signed_bytes(kind, msg.source, msg.target, msg.id, msg.method, msg.serializer, stamp, nonce, digest)
        return hmac.digest(self._key, data, "sha256").hex()

    def _response_sig(self, reply: Message, method: str, nonce: str, flag: str) -> str:
        """A reply's signature: bound to the call's nonce, so it answers that call only."""
        digest = _payload_digest(reply) if flag == "p" else _NO_DIGEST
        data = _signed_bytes(
            "RESPONSE", reply.source, reply.target, reply.id, method, reply.serializer, "", nonce, digest
        )
        return hmac.digest(self._key, data, "sha256").hex()

    # ------------------------------------------------------------------ outbound
    async def intercept_outbound(
        self, message: Message, context: CallContext, next_handler: NextHandler
    ) -> Message | None:
        kind = _KINDS.get(message.type)
        if kind is None:
            return await next_handler(message)
        issued_ms = str(int(time.time() * 1000))
        nonce = os.urandom(16).hex()
        flag = "p" if self.sign_payload else "-"
        sig = self._request_sig(kind, message, issued_ms, nonce, flag)
        message.metadata[self.metadata_key] = f"{VERSION}.{issued_ms}.{nonce}.{flag}.{sig}"
        reply = await next_handler(message)
        if reply is not None and reply.type is MessageType.RESPONSE and self.sign_responses:
            self._verify_response(message, nonce, reply)
        return reply

    def _verify_response(self, request: Message, nonce: str, reply: Message) -> None:
        where = f"the reply of {request.target!r} to {request.method!r}"
        value = reply.metadata.pop(self.metadata_key, None)
        if value is None:
            raise CallRejectedError(
                ErrorCode.UNAUTHENTICATED,
                f"{where} is not signed: node {request.target!r} does not run the 'auth' interceptor, or "
                "runs it with sign_responses: false (configure it there with the same token and options), "
                "or is not the node it claims to be; set sign_responses: false here to accept unsigned replies",
            )
        m = _RESPONSE_RE.fullmatch(value) if isinstance(value, str) and len(value) <= _MAX_VALUE else None
        if m is None:
            raise CallRejectedError(ErrorCode.UNAUTHENTICATED, f"{where} carries a malformed signature")
        flag, sig = m.groups()
        expected = self._response_sig(reply, request.method, nonce, flag)
        if not hmac.compare_digest(sig, expected):
            raise CallRejectedError(
                ErrorCode.UNAUTHENTICATED,
                f"{where} has a signature that does not verify: node {request.target!r} uses another "
                "token than this node (or the reply was altered in transit); use the same auth token "
                "on both nodes",
            )
        if self.sign_payload and flag != "p":
            raise CallRejectedError(
                ErrorCode.UNAUTHENTICATED,
                f"{where} is signed without its payload, and this node has sign_payload: true; set "
                f"sign_payload: true on {request.target!r} too",
            )

    # ------------------------------------------------------------------ inbound
    async def intercept_inbound(
        self, message: Message, context: CallContext, next_handler: NextHandler
    ) -> Message | None:
        kind = _KINDS.get(message.type)
        if kind is None:  # only requests and notifies reach interceptors; refuse anything else
            raise CallRejectedError(ErrorCode.UNAUTHENTICATED, "only signed requests and notifies are accepted")
        nonce, flag = self._verify_inbound(kind, message)
        reply = await next_handler(message)
        if reply is not None and reply.type is MessageType.RESPONSE and self.sign_responses:
            flag = "p" if self.sign_payload or flag == "p" else "-"
            sig = self._response_sig(reply, message.method, nonce, flag)
            reply.metadata[self.metadata_key] = f"{VERSION}.r.{flag}.{sig}"
        return reply

    def _verify_inbound(self, kind: str, message: Message) -> tuple[str, str]:
        """Check ``message``'s signature; returns its nonce and payload flag, or raises
        ``UNAUTHENTICATED`` saying what is wrong. The metadata entry is removed (handlers never see it)."""
        what = "notify" if kind == "NOTIFY" else "call"
        where = f"{what} of {message.method[:100]!r} from {message.source!r}"  # names a peer chose: repr, cut
        value = message.metadata.pop(self.metadata_key, None)
        if value is None:
            raise CallRejectedError(
                ErrorCode.UNAUTHENTICATED,
                f"{where} is not signed (no {self.metadata_key!r} metadata): node {message.target!r} "
                f"requires signed calls; configure the 'auth' interceptor on {message.source!r} with the "
                "same token as this node",
            )
        m = _REQUEST_RE.fullmatch(value) if isinstance(value, str) and len(value) <= _MAX_VALUE else None
        if m is None:
            raise CallRejectedError(
                ErrorCode.UNAUTHENTICATED,
                f"{where} carries a malformed signature in {self.metadata_key!r}; both nodes must run "
                f"node-comm's 'auth' interceptor (signature version {VERSION})",
            )
        issued_ms, nonce, flag, sig = m.groups()
        expected = self._request_sig(kind, message, issued_ms, nonce, flag)
        if not hmac.compare_digest(sig, expected):
            raise CallRejectedError(
                ErrorCode.UNAUTHENTICATED,
                f"{where} has a signature that does not verify: the caller uses another token than this "
                "node (or the message was altered or replayed under another call id); use the same auth "
                "token on both nodes",
            )
        # From here on the signer holds the token: telling it about clocks and settings is safe.
        if self.sign_payload and flag != "p":
            raise CallRejectedError(
                ErrorCode.UNAUTHENTICATED,
                f"{where} is signed without its payload, and node {message.target!r} has sign_payload: "
                f"true; set sign_payload: true on {message.source!r} too",
            )
        issued = int(issued_ms) / 1000.0
        skew = issued - time.time()
        if abs(skew) > self.max_skew:
            direction = "behind" if skew < 0 else "ahead of"
            raise CallRejectedError(
                ErrorCode.UNAUTHENTICATED,
                f"{where} was signed {abs(skew):.1f} s {'ago' if skew < 0 else 'in the future'}, over "
                f"max_skew={self.max_skew:g} s: either it is a replay of an old message, or the clock of "
                f"{message.source!r} is {abs(skew):.1f} s {direction} this node's; synchronise the clocks "
                "(NTP) or raise max_skew on this node",
            )
        refused = self.replays.check_and_add(nonce, issued)
        if refused == "replay":
            raise CallRejectedError(
                ErrorCode.UNAUTHENTICATED,
                f"{where} is a replay: its nonce was already used within the last {self.max_skew:g} s; "
                "every call is signed afresh, a captured message cannot be sent again",
            )
        if refused == "floor":
            raise CallRejectedError(
                ErrorCode.UNAUTHENTICATED,
                f"{where} was signed before the replay window of node {message.target!r} "
                f"({time.time() - self.replays.floor[0]:.1f} s, narrowed because its replay cache of "
                f"{self.replays.max_entries} nonces is full); raise replay_cache_size there, or retry",
            )
        return nonce, flag
