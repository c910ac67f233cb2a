"""The ``logging`` and ``auth`` interceptors, configured by name as a user would."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from node_comm import (
    CallContext,
    CallTimeoutError,
    ConfigError,
    InterceptorConfig,
    MethodOptions,
    Node,
    NodeConfig,
    RemoteExecutionError,
    load_config,
)
from tests.interceptor_helpers import CountingJson, mem

WAIT = 5.0
SECRET_PAYLOAD = "payload-contents-must-stay-private-4711"
TOKEN = "tok-3f9a-never-log-me"


def all_log_text(caplog: pytest.LogCaptureFixture) -> str:
    parts = []
    for r in caplog.records:
        parts.append(r.getMessage())
        parts.append(repr(r.args))
        parts.append(r.exc_text or "")
        parts.append(repr(getattr(r, "__dict__", {})))
    return "\n".join(parts)


def call_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "node_comm.calls"]


def field(line: str, name: str) -> str:
    m = re.search(rf"\b{name}=(\S+)", line)
    assert m, f"{name}= missing from log line {line!r}"
    return m.group(1)


# --------------------------------------------------------------------------- logging


@pytest.fixture
async def logged(caplog: pytest.LogCaptureFixture) -> AsyncIterator[tuple[Node, Node]]:
    caplog.set_level(logging.DEBUG)  # everything, from every logger
    log_cfg = InterceptorConfig("logging")
    auth_cfg = InterceptorConfig("auth", {"token": TOKEN})
    a = Node("alpha", mem("alpha", auth_cfg, log_cfg))
    b = Node("beta", mem("beta", auth_cfg, log_cfg))

    async def store(payload: Any, ctx: CallContext) -> dict[str, str]:
        return {"stored": payload["secret"]}

    async def broken(payload: Any, ctx: CallContext) -> None:
        raise RuntimeError(f"failed on {payload}")

    async def slow(payload: Any, ctx: CallContext) -> None:
        await asyncio.Event().wait()

    b.register("store", store)
    b.register("broken", broken)
    b.register("slow", slow)
    async with a, b:
        await a.connect("beta")
        yield a, b


async def test_logging_records_each_call_on_both_sides(
    logged: tuple[Node, Node], caplog: pytest.LogCaptureFixture
) -> None:
    a, _ = logged
    payload = {"secret": SECRET_PAYLOAD}
    caplog.clear()
    assert await a.call("beta", "store", payload) == {"stored": SECRET_PAYLOAD}
    lines = call_records(caplog)
    out = [ln for ln in lines if ln.startswith("outbound")]
    inb = [ln for ln in lines if ln.startswith("inbound")]
    assert len(out) == 1 and len(inb) == 1, lines
    size = len(json.dumps(payload, separators=(",", ":")).encode())
    for line, peer in ((out[0], "beta"), (inb[0], "alpha")):
        assert field(line, "method") == "store"
        assert field(line, "peer") == peer
        assert int(field(line, "size")) == size
        assert float(field(line, "duration_ms")) >= 0
        assert field(line, "outcome") == "ok"


async def test_logging_records_failures_with_their_code(
    logged: tuple[Node, Node], caplog: pytest.LogCaptureFixture
) -> None:
    a, _ = logged
    caplog.clear()
    with pytest.raises(RemoteExecutionError):
        await a.call("beta", "broken", SECRET_PAYLOAD)
    with pytest.raises(RemoteExecutionError):
        await a.call("beta", "missing", SECRET_PAYLOAD)
    with pytest.raises(CallTimeoutError):
        await a.call("beta", "slow", SECRET_PAYLOAD, timeout=0.05)
    outcomes = {(ln.split()[0], field(ln, "method")): field(ln, "outcome") for ln in call_records(caplog)}
    assert outcomes[("outbound", "broken")] == "HANDLER_ERROR"
    assert outcomes[("inbound", "broken")] == "HANDLER_ERROR"
    assert outcomes[("outbound", "missing")] == "METHOD_NOT_FOUND"
    assert outcomes[("outbound", "slow")] == "DEADLINE_EXCEEDED"


async def test_logging_never_shows_payload_or_token(
    logged: tuple[Node, Node], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = logged
    caplog.clear()
    await a.call("beta", "store", {"secret": SECRET_PAYLOAD})
    with pytest.raises(RemoteExecutionError):
        await a.call("beta", "broken", SECRET_PAYLOAD)
    await a.notify("beta", "store", {"secret": SECRET_PAYLOAD})
    with pytest.raises(RemoteExecutionError):
        await b.call("alpha", "no_such", SECRET_PAYLOAD)
    await a.stop()
    text = all_log_text(caplog)
    assert call_records(caplog), "the logging interceptor logged nothing"
    assert SECRET_PAYLOAD not in text
    assert TOKEN not in text
    # Interceptors' reprs (e.g. in debug output) hide the token too.
    assert all(TOKEN not in repr(i) for i in b.interceptors)


async def test_logging_payloads_only_when_asked(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="node_comm.calls")
    a = Node("a", mem("a", InterceptorConfig("logging", {"log_payloads": True})))
    b = Node("b", mem("b"))

    async def echo(payload: Any, ctx: CallContext) -> Any:
        return payload

    b.register("echo", echo)
    async with a, b:
        await a.connect("b")
        await a.call("b", "echo", SECRET_PAYLOAD)
    assert SECRET_PAYLOAD in "\n".join(call_records(caplog))


async def test_logging_level_and_logger_options(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    a = Node("a", mem("a", InterceptorConfig("logging", {"logger": "my.calls", "level": "WARNING"})))
    b = Node("b", mem("b"))

    async def echo(payload: Any, ctx: CallContext) -> Any:
        return payload

    b.register("echo", echo)
    async with a, b:
        await a.connect("b")
        await a.call("b", "echo", 1)
    mine = [r for r in caplog.records if r.name == "my.calls"]
    assert len(mine) == 1 and mine[0].levelno == logging.WARNING
    assert "method=echo" in mine[0].getMessage()


# --------------------------------------------------------------------------- auth


class Server:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.runs = 0
        self.metadata: list[dict[str, str]] = []
        self.counting = CountingJson()
        node.serializers.register(self.counting)

        async def secret(payload: Any, ctx: CallContext) -> str:
            self.runs += 1
            self.metadata.append(dict(ctx.metadata))
            return f"welcome {ctx.source}"

        node.register("secret", secret, MethodOptions(serializer="counting"))


async def run_client(server_cfg: NodeConfig, client_cfg: NodeConfig, calls: int = 1) -> tuple[Server, list[Any]]:
    s = Node("server", server_cfg)
    c = Node("client", client_cfg)
    server = Server(s)
    c.serializers.register(CountingJson())
    results: list[Any] = []
    async with s, c:
        await c.connect("server")
        for _ in range(calls):
            try:
                results.append(await c.call("server", "secret", {"x": 1}, serializer="counting"))
            except Exception as exc:
                results.append(exc)
        await c.notify("server", "secret", {"x": 2}, serializer="counting")
        # A call through the same path after the notify: by the time it returns, the notify was handled.
        try:
            results.append(await c.call("server", "secret", {"x": 3}, serializer="counting"))
        except Exception as exc:
            results.append(exc)
    return server, results


def auth(token: str) -> InterceptorConfig:
    return InterceptorConfig("auth", {"token": token})


async def test_auth_right_token_passes() -> None:
    server, results = await run_client(mem("server", auth(TOKEN)), mem("client", auth(TOKEN)))
    assert results == ["welcome client", "welcome client"]
    assert server.runs == 3  # two calls and the notify
    assert server.counting.decoded == 3  # control for the tests below: decoding is counted
    assert all("authorization" not in md for md in server.metadata)  # the token is not handed on
    assert all(TOKEN not in repr(md) for md in server.metadata)


@pytest.mark.parametrize(
    "client_cfg",
    [
        mem("client", auth("wrong-token")),
        mem("client"),
        mem("client", auth(TOKEN + "x")),
        mem("client", auth("t")),
    ],
    ids=["wrong", "missing", "longer", "shorter"],
)
async def test_auth_refuses_wrong_or_missing_token(client_cfg: NodeConfig) -> None:
    server, results = await run_client(mem("server", auth(TOKEN)), client_cfg)
    assert len(results) == 2
    for exc in results:
        assert isinstance(exc, RemoteExecutionError), exc
        assert exc.code == "UNAUTHENTICATED"
        assert TOKEN not in str(exc)
    assert server.runs == 0  # the handler never ran, for calls nor notify
    assert server.counting.decoded == 0  # and the payload was never decoded


async def test_auth_from_yaml_with_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE_COMM_TEST_TOKEN", TOKEN)
    yaml_text = (
        "node_id: {id}\n"
        "transport:\n"
        "  mode: memory\n"
        "interceptors:\n"
        "  - name: auth\n"
        "    options:\n"
        "      token: ${{NODE_COMM_TEST_TOKEN}}\n"
        "  - name: logging\n"
    )
    for node_id in ("server", "client"):
        (tmp_path / f"{node_id}.yaml").write_text(yaml_text.format(id=node_id), encoding="utf-8")
    assert TOKEN not in (tmp_path / "server.yaml").read_text(encoding="utf-8")
    server_cfg = load_config(tmp_path / "server.yaml")
    client_cfg = load_config(tmp_path / "client.yaml")
    assert server_cfg.interceptors[0].options == {"token": TOKEN}
    server, results = await run_client(server_cfg, client_cfg)
    assert results == ["welcome client", "welcome client"] and server.runs == 3

    # The same file read with another secret in the environment is refused by the server.
    monkeypatch.setenv("NODE_COMM_TEST_TOKEN", "some-other-secret")
    other_client = load_config(tmp_path / "client.yaml")
    server, results = await run_client(server_cfg, other_client)
    assert [getattr(e, "code", None) for e in results] == ["UNAUTHENTICATED", "UNAUTHENTICATED"]
    assert server.runs == 0 and server.counting.decoded == 0


async def test_auth_is_symmetric() -> None:
    a = Node("a", mem("a", auth(TOKEN)))
    b = Node("b", mem("b", auth(TOKEN)))

    async def who(payload: Any, ctx: CallContext) -> str:
        return ctx.node.node_id

    a.register("who", who)
    b.register("who", who)
    async with a, b:
        await a.connect("b")
        assert await a.call("b", "who") == "b"
        assert await b.call("a", "who") == "a"  # over the link a dialled


async def test_auth_requires_a_token() -> None:
    with pytest.raises(ConfigError) as info:
        Node("n", mem("n", InterceptorConfig("auth", {})))
    assert "auth" in str(info.value) and "token" in str(info.value)
    with pytest.raises(ConfigError):
        Node("n", mem("n", InterceptorConfig("auth", {"token": ""})))


async def test_unknown_interceptor_lists_installed() -> None:
    with pytest.raises(ConfigError) as info:
        Node("n", mem("n", InterceptorConfig("zipkin")))
    assert "zipkin" in str(info.value)
    assert "auth" in str(info.value) and "logging" in str(info.value)


# --------------------------------------------------------------------------- custom interceptors


async def test_interceptor_order_and_rejection_codes() -> None:
    from node_comm import CallRejectedError, ErrorCode, Interceptor, Message

    order: list[str] = []

    class Named(Interceptor):
        def __init__(self, label: str) -> None:
            self.label = label

        async def intercept_outbound(self, message: Message, context: CallContext, next_handler: Any) -> Any:
            order.append(f"out:{self.label}")
            return await next_handler(message)

        async def intercept_inbound(self, message: Message, context: CallContext, next_handler: Any) -> Any:
            order.append(f"in:{self.label}")
            if message.method == "forbidden":
                raise CallRejectedError(ErrorCode.PERMISSION_DENIED, "not for you")
            if message.method == "crash":
                raise RuntimeError("interceptor bug")
            return await next_handler(message)

    a, b = Node("a", mem("a")), Node("b", mem("b"))
    ran: list[str] = []

    async def h(payload: Any, ctx: CallContext) -> str:
        ran.append(ctx.method)
        return "ok"

    for name in ("fine", "forbidden", "crash"):
        b.register(name, h)
    a.interceptors.add(Named("a1"))
    a.interceptors.add(Named("a2"))
    b.interceptors.add(Named("b1"))
    async with a, b:
        await a.connect("b")
        assert await a.call("b", "fine") == "ok"
        assert order == ["out:a1", "out:a2", "in:b1"]
        with pytest.raises(RemoteExecutionError) as info:
            await a.call("b", "forbidden")
        assert info.value.code == "PERMISSION_DENIED" and "not for you" in str(info.value)
        with pytest.raises(RemoteExecutionError) as info:
            await a.call("b", "crash")
        assert info.value.code == "INTERNAL"
        assert await a.call("b", "fine") == "ok"  # still serving
    assert ran == ["fine", "fine"]


async def test_outbound_interceptor_can_refuse_locally() -> None:
    from node_comm import CallRejectedError, ErrorCode, Interceptor, Message, NodeCommError

    class Gate(Interceptor):
        async def intercept_outbound(self, message: Message, context: CallContext, next_handler: Any) -> Any:
            raise CallRejectedError(ErrorCode.PERMISSION_DENIED, "calls to b are disabled here")

    a, b = Node("a", mem("a")), Node("b", mem("b"))
    runs = 0

    async def h(payload: Any, ctx: CallContext) -> str:
        nonlocal runs
        runs += 1
        return "ok"

    b.register("m", h)
    a.interceptors.add(Gate())
    async with a, b:
        await a.connect("b")
        with pytest.raises(NodeCommError) as info:
            await a.call("b", "m")
        assert info.value.code == "PERMISSION_DENIED"
    assert runs == 0


async def test_time_in_outbound_interceptors_counts_against_the_deadline() -> None:
    import time

    from node_comm import Interceptor, Message

    class Slow(Interceptor):
        """Takes a while before sending, like one that fetches a token."""

        def __init__(self, delay: float) -> None:
            self.delay = delay

        async def intercept_outbound(self, message: Message, context: CallContext, next_handler: Any) -> Any:
            await asyncio.sleep(self.delay)  # the duration under test
            return await next_handler(message)

    a, b = Node("a", mem("a")), Node("b", mem("b"))
    seen: list[float | None] = []
    runs = 0

    async def look(payload: Any, ctx: CallContext) -> None:
        nonlocal runs
        runs += 1
        seen.append(ctx.time_remaining())

    b.register("look", look)
    slow = Slow(0.3)
    a.interceptors.add(slow)
    async with a, b:
        await a.connect("b")
        await a.call("b", "look", timeout=1.0)
        remaining = seen[0]
        assert remaining is not None and remaining <= 0.75  # not the full second
        # An interceptor slower than the whole budget: a timeout, and nothing is sent.
        t0 = time.monotonic()
        with pytest.raises(CallTimeoutError):
            await a.call("b", "look", timeout=0.1)
        assert time.monotonic() - t0 < 1.0
        assert runs == 1
