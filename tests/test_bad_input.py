"""Every bad input of issue 2 gets a clear, typed error, and the node keeps serving afterwards."""

from __future__ import annotations

import logging
import pathlib
import pickle
from collections.abc import AsyncIterator
from typing import Any

import pytest

from node_comm import (
    CallContext,
    ConfigError,
    Interceptor,
    Message,
    MethodOptions,
    Node,
    NodeCommError,
    NodeConfig,
    NodeNotConnectedError,
    RemoteExecutionError,
    SerializationError,
    TransportConfig,
)
from node_comm.exceptions import ConnectFailedError, NodeNotStartedError


def mem(node_id: str, **kw: Any) -> NodeConfig:
    return NodeConfig(node_id=node_id, transport=TransportConfig(mode="memory"), **kw)


class Counter:
    """A handler that counts its runs."""

    def __init__(self) -> None:
        self.runs = 0

    async def __call__(self, payload: Any, ctx: CallContext) -> Any:
        self.runs += 1
        return {"runs": self.runs}


@pytest.fixture
async def nodes() -> AsyncIterator[tuple[Node, Node, Counter]]:
    """``client`` connected to ``server``; ``server`` serves ``ping`` (json) and ``count``."""
    client = Node("client", mem("client"))
    server = Node("server", mem("server"))
    counter = Counter()

    async def ping(payload: Any, ctx: CallContext) -> str:
        return "pong"

    server.register("ping", ping)
    server.register("count", counter)
    await client.start()
    await server.start()
    await client.connect("server")
    try:
        yield client, server, counter
    finally:
        await client.stop()
        await server.stop()


async def still_serving(client: Node) -> None:
    assert await client.call("server", "ping", {}) == "pong"


# --------------------------------------------------------------------------- lifecycle


async def test_call_before_start() -> None:
    node = Node("early", mem("early"))
    for attempt in (
        node.call("x", "m", {}),
        node.notify("x", "m", {}),
        node.broadcast("m", {}),
        node.connect("x"),
    ):
        with pytest.raises(NodeNotStartedError) as info:
            await attempt
        assert isinstance(info.value, NodeCommError)
        assert "start()" in str(info.value)
    # Starting afterwards works.
    async with node:
        assert node.is_running


async def test_call_after_stop() -> None:
    node = Node("late", mem("late"))
    await node.start()
    await node.stop()
    with pytest.raises(NodeNotStartedError):
        await node.call("x", "m", {})


async def test_connect_to_unknown_id(nodes: tuple[Node, Node, Counter]) -> None:
    client, _, _ = nodes
    with pytest.raises(ConnectFailedError) as info:
        await client.connect("nobody-has-this-id")
    exc = info.value
    assert isinstance(exc, NodeNotConnectedError) and isinstance(exc, NodeCommError)
    assert exc.node_id == "nobody-has-this-id"
    assert "nobody-has-this-id" in str(exc)
    assert "server" in str(exc)  # names the nodes that do exist
    assert client.connected_nodes == ["server"]
    await still_serving(client)


async def test_call_to_unconnected_node(nodes: tuple[Node, Node, Counter]) -> None:
    client, _, _ = nodes
    with pytest.raises(NodeNotConnectedError) as info:
        await client.call("stranger", "ping", {})
    assert info.value.node_id == "stranger"
    assert "connect" in str(info.value)
    with pytest.raises(NodeNotConnectedError):
        await client.notify("stranger", "ping", {})
    await still_serving(client)


async def test_connect_to_self() -> None:
    async with Node("me", mem("me")) as me:
        with pytest.raises(NodeCommError):
            await me.connect("me")
        assert me.connected_nodes == []


async def test_two_nodes_with_one_id(nodes: tuple[Node, Node, Counter]) -> None:
    client, _, _ = nodes
    twin = Node("server", mem("server"))
    with pytest.raises(ConfigError) as info:
        await twin.start()
    assert "server" in str(info.value) and "already" in str(info.value)
    assert not twin.is_running
    # The original keeps serving, and is still the one reached by id.
    await still_serving(client)
    await twin.stop()  # harmless on a node that never started


async def test_node_id_must_be_a_non_empty_string() -> None:
    with pytest.raises(ConfigError):
        Node("", mem("x"))
    with pytest.raises(ConfigError):
        Node(42, mem("x"))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- registration


async def test_register_twice(nodes: tuple[Node, Node, Counter]) -> None:
    client, server, _ = nodes

    async def pong2(payload: Any, ctx: CallContext) -> str:
        return "pong2"

    with pytest.raises(ConfigError) as info:
        server.register("ping", pong2)
    assert "ping" in str(info.value) and "replace=True" in str(info.value)
    await still_serving(client)  # the first registration is untouched
    server.register("ping", pong2, replace=True)
    assert await client.call("server", "ping", {}) == "pong2"


@pytest.mark.parametrize("name", ["_heartbeat", "_private", "_"])
async def test_register_reserved_name(nodes: tuple[Node, Node, Counter], name: str) -> None:
    client, server, _ = nodes

    async def h(payload: Any, ctx: CallContext) -> str:
        return "mine"

    with pytest.raises(ConfigError) as info:
        server.register(name, h)
    assert "_" in str(info.value) and "reserved" in str(info.value)
    with pytest.raises(ConfigError):
        server.register(name, h, replace=True)
    await still_serving(client)


async def test_register_not_callable() -> None:
    node = Node("n", mem("n"))
    with pytest.raises(ConfigError):
        node.register("m", "not a function")  # type: ignore[arg-type]


async def test_unknown_serializer_in_register(nodes: tuple[Node, Node, Counter]) -> None:
    client, server, counter = nodes
    with pytest.raises(ConfigError) as info:
        server.register("yaml_method", counter, MethodOptions(serializer="yamlish"))
    assert "yamlish" in str(info.value)
    for installed in ("json", "pickle", "msgpack"):
        assert installed in str(info.value)
    assert "yaml_method" not in server.methods
    await still_serving(client)


async def test_unknown_serializer_in_call(nodes: tuple[Node, Node, Counter]) -> None:
    client, _, counter = nodes
    with pytest.raises(ConfigError) as info:
        await client.call("server", "count", {}, serializer="yamlish")
    assert "yamlish" in str(info.value) and "json" in str(info.value)
    with pytest.raises(ConfigError):
        await client.notify("server", "count", {}, serializer="yamlish")
    assert counter.runs == 0
    await still_serving(client)


# --------------------------------------------------------------------------- payloads and handlers


@pytest.mark.parametrize(
    "payload",
    [{"obj": object()}, {1, 2, 3}, b"raw bytes", float("nan"), {"inf": float("inf")}, {(1, 2): "tuple key"}],
    ids=["object", "set", "bytes", "nan", "inf", "tuple-key"],
)
async def test_payload_json_cannot_encode(nodes: tuple[Node, Node, Counter], payload: Any) -> None:
    client, _, counter = nodes
    with pytest.raises(SerializationError) as info:
        await client.call("server", "count", payload)
    assert "json" in str(info.value) and "count" in str(info.value)
    with pytest.raises(SerializationError):
        await client.notify("server", "count", payload)
    assert counter.runs == 0  # nothing was sent
    await still_serving(client)
    assert counter.runs == 0


@pytest.mark.parametrize("debug", [False, True])
async def test_handler_raises(debug: bool) -> None:
    client = Node("client", mem("client"))
    server = Node("server", mem("server", debug=debug))

    async def broken(payload: Any, ctx: CallContext) -> None:
        raise LookupError("no such training run")

    def broken_sync(payload: Any, ctx: CallContext) -> None:
        raise LookupError("no such sync run")

    async def ping(payload: Any, ctx: CallContext) -> str:
        return "pong"

    server.register("broken", broken)
    server.register("broken_sync", broken_sync)
    server.register("ping", ping)
    async with server, client:
        await client.connect("server")
        for method, text in (("broken", "no such training run"), ("broken_sync", "no such sync run")):
            with pytest.raises(RemoteExecutionError) as info:
                await client.call("server", method, {})
            assert info.value.code == "HANDLER_ERROR"
            assert text in str(info.value) and "LookupError" in str(info.value)
            if debug:
                assert info.value.remote_traceback and "LookupError" in info.value.remote_traceback
            else:
                assert info.value.remote_traceback is None
        await still_serving(client)


@pytest.mark.parametrize("debug", [False, True])
async def test_handler_returns_unencodable(debug: bool) -> None:
    client = Node("client", mem("client"))
    server = Node("server", mem("server", debug=debug))

    async def bad_result(payload: Any, ctx: CallContext) -> Any:
        return {"when": object()}

    async def nan_result(payload: Any, ctx: CallContext) -> Any:
        return [float("nan")]

    async def ping(payload: Any, ctx: CallContext) -> str:
        return "pong"

    server.register("bad_result", bad_result)
    server.register("nan_result", nan_result)
    server.register("ping", ping)
    async with server, client:
        await client.connect("server")
        for method in ("bad_result", "nan_result"):
            with pytest.raises(RemoteExecutionError) as info:
                await client.call("server", method, {})
            assert info.value.code == "SERIALIZATION_ERROR"
            assert method in str(info.value)
            assert (info.value.remote_traceback is not None) is debug
        await still_serving(client)


async def test_unknown_method(nodes: tuple[Node, Node, Counter]) -> None:
    client, _, _ = nodes
    with pytest.raises(RemoteExecutionError) as info:
        await client.call("server", "trian", {})
    assert info.value.code == "METHOD_NOT_FOUND"
    assert "trian" in str(info.value)
    assert "count" in str(info.value) and "ping" in str(info.value)
    await still_serving(client)


# --------------------------------------------------------------------------- serializer mismatch


def write_marker(path: str) -> None:
    """What the malicious pickle runs when loaded."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("pwned")


class Evil:
    """Loading this pickle writes a file."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> Any:
        return (write_marker, (self.path,))


def test_the_malicious_pickle_really_writes_a_file(tmp_path: pathlib.Path) -> None:
    """Control: prove the payload used below is dangerous when loaded."""
    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(Evil(marker)))
    assert marker.read_text(encoding="utf-8") == "pwned"


async def test_pickle_to_json_method_via_call(nodes: tuple[Node, Node, Counter], tmp_path: pathlib.Path) -> None:
    client, _, counter = nodes
    marker = tmp_path / "pwned-call"
    with pytest.raises(RemoteExecutionError) as info:
        await client.call("server", "count", Evil(marker), serializer="pickle")
    assert info.value.code == "SERIALIZER_MISMATCH"
    assert "json" in str(info.value) and "pickle" in str(info.value)
    assert not marker.exists()
    assert counter.runs == 0
    await client.notify("server", "count", Evil(marker), serializer="pickle")
    await still_serving(client)  # the notify, sent before, has been handled by now
    assert not marker.exists()
    assert counter.runs == 0


class Rewrite(Interceptor):
    """Turns the outgoing request into a raw, hand-built frame."""

    def __init__(self, payload: bytes, serializer: str) -> None:
        self.payload = payload
        self.serializer = serializer
        self.sent: list[Message] = []

    async def intercept_outbound(self, message: Message, context: CallContext, next_handler: Any) -> Any:
        raw = Message(
            message.id,
            message.type,
            message.source,
            message.target,
            message.method,
            self.payload,
            self.serializer,
            {},
            None,
            message.deadline,
        )
        self.sent.append(raw)
        return await next_handler(raw)


@pytest.mark.parametrize("wire_serializer", ["pickle", "json", "msgpack", "no-such-serializer"])
async def test_raw_malicious_pickle_frame_is_never_loaded(
    nodes: tuple[Node, Node, Counter], tmp_path: pathlib.Path, wire_serializer: str
) -> None:
    """A hand-built request whose payload is a malicious pickle, labelled with any serializer,
    sent to a json method: refused, not one byte unpickled."""
    client, _, counter = nodes
    marker = tmp_path / f"pwned-{wire_serializer}"
    evil = pickle.dumps(Evil(marker))
    rewrite = Rewrite(evil, wire_serializer)
    client.interceptors.add(rewrite)
    with pytest.raises(RemoteExecutionError) as info:
        await client.call("server", "count", {"harmless": True})
    client.interceptors.remove(rewrite)
    assert rewrite.sent and rewrite.sent[0].payload == evil
    expected = "SERIALIZATION_ERROR" if wire_serializer == "json" else "SERIALIZER_MISMATCH"
    assert info.value.code == expected
    assert not marker.exists()
    assert counter.runs == 0
    await still_serving(client)


async def test_pickle_method_refuses_json(nodes: tuple[Node, Node, Counter]) -> None:
    client, server, counter = nodes
    server.register("pickled", counter, MethodOptions(serializer="pickle"))
    with pytest.raises(RemoteExecutionError) as info:
        await client.call("server", "pickled", {"a": 1})
    assert info.value.code == "SERIALIZER_MISMATCH"
    assert counter.runs == 0
    assert await client.call("server", "pickled", {"a": 1}, serializer="pickle") == {"runs": 1}


# --------------------------------------------------------------------------- malformed frames


async def test_malformed_frames_do_not_kill_the_node(nodes: tuple[Node, Node, Counter]) -> None:
    """Frames no well-behaved peer sends: garbage payload, unknown message type, reply to no call,
    cancel of no call, a frame from a node that is not connected."""
    client, server, counter = nodes
    rewrite = Rewrite(b"\xff\xfe not json at all", "json")
    client.interceptors.add(rewrite)
    with pytest.raises(RemoteExecutionError) as info:
        await client.call("server", "count", {})
    client.interceptors.remove(rewrite)
    assert info.value.code == "SERIALIZATION_ERROR"
    assert counter.runs == 0

    from node_comm import MessageType

    server.transport.host.deliver(Message(999_001, MessageType.RESPONSE, "client", "server", "x", b"1", "json"))
    server.transport.host.deliver(Message(999_002, MessageType.ERROR, "client", "server", "x"))
    server.transport.host.deliver(Message(999_003, MessageType.CANCEL, "client", "server"))
    server.transport.host.deliver(Message(999_004, MessageType.REQUEST, "ghost", "server", "count", b"{}", "json"))
    server.transport.host.deliver(Message(999_005, 42, "client", "server", "count", b"{}", "json"))  # type: ignore[arg-type]
    await still_serving(client)
    assert counter.runs == 0


async def test_unknown_event_name() -> None:
    node = Node("n", mem("n"))
    with pytest.raises(ConfigError) as info:
        node.on("conect", lambda nid, addr: None)
    assert "conect" in str(info.value) and "connect" in str(info.value) and "disconnect" in str(info.value)
    with pytest.raises(ConfigError):
        node.off("disconected")
    with pytest.raises(TypeError):
        node.on("connect", "not callable")  # type: ignore[arg-type]


class EvilReply(Interceptor):
    """On the serving side: answers every call with a malicious pickle, labelled as pickle."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    async def intercept_inbound(self, message: Message, context: CallContext, next_handler: Any) -> Any:
        reply = await next_handler(message)
        if reply is None:
            return None
        return Message(reply.id, reply.type, reply.source, reply.target, reply.method, self.payload, "pickle")


async def test_caller_never_unpickles_a_reply_it_did_not_ask_pickle_for(
    nodes: tuple[Node, Node, Counter], tmp_path: pathlib.Path
) -> None:
    """A hostile or broken server answers a json call with a pickle: the caller refuses it
    unread (the wire alone never chooses pickle, in either direction)."""
    client, server, counter = nodes
    marker = tmp_path / "pwned-reply"
    evil = EvilReply(pickle.dumps(Evil(marker)))
    server.interceptors.add(evil)
    with pytest.raises(SerializationError) as info:
        await client.call("server", "count", {})
    assert "pickle" in str(info.value)
    assert not marker.exists()
    assert counter.runs == 1  # the handler did run; only its reply was poisoned
    server.interceptors.remove(evil)
    await still_serving(client)


async def test_failed_notify_is_logged_on_the_serving_node(caplog: pytest.LogCaptureFixture) -> None:
    """A notify has no caller to answer: its failure must at least reach the serving node's log."""
    a = Node("a", NodeConfig(node_id="a"))
    b = Node("b", NodeConfig(node_id="b"))

    async def boom(payload: Any, ctx: CallContext) -> None:
        raise RuntimeError("disk full")

    b.register("boom", boom)
    b.register("ping", lambda p, ctx: "pong")
    async with a, b:
        await a.connect("b")
        with caplog.at_level(logging.WARNING, logger="node_comm.node"):
            await a.notify("b", "boom", {})
            await a.notify("b", "no_such_method", {})
            # Served in order, each notify fails in its first step: done once a later call is answered.
            assert await a.call("b", "ping", None) == "pong"
    text = caplog.text
    assert "notify 'boom' from 'a' failed [HANDLER_ERROR]" in text and "disk full" in text
    assert "notify 'no_such_method' from 'a' failed [METHOD_NOT_FOUND]" in text
