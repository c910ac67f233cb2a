"""The contract suite through its public import only: the complete example of docs/plugin-guide.md
(a transport defined outside this repository's tests) run in a sub-pytest with ``pytester``, in
pytest-asyncio's strict mode; and a transport that breaks the contract fails it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy  # noqa: F401  # imported once here: in-process sub-runs drop modules they import, and numpy cannot load twice
import pytest

pytest_plugins = ["pytester"]

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "plugin-guide.md"
#: What one transport runs: TestMemory in tests/contract/test_transports.py runs as many.
CONTRACT_TESTS = 93
#: Contract tests that need Python 3.11+ (``Task.cancelling()``) and skip before it.
NEEDS_311 = 0 if sys.version_info >= (3, 11) else 1

COUNTED = """
from test_contract import CountingTransport


def test_the_transport_under_test_carried_the_calls():
    assert CountingTransport.sent > 1000
"""

BROKEN = """
import pytest

from node_comm import NodeConfig, TransportConfig, hookimpl
from node_comm.testing.contract import TransportCapabilities, TransportContract
from node_comm_memory import MemoryTransport


class ForgetfulTransport(MemoryTransport):
    \"\"\"Loses every call's metadata on the way.\"\"\"

    async def send(self, message):
        message = message.copy()
        message.metadata = {}
        await super().send(message)


class Plugin:
    @hookimpl
    def node_comm_register_transports(self, register):
        register("forgetful", ForgetfulTransport)


class TestForgetful(TransportContract):
    capabilities = TransportCapabilities(dials_by_id=True)
    node_plugins = [Plugin()]

    @pytest.fixture
    def transport_config(self):
        return lambda node_id, **kw: NodeConfig(node_id=node_id, transport=TransportConfig(mode="forgetful"), **kw)
"""


def _guide_example() -> str:
    section = GUIDE.read_text().split("**A transport, against the contract suite**", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_guides_example_passes_the_whole_contract_suite(pytester: pytest.Pytester) -> None:
    example = _guide_example()
    assert "from node_comm.testing.contract import" in example and "tests." not in example
    pytester.makeini("[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_contract=example, test_zz_counted=COUNTED)
    result = pytester.runpytest("-p", "no:cacheprovider", "-q", "-p", "no:randomly")
    result.assert_outcomes(passed=CONTRACT_TESTS + 1 - NEEDS_311, skipped=NEEDS_311)


def test_a_transport_that_breaks_the_contract_fails_it(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_broken=BROKEN)
    result = pytester.runpytest("-p", "no:cacheprovider", "-q", "-k", "metadata or call_returns_handler_result")
    # The calls themselves work (4 serializers); both tests of call metadata catch the loss.
    result.assert_outcomes(passed=4, failed=2)
    result.stdout.fnmatch_lines(["*test_context_source_node_metadata*", "*test_broadcast_to_chosen_targets*"])


def test_without_transport_config_the_suite_says_what_to_add(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        test_missing="from node_comm.testing.contract import PeersContract\n\n\n"
        "class TestMine(PeersContract):\n    pass\n"
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-q", "-k", "test_peers_are_symmetric")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*TestMine runs the node-comm contract suite but defines no `transport_config`*"])
