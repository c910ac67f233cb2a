"""What every coordinator ends up writing by hand, built in: dial retries for a peer not up yet,
waiting for enough peers, broadcasting to a subset with metadata, and disconnect reasons a
program can branch on (``reason.kind``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from node_comm import (
    CallContext,
    ConnectFailedError,
    DisconnectKind,
    NodeNotConnectedError,
    PeersNotConnectedError,
)

from .fixtures import WAIT, ContractFixtures, MakeNode, link, needs


class CoordinatorHelpersContract(ContractFixtures):
    async def test_wait_for_peers_by_count_and_by_ids(self, make_node: MakeNode) -> None:
        coord = await make_node("coord")
        parts = [await make_node(f"p{i}") for i in range(3)]
        waiter = asyncio.ensure_future(coord.wait_for_peers(3, timeout=WAIT))
        by_id = asyncio.ensure_future(coord.wait_for_peers(["p0", "p2"], timeout=WAIT))
        await link(parts[0], coord)
        await link(parts[2], coord)
        assert sorted(await by_id) == ["p0", "p2"]
        assert not waiter.done()
        await link(parts[1], coord)
        assert sorted(await waiter) == ["p0", "p1", "p2"]
        assert sorted(await coord.wait_for_peers(2)) == ["p0", "p1", "p2"]  # already true: at once

    async def test_wait_for_peers_times_out_with_what_is_missing(self, make_node: MakeNode) -> None:
        coord = await make_node("coord")
        p0 = await make_node("p0")
        await link(p0, coord)
        with pytest.raises(PeersNotConnectedError) as info:
            await coord.wait_for_peers(["p0", "p9"], timeout=0.2)
        assert info.value.missing == ["p9"] and info.value.connected == ["p0"]
        assert "'p9'" in str(info.value)
        with pytest.raises(PeersNotConnectedError, match="1 of 3 peers"):
            await coord.wait_for_peers(3, timeout=0.1)

    async def test_broadcast_to_chosen_targets_with_metadata(self, make_node: MakeNode) -> None:
        coord = await make_node("coord")
        seen: list[tuple[str, str]] = []
        parts = []
        for i in range(3):
            p = await make_node(f"p{i}")

            def who(payload: Any, ctx: CallContext, me: str = f"p{i}") -> str:
                seen.append((me, ctx.metadata.get("round", "")))
                return me

            p.register("who", who)
            await link(p, coord)
            parts.append(p)
        results = await coord.broadcast("who", None, targets=["p0", "p2", "ghost"], metadata={"round": "7"})
        assert results["p0"] == "p0" and results["p2"] == "p2"
        assert isinstance(results["ghost"], NodeNotConnectedError)
        assert sorted(seen) == [("p0", "7"), ("p2", "7")]

    async def test_disconnect_reasons_have_a_kind(self, make_node: MakeNode) -> None:
        a = await make_node("a")
        b = await make_node("b")
        kinds: dict[str, list[DisconnectKind]] = {"a": [], "b": []}
        a.on("disconnect", lambda n, reason: kinds["a"].append(reason.kind))
        b.on("disconnect", lambda n, reason: kinds["b"].append(reason.kind))
        gone = asyncio.Event()
        b.on("disconnect", lambda n, reason: gone.set())
        await link(a, b)
        await a.disconnect("b")
        await asyncio.wait_for(gone.wait(), WAIT)
        assert kinds == {"a": [DisconnectKind.LOCAL], "b": [DisconnectKind.STOPPED]}
        gone.clear()
        await link(a, b)
        await a.stop()
        await asyncio.wait_for(gone.wait(), WAIT)
        assert kinds["a"][-1] is DisconnectKind.LOCAL and kinds["b"][-1] is DisconnectKind.STOPPED
        assert isinstance(kinds["b"][-1], str) and kinds["b"][-1] == "stopped"  # type: ignore[comparison-overlap]  # the enum is a str too

    async def test_connect_retries_until_the_peer_is_up(self, make_node: MakeNode) -> None:
        # Dialling by address: the address is known only after start (tests/grpc/test_grpc_calls.py
        # has gRPC's own version of this test).
        needs(self.capabilities, "dials_by_id")
        a = await make_node("a")
        b = await make_node("b", start=False)
        dialling = asyncio.ensure_future(a.connect("b", None, retry=WAIT, timeout=0.5))
        await asyncio.sleep(0.3)  # let the first attempts fail: b is not running yet
        assert not dialling.done()
        await b.start()
        await asyncio.wait_for(dialling, WAIT)
        assert a.is_connected("b") and b.is_connected("a")

    async def test_connect_retry_gives_up_at_its_deadline(self, make_node: MakeNode) -> None:
        a = await make_node("a")
        address = self.capabilities.unreachable_address  # nothing answers there (None: by id)
        with pytest.raises(ConnectFailedError, match=r"tried \d+ times for 0.5s"):
            await a.connect("nobody", address, retry=0.5, timeout=0.2)
