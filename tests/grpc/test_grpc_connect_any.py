"""``GrpcTransport.connect_any``: a dial-only node connects to whichever node answers at an address
and learns its id from the handshake reply (``node-comm ping ADDRESS`` without a NODE_ID). The
server sees an ordinary dialler naming no expected id; with a token the id is bound into the
server's proof; a reply naming an unusable id is refused."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from conftest import SECRET, grpc_config

from node_comm import ConfigError, ConnectFailedError


async def test_learns_the_id_and_the_link_is_an_ordinary_one(nodes: Any) -> None:
    b = await nodes("b", grpc_config("b", token=SECRET))
    b.register("who", lambda p, ctx: [ctx.source, ctx.peer_identity])
    a = await nodes("a", grpc_config("a", port=None, token=SECRET))
    assert await a.transport.connect_any(b.address, 5) == "b"
    assert a.connected_nodes == ["b"] and b.connected_nodes == ["a"]
    assert await a.call("b", "who") == ["a", "shared-secret"]  # authenticated by the token as usual
    # Connected already: a second connect_any to the same node is refused, the link stays.
    with pytest.raises(ConnectFailedError, match="already connected"):
        await a.transport.connect_any(b.address, 5)
    assert await a.call("b", "who") == ["a", "shared-secret"]


async def test_the_token_is_still_required_both_ways(nodes: Any) -> None:
    b = await nodes("b", grpc_config("b", token=SECRET))
    no_token = await nodes("a", grpc_config("a", port=None))
    with pytest.raises(ConnectFailedError, match="requires a shared secret"):
        await no_token.transport.connect_any(b.address, 5)
    wrong = await nodes("a2", grpc_config("a2", port=None, token="not-" + SECRET))
    with pytest.raises(ConnectFailedError, match="bad credentials") as info:
        await wrong.transport.connect_any(b.address, 5)
    assert SECRET not in str(info.value)
    # A server without the token cannot pass as one to a dialler that has it.
    open_c = await nodes("c", grpc_config("c"))
    with pytest.raises(ConnectFailedError, match="did not prove it holds the shared secret"):
        await wrong.transport.connect_any(open_c.address, 5)
    assert b.connected_nodes == [] and wrong.connected_nodes == []


async def test_only_a_dial_only_node_may_connect_to_any_id(nodes: Any) -> None:
    b = await nodes("b", grpc_config("b"))
    listening = await nodes("a", grpc_config("a"))
    with pytest.raises(ConfigError, match="only a dial-only grpc transport"):
        await listening.transport.connect_any(b.address, 5)
    assert b.connected_nodes == []


@pytest.mark.parametrize(
    ("claimed", "reason"),
    [("evil\x1b[2J", "has control characters"), ("x" * 300, "at most 256")],
)
async def test_a_reply_naming_an_unusable_id_is_refused(nodes: Any, claimed: str, reason: str) -> None:
    b = await nodes("b", grpc_config("b"))
    b.transport.node_id = claimed  # what a hostile server could put in its reply
    a = await nodes("a", grpc_config("a", port=None))
    with pytest.raises(ConnectFailedError, match="gave an unusable node id") as info:
        await a.transport.connect_any(b.address, 5)
    assert reason in str(info.value)
    assert a.connected_nodes == []


async def test_a_reply_naming_the_dialler_itself_is_refused(nodes: Any) -> None:
    # A server refuses a dialler with its own id before replying; a hostile one might not.
    a = await nodes("a", grpc_config("a", port=None))
    with pytest.raises(ConnectFailedError, match="claims this node's own id 'a'"):
        a.transport._answering_id(SimpleNamespace(node_id="a"), "127.0.0.1:1")
    assert a.transport._answering_id(SimpleNamespace(node_id="b"), "127.0.0.1:1") == "b"


async def test_nobody_listening_fails_with_the_address(nodes: Any) -> None:
    a = await nodes("a", grpc_config("a", port=None))
    with pytest.raises(ConnectFailedError, match=r"cannot connect to the node at 127\.0\.0\.1:9"):
        await a.transport.connect_any("127.0.0.1:9", 2)
