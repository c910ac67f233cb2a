"""Every memory-mode example of the seed README, as written there (names and calls unchanged; only
the surrounding setup a snippet assumes — a config, a peer, a handler — is added)."""

from __future__ import annotations

import asyncio
import datetime
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from node_comm import (
    CallTimeoutError,
    Interceptor,
    Message,
    MethodOptions,
    Node,
    NodeConfig,
    NodeNotConnectedError,
    RemoteExecutionError,
    Serializer,
    TransportConfig,
    load_config,
)


@dataclass
class Batch:
    """A payload only pickle carries (a class, a date, a set)."""

    when: datetime.date
    rows: set[int]


ROOT = Path(__file__).resolve().parents[1]
WAIT = 5.0


def memory_config(node_id: str, **kw: Any) -> NodeConfig:
    return NodeConfig(node_id=node_id, transport=TransportConfig(mode="memory"), **kw)


def test_quickstart_memory_runs_as_written() -> None:
    script = ROOT / "examples" / "quickstart_memory.py"
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Result: {'status': 'completed', 'loss': 0.01}"
    assert "Traceback" not in proc.stderr


async def test_quickstart_memory_inline() -> None:
    # The quickstart's main(), run inside the test's loop.
    config1 = NodeConfig(node_id="coordinator", transport=TransportConfig(mode="memory"))
    config2 = NodeConfig(node_id="participant", transport=TransportConfig(mode="memory"))
    coordinator = Node("coordinator", config1)
    participant = Node("participant", config2)
    epochs_seen: list[int] = []

    async def train(payload: Any, ctx: Any) -> dict[str, Any]:
        epochs = payload.get("epochs", 1)
        epochs_seen.append(epochs)
        return {"status": "completed", "loss": 0.01}

    participant.register("train", train)
    await coordinator.start()
    await participant.start()
    await coordinator.connect("participant")
    result = await coordinator.call("participant", "train", {"epochs": 10})
    assert result == {"status": "completed", "loss": 0.01}
    assert epochs_seen == [10]
    await coordinator.stop()
    await participant.stop()
    assert not coordinator.is_running and not participant.is_running


async def test_context_manager() -> None:
    config = memory_config("my_node")
    payload = {"question": 42}

    async def handler(payload: Any, ctx: Any) -> Any:
        return {"answer": payload["question"], "from": ctx.node.node_id}

    async with Node("other_node", memory_config("other_node")) as other:
        other.register("method", handler)
        async with Node("my_node", config) as node:
            node.register("method", handler)
            await node.connect("other_node")
            result = await node.call("other_node", "method", payload)
            assert result == {"answer": 42, "from": "other_node"}
            assert node.is_running
        assert not node.is_running
        assert not other.is_connected("my_node")


async def test_events_snippet(capsys: pytest.CaptureFixture[str]) -> None:
    config = memory_config("my_node")
    other = Node("other", memory_config("other"))
    await other.start()
    calls: list[str] = []

    def handler1(nid: str, addr: Any) -> None:
        calls.append(f"handler1:{nid}")

    def handler2(nid: str, reason: str) -> None:
        calls.append(f"handler2:{nid}")

    node = Node("my_node", config)

    # 注册事件处理器
    node.on("connect", lambda nid, addr: print(f"Connected to {nid}"))
    node.on("disconnect", lambda nid, reason: print(f"Disconnected from {nid}: {reason}"))

    # 链式调用
    node.on("connect", handler1).on("disconnect", handler2)

    await node.start()
    await node.connect("other")
    await node.disconnect("other")
    out = capsys.readouterr().out
    assert "Connected to other" in out
    assert "Disconnected from other: " in out
    assert calls == ["handler1:other", "handler2:other"]

    # 移除处理器
    node.off("connect", handler1)  # 移除特定处理器
    await node.connect("other")
    assert calls == ["handler1:other", "handler2:other"]
    assert "Connected to other" in capsys.readouterr().out  # the lambda is still there

    node.off("connect")  # 移除所有 connect 处理器
    await node.disconnect("other")
    await node.connect("other")
    out = capsys.readouterr().out
    assert "Connected to" not in out
    assert "Disconnected from other" in out
    assert calls[-1] == "handler2:other"

    await node.stop()
    await other.stop()


async def test_broadcast_snippet() -> None:
    coordinator = Node("coordinator", memory_config("coordinator"))
    participants = [Node(f"p{i}", memory_config(f"p{i}")) for i in range(3)]
    received: dict[str, Any] = {}

    await coordinator.start()
    for p in participants:

        async def config_update(payload: Any, ctx: Any, _p: Node = p) -> str:
            received[_p.node_id] = payload
            return "applied"

        p.register("config_update", config_update)
        await p.start()
        await coordinator.connect(p.node_id)

    # 广播到所有已连接节点
    results = await coordinator.broadcast(
        method="config_update",
        payload={"learning_rate": 0.001},
        exclude=["coordinator"],  # 排除自己
    )
    assert results == {"p0": "applied", "p1": "applied", "p2": "applied"}
    assert received == {f"p{i}": {"learning_rate": 0.001} for i in range(3)}
    for p in participants:
        await p.stop()
    await coordinator.stop()


async def test_notify_heartbeat_snippet() -> None:
    coordinator = Node("coordinator", memory_config("coordinator"))
    node = Node("worker", memory_config("worker"))
    arrived = asyncio.Event()
    seen: list[Message] = []

    class Watch(Interceptor):
        async def intercept_inbound(self, message: Message, context: Any, next_handler: Any) -> Any:
            seen.append(message)
            reply = await next_handler(message)
            arrived.set()
            return reply

    coordinator._interceptor_chain.add(Watch())
    await coordinator.start()
    await node.start()
    await node.connect("coordinator")

    await node.notify(
        target="coordinator",
        method="_heartbeat",
        payload={"status": "alive"},
    )
    await asyncio.wait_for(arrived.wait(), WAIT)
    assert [m.method for m in seen] == ["_heartbeat"]
    assert seen[0].source == "worker"
    assert coordinator.is_connected("worker")
    await node.stop()
    await coordinator.stop()


async def test_pickle_serializer_snippet() -> None:
    server = Node("target", memory_config("target"))
    node = Node("client", memory_config("client"))

    def handler(payload: Any, ctx: Any) -> Any:
        return Batch(payload.when + datetime.timedelta(days=1), payload.rows | {99})

    complex_data = Batch(datetime.date(2024, 2, 28), {1, 2})

    from node_comm import MethodOptions as SeedMethodOptions  # the snippet's own import

    assert SeedMethodOptions is MethodOptions
    # 服务端注册时指定序列化器
    server.register("process", handler, MethodOptions(serializer="pickle"))
    await server.start()
    await node.start()
    await node.connect("target")
    # 客户端调用时指定序列化器
    result = await node.call("target", "process", complex_data, serializer="pickle")
    assert result == Batch(datetime.date(2024, 2, 29), {1, 2, 99})
    await node.stop()
    await server.stop()


async def test_load_config_snippet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config.yaml").write_text(
        "node_id: yaml_node\n"
        "debug: true\n"
        "default_timeout: 12.5\n"
        "transport:\n"
        "  mode: memory\n"
        "heartbeat:\n"
        "  enabled: true\n"
        "  interval: 5\n"
        "  timeout: 15\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)

    config = load_config("config.yaml")
    node = Node(config.node_id, config)

    assert node.node_id == "yaml_node"
    assert config.debug is True and config.default_timeout == 12.5
    assert config.transport.mode == "memory"
    hb = config.heartbeat
    assert (hb.enabled, hb.interval, hb.timeout) == (True, 5.0, 15.0)
    peer = Node("peer", memory_config("peer"))

    async def hello(payload: Any, ctx: Any) -> str:
        return f"hello {ctx.source}"

    peer.register("hello", hello)
    async with node, peer:
        await node.connect("peer")
        assert await node.call("peer", "hello") == "hello yaml_node"


async def test_load_config_defaults_match_the_seed_table(tmp_path: Path) -> None:
    path = tmp_path / "minimal.yaml"
    path.write_text("node_id: n\n", encoding="utf-8")
    config = load_config(path)
    assert config.debug is False
    assert config.default_timeout == 30.0
    assert config.transport.mode == "memory"
    hb = config.heartbeat
    assert (hb.enabled, hb.interval, hb.timeout) == (False, 30.0, 90.0)


async def test_custom_serializer_snippet() -> None:
    import json

    encoded: list[Any] = []
    decoded: list[bytes] = []

    class MySerializer(Serializer):
        @property
        def name(self) -> str:
            return "my_serializer"

        def serialize(self, obj: Any) -> bytes:
            # 实现序列化逻辑
            encoded.append(obj)
            return b"MY" + json.dumps(obj).encode()[::-1]

        def deserialize(self, data: bytes) -> Any:
            # 实现反序列化逻辑
            decoded.append(data)
            assert data.startswith(b"MY")
            return json.loads(data[2:][::-1])

    server = Node("server", memory_config("server"))
    node = Node("client", memory_config("client"))

    # 注册
    node._serializer_registry.register(MySerializer())
    server._serializer_registry.register(MySerializer())

    async def handler(payload: Any, ctx: Any) -> Any:
        return {"got": payload}

    server.register("custom", handler, MethodOptions(serializer="my_serializer"))
    async with server, node:
        await node.connect("server")
        result = await node.call("server", "custom", {"a": [1, 2]}, serializer="my_serializer")
    assert result == {"got": {"a": [1, 2]}}
    # Used both ways: request by the client, reply by the server.
    assert encoded == [{"a": [1, 2]}, {"got": {"a": [1, 2]}}]
    assert len(decoded) == 2 and all(d.startswith(b"MY") for d in decoded)


async def test_custom_interceptor_snippet() -> None:
    seen: list[tuple[str, str, str]] = []

    class MyInterceptor(Interceptor):
        async def intercept_inbound(self, message: Any, context: Any, next_handler: Any) -> Any:
            # 入站处理
            seen.append(("inbound", context.node.node_id, message.method))
            return await next_handler(message)

        async def intercept_outbound(self, message: Any, context: Any, next_handler: Any) -> Any:
            # 出站处理
            seen.append(("outbound", context.node.node_id, message.method))
            return await next_handler(message)

    server = Node("server", memory_config("server"))
    node = Node("client", memory_config("client"))

    # 添加到拦截器链
    node._interceptor_chain.add(MyInterceptor())
    server._interceptor_chain.add(MyInterceptor())

    async def add(payload: Any, ctx: Any) -> int:
        return int(payload["a"] + payload["b"])

    server.register("add", add)
    node.register("add", add)
    async with server, node:
        await node.connect("server")
        assert await node.call("server", "add", {"a": 1, "b": 2}) == 3
        assert await server.call("client", "add", {"a": 3, "b": 4}) == 7
    # Each node's one interceptor saw its outbound and its inbound call.
    assert seen == [
        ("outbound", "client", "add"),
        ("inbound", "server", "add"),
        ("outbound", "server", "add"),
        ("inbound", "client", "add"),
    ]


async def test_error_handling_snippet(capsys: pytest.CaptureFixture[str]) -> None:
    node = Node("node", memory_config("node", default_timeout=0.2))
    target = Node("target", memory_config("target"))

    async def method(payload: Any, ctx: Any) -> Any:
        if payload == "fail":
            raise RuntimeError("training diverged")
        await asyncio.Event().wait()

    target.register("method", method)
    await node.start()
    await target.start()

    async def run_snippet(payload: Any) -> None:
        try:
            result = await node.call("target", "method", payload)
            print(result)
        except NodeNotConnectedError as e:
            print(f"Node {e.node_id} not connected")
        except CallTimeoutError as e:
            print(f"Call to {e.target}.{e.method} timed out")
        except RemoteExecutionError as e:
            print(f"Remote error [{e.code}]: {e}")

    await run_snippet("slow")
    assert capsys.readouterr().out == "Node target not connected\n"

    await node.connect("target")
    await run_snippet("slow")
    assert capsys.readouterr().out == "Call to target.method timed out\n"

    await run_snippet("fail")
    out = capsys.readouterr().out
    assert out.startswith("Remote error [HANDLER_ERROR]: ")
    assert "training diverged" in out

    await node.stop()
    await target.stop()
