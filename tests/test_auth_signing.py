"""Abuse tests of the ``auth`` interceptor: signed calls, never the token; replays, stale or future
signatures, tampering and floods are refused with UNAUTHENTICATED before the payload is decoded."""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from node_comm import (
    CallContext,
    ConfigError,
    Interceptor,
    InterceptorConfig,
    Message,
    MessageType,
    MethodOptions,
    Node,
    NodeCommError,
    RemoteExecutionError,
)
from node_comm_interceptors import auth as auth_module
from node_comm_interceptors.auth import AuthInterceptor, ReplayCache
from tests.interceptor_helpers import CountingJson, mem

TOKEN = "tok-7c1e-signing-only-never-sent"
WAIT = 5.0


def auth(token: str = TOKEN, **options: Any) -> InterceptorConfig:
    return InterceptorConfig("auth", {"token": token, **options})


class Outcomes(Interceptor):
    """First in a server's chain: records how each inbound message ended (``ok`` or the code)."""

    def __init__(self) -> None:
        self.items: list[tuple[int, str, str]] = []  # (message id, method, outcome)
        self.changed = asyncio.Event()
        self.consumed = 0
        self.last_error = ""

    async def intercept_inbound(self, message: Message, context: CallContext, next_handler: Any) -> Any:
        outcome = "ok"
        try:
            return await next_handler(message)
        except NodeCommError as exc:
            outcome = str(exc.code)
            self.last_error = exc.message
            raise
        finally:
            self.items.append((message.id, message.method, outcome))
            self.changed.set()

    async def next(self) -> tuple[int, str, str]:
        """The next outcome not yet returned, in order (waits for it)."""
        while len(self.items) <= self.consumed:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), WAIT)
        self.consumed += 1
        return self.items[self.consumed - 1]


class Capture:
    """Wraps a node's transport ``send``: keeps a copy of every message as it went on the wire."""

    def __init__(self, node: Node) -> None:
        self.sent: list[Message] = []
        self._send = node.transport.send

        async def send(msg: Message) -> None:
            self.sent.append(msg.copy())
            await self._send(msg)

        node.transport.send = send  # type: ignore[method-assign]

    def of(self, mtype: MessageType, method: str) -> Message:
        return next(m for m in self.sent if m.type is mtype and m.method == method).copy()

    async def resend(self, msg: Message) -> None:
        await self._send(msg)


@dataclasses.dataclass
class World:
    server: Node
    client: Node
    outcomes: Outcomes
    capture: Capture
    counting: CountingJson
    runs: list[Any]
    nodes: Callable[..., Any]


@pytest.fixture
async def world() -> AsyncIterator[World]:
    made: list[Node] = []

    async def nodes(node_id: str, *interceptors: InterceptorConfig, connect_to: str | None = "server") -> Node:
        node = Node(node_id, mem(node_id, *interceptors))
        node.serializers.register(CountingJson())
        await node.start()
        made.append(node)
        if connect_to is not None:
            await node.connect(connect_to)
        return node

    server = await nodes("server", connect_to=None)
    outcomes = Outcomes()
    server.interceptors.add(outcomes)
    server.interceptors.add(AuthInterceptor(TOKEN, sign_payload=True))
    counting = CountingJson()
    server.serializers.register(counting)
    runs: list[Any] = []

    async def secret(payload: Any, ctx: CallContext) -> str:
        runs.append(payload)
        return f"welcome {ctx.source}"

    server.register("secret", secret, MethodOptions(serializer="counting"))
    server.register("other", secret, MethodOptions(serializer="counting"))
    client = await nodes("client", auth(sign_payload=True))
    try:
        yield World(server, client, outcomes, Capture(client), counting, runs, nodes)
    finally:
        for node in made:
            await node.stop()


async def refused(w: World, msg: Message) -> str:
    """Send ``msg`` as captured (from the client's link); returns the server's error text."""
    w.outcomes.last_error = ""
    before = (len(w.runs), w.counting.decoded)
    await w.capture.resend(msg)
    _, _, outcome = await w.outcomes.next()
    assert outcome == "UNAUTHENTICATED", outcome
    assert (len(w.runs), w.counting.decoded) == before  # no handler ran, nothing was decoded
    text: str = w.outcomes.last_error
    assert TOKEN not in text
    return text


async def signed_by_client(
    w: World, mtype: MessageType = MessageType.REQUEST, clock_offset: float = 0.0, msg_id: int = 99
) -> Message:
    """A message signed by the client's own auth interceptor (optionally with its clock off by
    ``clock_offset`` seconds), as it would go on the wire, without sending it."""
    client_auth = next(i for i in w.client.interceptors if isinstance(i, AuthInterceptor))
    real = auth_module.time
    signed: list[Message] = []

    async def keep(m: Message) -> None:
        signed.append(m.copy())

    ctx = CallContext(w.client, "client", "server", "secret", "outbound", {}, None, msg_id, False)
    msg = Message(msg_id, mtype, "client", "server", "secret", b'{"x": 1}', "counting")
    skewed = type("SkewedClock", (), {"time": staticmethod(lambda: real.time() + clock_offset)})
    auth_module.time = skewed  # type: ignore[assignment]
    try:
        await client_auth.intercept_outbound(msg, ctx, keep)  # type: ignore[arg-type]
    finally:
        auth_module.time = real
    return signed[0]


async def test_signed_call_carries_no_token_and_works(world: World) -> None:
    w = world
    assert await w.client.call("server", "secret", {"x": 1}, serializer="counting") == "welcome client"
    await w.client.notify("server", "secret", {"x": 2}, serializer="counting")
    await w.outcomes.next()
    await w.outcomes.next()
    assert len(w.runs) == 2
    derived = hmac.digest(TOKEN.encode(), auth_module._KEY_LABEL, "sha256")
    assert w.capture.sent
    for m in w.capture.sent:
        wire = repr(m).encode() + bytes(m.payload)
        assert TOKEN.encode() not in wire and TOKEN.encode().hex().encode() not in wire
        assert derived.hex().encode() not in wire
    signed = [m for m in w.capture.sent if m.type in (MessageType.REQUEST, MessageType.NOTIFY)]
    assert len(signed) == 2 and all(m.metadata["authorization"].startswith("nc1.") for m in signed)


async def test_replayed_request_is_refused(world: World) -> None:
    w = world
    await w.client.call("server", "secret", {"x": 1}, serializer="counting")
    await w.outcomes.next()
    msg = w.capture.of(MessageType.REQUEST, "secret")
    text = await refused(w, msg)  # same call id, same signature
    assert "replay" in text
    # The same message under a fresh call id (the id is signed): refused too.
    msg.id += 1000
    assert "does not verify" in await refused(w, msg)
    assert len(w.runs) == 1
    assert await w.client.call("server", "secret", {"x": 1}, serializer="counting") == "welcome client"


async def test_replayed_notify_is_refused(world: World) -> None:
    w = world
    await w.client.notify("server", "secret", {"x": 1}, serializer="counting")
    await w.outcomes.next()
    assert "replay" in await refused(w, w.capture.of(MessageType.NOTIFY, "secret"))
    assert len(w.runs) == 1


async def test_signature_is_bound_to_the_kind_of_message(world: World) -> None:
    w = world
    await w.client.call("server", "secret", {"x": 1}, serializer="counting")
    await w.client.notify("server", "other", {"x": 1}, serializer="counting")
    await w.outcomes.next()
    await w.outcomes.next()
    as_notify = w.capture.of(MessageType.REQUEST, "secret")
    as_notify.type = MessageType.NOTIFY
    assert "does not verify" in await refused(w, as_notify)
    as_request = w.capture.of(MessageType.NOTIFY, "other")
    as_request.type = MessageType.REQUEST
    assert "does not verify" in await refused(w, as_request)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda m: setattr(m, "method", "other"),
        lambda m: setattr(m, "payload", b'{"x": 2}'),
        lambda m: setattr(m, "serializer", "json"),
        lambda m: setattr(m, "id", m.id + 1),
    ],
    ids=["method", "payload", "serializer", "call-id"],
)
async def test_tampered_fields_are_refused(world: World, tamper: Callable[[Message], None]) -> None:
    w = world
    msg = await signed_by_client(w)
    tamper(msg)
    assert "does not verify" in await refused(w, msg)
    assert w.runs == []


async def test_relay_to_another_target_or_from_another_caller_is_refused(world: World) -> None:
    w = world
    other = await w.nodes("server2", connect_to=None)
    other_outcomes = Outcomes()
    other.interceptors.add(other_outcomes)
    other.interceptors.add(AuthInterceptor(TOKEN, sign_payload=True))
    ran: list[Any] = []
    other.register("secret", lambda p, ctx: ran.append(p), MethodOptions(serializer="counting"))
    await w.client.connect("server2")
    await w.client.call("server", "secret", {"x": 1}, serializer="counting")
    assert (await w.outcomes.next())[2] == "ok"
    msg = w.capture.of(MessageType.REQUEST, "secret")
    # A node that received the call forwards it to another node holding the same token.
    msg.target = "server2"
    await w.capture.resend(msg)
    assert (await other_outcomes.next())[2] == "UNAUTHENTICATED"
    # A third node sends a captured message as its own (the transport names the real sender).
    mallory = await w.nodes("mallory")
    stolen = w.capture.of(MessageType.REQUEST, "secret")
    stolen.source = "mallory"
    await mallory.transport.send(stolen)
    assert (await w.outcomes.next())[2] == "UNAUTHENTICATED"
    assert ran == [] and len(w.runs) == 1


@pytest.mark.parametrize(("offset", "word"), [(-45.0, "ago"), (45.0, "in the future")])
async def test_stale_and_future_signatures_are_refused(world: World, offset: float, word: str) -> None:
    msg = await signed_by_client(world, clock_offset=offset)  # only the client's clock is off
    text = await refused(world, msg)
    assert word in text and "45." in text and "max_skew=30" in text and "clock" in text


async def test_skew_within_max_skew_is_accepted(world: World) -> None:
    w = world
    for offset in (-20.0, 20.0):
        await w.capture.resend(await signed_by_client(w, MessageType.NOTIFY, offset, msg_id=int(offset) + 50))
        assert (await w.outcomes.next())[2] == "ok"
    assert len(w.runs) == 2


async def test_missing_malformed_and_oversized_signatures(world: World) -> None:
    w = world
    await w.client.call("server", "secret", {"x": 1}, serializer="counting")
    await w.outcomes.next()
    base = w.capture.of(MessageType.REQUEST, "secret")
    missing = base.copy()
    del missing.metadata["authorization"]
    text = await refused(w, missing)
    assert "not signed" in text and "'auth' interceptor" in text and "same token" in text
    for value in ("garbage", "nc1." + "9" * 5000, "nc1.1.2.3.4", base.metadata["authorization"] + "0", "\udcff"):
        bad = base.copy()
        bad.metadata["authorization"] = value
        assert "malformed" in await refused(w, bad)
    assert await w.client.call("server", "secret", {"x": 1}, serializer="counting") == "welcome client"


async def test_wrong_token_says_so(world: World) -> None:
    w = world
    intruder = await w.nodes("intruder", auth("guessed-token", sign_payload=True))
    with pytest.raises(RemoteExecutionError) as info:
        await intruder.call("server", "secret", {"x": 1}, serializer="counting")
    assert info.value.code == "UNAUTHENTICATED"
    assert "another token" in str(info.value) and "same auth token" in str(info.value)
    assert w.runs == [] and w.counting.decoded == 0


async def test_payload_signing_is_required_when_configured(world: World) -> None:
    w = world
    lax = await w.nodes("lax", auth())  # signs, but not the payload
    with pytest.raises(RemoteExecutionError) as info:
        await lax.call("server", "secret", {"x": 1}, serializer="counting")
    assert info.value.code == "UNAUTHENTICATED" and "sign_payload: true" in str(info.value)
    assert w.runs == []


# --------------------------------------------------------------------------- replies


async def test_reply_from_a_node_without_the_token_is_refused() -> None:
    client = Node("client", mem("client", auth()))
    impostor = Node("server", mem("server"))  # answers, but cannot sign its answer
    lax_client = Node("lax", mem("lax", auth(sign_responses=False)))
    impostor.register("secret", lambda p, ctx: "forged result")
    async with impostor, client, lax_client:
        await client.connect("server")
        await lax_client.connect("server")
        with pytest.raises(NodeCommError) as info:
            await client.call("server", "secret", 1)
        assert info.value.code == "UNAUTHENTICATED" and "not signed" in str(info.value)
        assert await lax_client.call("server", "secret", 1) == "forged result"


async def test_tampered_reply_payload_is_refused() -> None:
    class TamperReply(Interceptor):
        """After auth in the caller's chain: sees the reply before auth checks it."""

        async def intercept_outbound(self, message: Message, context: CallContext, next_handler: Any) -> Any:
            reply = await next_handler(message)
            reply.payload = b'"tampered"'
            return reply

    client = Node("client", mem("client", auth(sign_payload=True)))
    client.interceptors.add(TamperReply())
    server = Node("server", mem("server", auth(sign_payload=True)))
    server.register("echo", lambda p, ctx: p)
    async with server, client:
        await client.connect("server")
        with pytest.raises(NodeCommError) as info:
            await client.call("server", "echo", "original")
        assert info.value.code == "UNAUTHENTICATED" and "does not verify" in str(info.value)


async def test_errors_still_reach_the_caller() -> None:
    client = Node("client", mem("client", auth()))
    server = Node("server", mem("server", auth()))

    def broken(p: Any, ctx: CallContext) -> None:
        raise ValueError("boom")

    server.register("broken", broken)
    async with server, client:
        await client.connect("server")
        with pytest.raises(RemoteExecutionError) as info:
            await client.call("server", "broken")
        assert info.value.code == "HANDLER_ERROR"
        with pytest.raises(RemoteExecutionError) as info:
            await client.call("server", "nope")
        assert info.value.code == "METHOD_NOT_FOUND"


# --------------------------------------------------------------------------- bounds


def test_replay_cache_stays_bounded_under_a_flood_and_forgets_nothing_it_must_refuse() -> None:
    now = [1000.0]
    cache = ReplayCache(max_entries=100, window=30.0, clock=lambda: now[0])
    first = ("0" * 32, 1000.0)
    assert cache.check_and_add(*first) is None
    for i in range(1, 10_000):
        assert cache.check_and_add(f"{i:032x}", 1000.0 + i / 1000) is None
        assert len(cache) <= 100
    assert cache.check_and_add(*first) == "floor"  # dropped from the cache, still refused
    latest = (f"{9999:032x}", 1000.0 + 9999 / 1000)
    assert cache.check_and_add(*latest) == "replay"
    now[0] += 100  # every entry is now past the window: all leave on the next check
    assert cache.check_and_add("f" * 32, now[0]) is None
    assert len(cache) == 1


async def test_flood_of_signed_calls_keeps_the_nonce_cache_bounded() -> None:
    signer = AuthInterceptor(TOKEN)
    verifier = AuthInterceptor(TOKEN, replay_cache_size=500)
    signed: list[Message] = []

    async def keep(m: Message) -> None:
        signed.append(m)

    async def handled(m: Message) -> None:
        return None

    ctx: Any = None
    for i in range(5000):
        msg = Message(i, MessageType.NOTIFY, "client", "server", "m", b"", "json")
        await signer.intercept_outbound(msg, ctx, keep)  # type: ignore[arg-type]
    accepted = 0
    for msg in signed:
        try:
            await verifier.intercept_inbound(msg.copy(), ctx, handled)  # type: ignore[arg-type]
            accepted += 1
        except NodeCommError:
            pass
        assert len(verifier.replays) <= 500
    assert accepted >= 2500  # a full cache narrows the window; fresh calls still pass
    for msg in signed[:10] + signed[-10:]:
        with pytest.raises(NodeCommError) as info:
            await verifier.intercept_inbound(msg.copy(), ctx, handled)  # type: ignore[arg-type]
        assert info.value.code == "UNAUTHENTICATED"


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("options", "text"),
    [
        ({"token": TOKEN, "max_skew": 0}, "max_skew"),
        ({"token": TOKEN, "max_skew": -5}, "max_skew"),
        ({"token": TOKEN, "replay_cache_size": 0}, "replay_cache_size"),
        ({"token": TOKEN, "metadata_key": ""}, "metadata_key"),
        ({"token": TOKEN, "sign_payload": "maybe"}, "sign_payload"),
    ],
)
def test_bad_options_are_config_errors(options: dict[str, Any], text: str) -> None:
    with pytest.raises(ConfigError) as info:
        Node("n", mem("n", InterceptorConfig("auth", options)))
    assert "interceptors[0]" in str(info.value) and text in str(info.value)


async def test_custom_metadata_key_and_options_from_yaml_strings() -> None:
    cfg = auth(metadata_key="x-sig", max_skew="10", sign_payload="true")
    a, b = Node("a", mem("a", cfg)), Node("b", mem("b", auth(metadata_key="x-sig", max_skew="10", sign_payload="true")))
    seen: list[dict[str, str]] = []
    b.register("m", lambda p, ctx: seen.append(dict(ctx.metadata)))
    async with a, b:
        await a.connect("b")
        await a.call("b", "m")
    assert seen == [{}]  # the signature entry is consumed, handlers never see it
    interceptor = next(iter(a.interceptors))
    assert isinstance(interceptor, AuthInterceptor)
    assert (interceptor.metadata_key, interceptor.max_skew, interceptor.sign_payload) == ("x-sig", 10.0, True)
    assert TOKEN not in repr(interceptor)
