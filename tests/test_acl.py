"""The ``acl`` interceptor: method globs to caller-id globs, default deny, refused before decode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from node_comm import (
    CallContext,
    ConfigError,
    InterceptorConfig,
    MethodOptions,
    Node,
    NodeConfig,
    RemoteExecutionError,
    config_from_dict,
)
from node_comm_interceptors import AclInterceptor
from tests.interceptor_helpers import CountingJson, mem

RULES = {"train*": ["worker-*"], "status": ["*"], "admin.*": ["coordinator"]}


class Served:
    def __init__(self, node: Node) -> None:
        self.runs: list[str] = []
        self.counting = CountingJson()
        node.serializers.register(self.counting)
        for name in ("train", "train_step", "status", "admin.reset", "secret"):
            node.register(name, self.handler, MethodOptions(serializer="counting"))

    async def handler(self, payload: Any, ctx: CallContext) -> str:
        self.runs.append(f"{ctx.source}:{ctx.method}")
        return "ok"


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[Served, dict[str, Node]]]:
    server = Node("server", mem("server", InterceptorConfig("acl", {"allow": RULES})))
    served = Served(server)
    callers = {n: Node(n, mem(n)) for n in ("worker-1", "worker-2", "coordinator", "stranger")}
    for c in callers.values():
        c.serializers.register(CountingJson())
    await server.start()
    try:
        for c in callers.values():
            await c.start()
            await c.connect("server")
        yield served, callers
    finally:
        for c in callers.values():
            await c.stop()
        await server.stop()


async def call(node: Node, method: str) -> str:
    try:
        return str(await node.call("server", method, {"x": 1}, serializer="counting"))
    except RemoteExecutionError as exc:
        return str(exc.code)


async def test_allowed_denied_and_default_deny(cluster: tuple[Served, dict[str, Node]]) -> None:
    served, c = cluster
    expected = {
        ("worker-1", "train"): "ok",
        ("worker-2", "train_step"): "ok",  # method glob train*
        ("coordinator", "train"): "PERMISSION_DENIED",  # not a worker-*
        ("stranger", "status"): "ok",  # "*" callers
        ("coordinator", "admin.reset"): "ok",
        ("worker-1", "admin.reset"): "PERMISSION_DENIED",
        ("coordinator", "secret"): "PERMISSION_DENIED",  # no rule names it: default deny
        ("stranger", "no_such_method"): "PERMISSION_DENIED",  # refused before METHOD_NOT_FOUND
    }
    got = {key: await call(c[key[0]], key[1]) for key in expected}
    assert got == expected
    allowed = [f"{n}:{m}" for (n, m), v in expected.items() if v == "ok"]
    assert served.runs == allowed  # denied handlers never ran
    assert served.counting.decoded == len(allowed)  # and their payloads were never decoded


async def test_denial_message_names_caller_method_and_fix(cluster: tuple[Served, dict[str, Node]]) -> None:
    _, c = cluster
    with pytest.raises(RemoteExecutionError) as info:
        await c["stranger"].call("server", "secret", {"x": 1}, serializer="counting")
    text = str(info.value)
    assert "'stranger'" in text and "'secret'" in text and "options.allow" in text
    assert "worker-*" not in text  # the rules themselves are not disclosed


async def test_notify_is_checked_too(cluster: tuple[Served, dict[str, Node]]) -> None:
    served, c = cluster
    await c["stranger"].notify("server", "secret", {"x": 1}, serializer="counting")
    await c["worker-1"].notify("server", "train", {"x": 1}, serializer="counting")
    assert await call(c["worker-1"], "train") == "ok"  # in order after both notifies
    assert served.runs == ["worker-1:train", "worker-1:train"]
    assert served.counting.decoded == 2


async def test_framework_methods_are_exempt_unless_named() -> None:
    open_acl = Node("a", mem("a", InterceptorConfig("acl", {"allow": {"*": ["nobody"]}})))
    named = Node("b", mem("b", InterceptorConfig("acl", {"allow": {"*": ["*"], "_heart*": ["coordinator"]}})))
    caller = Node("caller", mem("caller"))
    async with open_acl, named, caller:
        await caller.connect("a")
        await caller.connect("b")
        assert (await caller.call("a", "_heartbeat"))["status"] == "alive"  # "*" does not reach it
        with pytest.raises(RemoteExecutionError) as info:
            await caller.call("b", "_heartbeat")
        assert info.value.code == "PERMISSION_DENIED"


def test_glob_matching() -> None:
    acl = AclInterceptor({"train*": ["worker-?", "gpu[0-9]"], "x.y": ["*"]})
    assert acl.allows("train", "worker-1") and acl.allows("train.step", "gpu7")
    assert not acl.allows("train", "worker-10") and not acl.allows("train", "gpuA")
    assert not acl.allows("Train", "worker-1")  # case-sensitive on every platform
    assert acl.allows("x.y", "anyone") and not acl.allows("xzy", "anyone")  # '.' is literal


@pytest.mark.parametrize(
    ("allow", "text"),
    [
        ({}, "at least one rule"),
        ({"m": "worker-*"}, "expected a list"),
        ({"m": []}, "non-empty list"),
        ({"m": [""]}, "non-empty strings"),
        ("m", "expected a mapping"),
    ],
)
def test_bad_rules_are_config_errors(allow: Any, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict({"node_id": "n", "interceptors": [{"name": "acl", "options": {"allow": allow}}]})
    assert "interceptors[0]" in str(info.value) and text in str(info.value)
    with pytest.raises(ConfigError):
        AclInterceptor(allow)


def test_acl_requires_allow() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict({"node_id": "n", "interceptors": [{"name": "acl"}]})
    assert "interceptors[0].options.allow" in str(info.value)


async def test_acl_behind_auth_from_yaml() -> None:
    def cfg(node_id: str, with_acl: bool) -> NodeConfig:
        chain: list[dict[str, Any]] = [{"name": "auth", "options": {"token": "t0k"}}]
        if with_acl:
            chain.append({"name": "acl", "options": {"allow": {"echo": ["friend"]}}})
        return config_from_dict({"node_id": node_id, "transport": {"mode": "memory"}, "interceptors": chain})

    server = Node(config=cfg("server", True))
    friend, other = Node(config=cfg("friend", False)), Node(config=cfg("other", False))
    server.register("echo", lambda p, ctx: p)
    async with server, friend, other:
        await friend.connect("server")
        await other.connect("server")
        assert await friend.call("server", "echo", 5) == 5
        with pytest.raises(RemoteExecutionError) as info:
            await other.call("server", "echo", 5)
        assert info.value.code == "PERMISSION_DENIED"
