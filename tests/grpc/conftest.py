"""Helpers of the gRPC tests: nodes on 127.0.0.1 port 0, peers in other processes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from node_comm import GrpcTransportConfig, Node, NodeConfig, TransportConfig

PEER = Path(__file__).with_name("peer.py")
#: Shared secret of tests whose peers must be authenticated (pickle methods accept only those).
SECRET = "grpc-tests-secret"


def grpc_config(node_id: str, port: int | None = 0, **grpc: Any) -> NodeConfig:
    """A grpc node config on 127.0.0.1 (``port=None``: dial-only); ``grpc`` are transport options."""
    node_keys = (
        "heartbeat",
        "shutdown_grace",
        "default_timeout",
        "interceptors",
        "debug",
        "max_concurrent_calls_per_peer",
        "max_concurrent_notifies_per_peer",
    )
    node_opts = {k: grpc.pop(k) for k in node_keys if k in grpc}
    node_opts.setdefault("shutdown_grace", 0.5)
    return NodeConfig(
        node_id=node_id,
        transport=TransportConfig(mode="grpc", grpc=GrpcTransportConfig(host="127.0.0.1", port=port, **grpc)),
        **node_opts,
    )


class PeerProcess:
    """A node running ``peer.py`` in a subprocess."""

    def __init__(self, proc: asyncio.subprocess.Process, address: str) -> None:
        self.proc = proc
        self.address = address
        self.port = int(address.rsplit(":", 1)[1]) if address != "None" else 0

    def signal(self, sig: int) -> None:
        if self.proc.returncode is None:
            os.kill(self.proc.pid, sig)

    async def kill(self) -> None:
        self.signal(signal.SIGKILL)
        await self.proc.wait()


async def start_peer(node_id: str, port: int | str = 0, *extra: str) -> PeerProcess:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(PEER),
        node_id,
        str(port),
        *extra,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    if not line.startswith(b"READY "):
        proc.kill()
        raise RuntimeError(f"peer {node_id} did not start: {line!r}")
    return PeerProcess(proc, line.split()[1].decode())


@pytest.fixture
async def spawn() -> AsyncIterator[Callable[..., Any]]:
    """``await spawn(node_id, port=0, *extra)`` starts a peer process; all are killed at the end."""
    procs: list[PeerProcess] = []

    async def _spawn(node_id: str, port: int | str = 0, *extra: str) -> PeerProcess:
        p = await start_peer(node_id, port, *extra)
        procs.append(p)
        return p

    yield _spawn
    for p in procs:
        await p.kill()


@pytest.fixture
async def nodes() -> AsyncIterator[Callable[..., Any]]:
    """``await nodes(node_id, config)`` builds and starts a node; all are stopped at the end."""
    made: list[Node] = []

    async def _make(node_id: str, config: NodeConfig | None = None) -> Node:
        node = Node(node_id, config or grpc_config(node_id))
        await node.start()
        made.append(node)
        return node

    yield _make
    for node in made:
        await node.stop()
