"""The transport contract suite: what every node-comm transport must do, as pytest test classes.

A transport (built in or a third party's) runs all of it by subclassing :class:`TransportContract`
in a test module and overriding one fixture, ``transport_config``, plus the class attribute
``capabilities`` where the transport differs from the defaults::

    import pytest
    from node_comm import NodeConfig, TransportConfig
    from node_comm.testing.contract import TransportCapabilities, TransportContract


    class TestMyTransport(TransportContract):
        capabilities = TransportCapabilities(dials_by_id=True)

        @pytest.fixture
        def transport_config(self):
            def make(node_id, **overrides):
                return NodeConfig(node_id=node_id, transport=TransportConfig(mode="mine"), **overrides)

            return make

The classes of each area (``CallsContract``, ``BackpressureContract``, ...) can be subclassed alone.
The suite needs pytest, pytest-asyncio (auto or strict mode) and node-comm-serializers (the
``numpy`` serializer's runs need numpy). This package imports pytest: import it from tests only.
"""

from __future__ import annotations

from .backpressure import BackpressureContract
from .calls import CallsContract
from .coordinator_helpers import CoordinatorHelpersContract
from .deadlines import DeadlinesContract
from .errors import ErrorsContract
from .fixtures import ConfigFactory, ContractFixtures, MakeNode, TransportCapabilities
from .heartbeat import HeartbeatContract
from .inbound_slots import InboundSlotsContract
from .loss import LossContract
from .payloads import PayloadsContract
from .peers import PeersContract

__all__ = [
    "BackpressureContract",
    "CallsContract",
    "ConfigFactory",
    "ContractFixtures",
    "CoordinatorHelpersContract",
    "DeadlinesContract",
    "ErrorsContract",
    "HeartbeatContract",
    "InboundSlotsContract",
    "LossContract",
    "MakeNode",
    "PayloadsContract",
    "PeersContract",
    "TransportCapabilities",
    "TransportContract",
]


class TransportContract(
    CallsContract,
    PayloadsContract,
    ErrorsContract,
    DeadlinesContract,
    LossContract,
    PeersContract,
    HeartbeatContract,
    BackpressureContract,
    InboundSlotsContract,
    CoordinatorHelpersContract,
):
    """Every test of the contract suite. Subclass it as ``Test...`` and override the
    ``transport_config`` fixture (see the module docstring)."""
