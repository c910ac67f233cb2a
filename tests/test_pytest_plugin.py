"""The pytest plugin shipped in the kernel (entry point ``pytest11`` -> ``node_comm.testing.plugin``),
used by a small test file run in a sub-pytest with ``pytester``, in pytest-asyncio's auto and
strict modes; and ``node_comm.testing`` importable without pytest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from node_comm import ConfigError, Node
from node_comm.testing import NodeFactory, memory_faults

pytest_plugins = ["pytester"]

USER_TESTS = """
import asyncio

import pytest

from node_comm import ConfigError, ConnectionLostError, HeartbeatConfig

MADE = []


async def echo(payload, ctx):
    return {"echo": payload, "from": ctx.source}


{mark}
async def test_connected_pair(node_factory):
    a = await node_factory("a")
    a.register("echo", echo)
    b = await node_factory("b", connect_to="a", default_timeout=2.0)
    assert a.is_running and b.is_running
    assert a.connected_nodes == ["b"] and b.connected_nodes == ["a"]
    assert b.config.default_timeout == 2.0 and b.config.transport.mode == "memory"
    assert await b.call("a", "echo", 7) == {"echo": 7, "from": "b"}
    MADE.extend([a, b])


{mark}
async def test_every_node_of_the_last_test_was_stopped(node_factory):
    assert len(MADE) == 2 and not any(node.is_running for node in MADE)
    c = await node_factory("c", heartbeat=HeartbeatConfig(enabled=True, interval=5, timeout=15))
    d = await node_factory("d", connect_to=["c"])
    e = await node_factory("e", connect_to=("c", "d"))
    assert sorted(c.connected_nodes) == ["d", "e"] and c.config.heartbeat.enabled
    assert node_factory["e"] is e and list(node_factory.nodes) == ["c", "d", "e"]


{mark}
async def test_fault_injection(node_factory, memory_faults):
    a = await node_factory("a")
    started = asyncio.Event()

    async def hang(payload, ctx):
        started.set()
        await asyncio.Event().wait()

    a.register("hang", hang)
    b = await node_factory("b", connect_to="a")
    call = asyncio.ensure_future(b.call("a", "hang", None, timeout=30))
    await started.wait()
    memory_faults(b).drop_link("a")
    with pytest.raises(ConnectionLostError):
        await call
    assert not a.is_connected("b")


{mark}
async def test_a_typo_in_a_config_field(node_factory):
    with pytest.raises(ConfigError, match="'default_timout' is not a NodeConfig field; did you mean 'default_timeout'"):
        await node_factory("x", default_timout=1)
"""


@pytest.mark.parametrize("mode", ["auto", "strict"])
def test_node_factory_in_a_users_suite(pytester: pytest.Pytester, mode: str) -> None:
    pytester.makeini(f"[pytest]\nasyncio_mode = {mode}\nasyncio_default_fixture_loop_scope = function\n")
    mark = "@pytest.mark.asyncio" if mode == "strict" else ""
    pytester.makepyfile(test_user=USER_TESTS.replace("{mark}", mark))
    result = pytester.runpytest("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=4)


def test_importing_node_comm_testing_imports_no_pytest() -> None:
    code = "import sys, node_comm.testing\nprint([m for m in sys.modules if m.split('.')[0] in ('pytest', '_pytest')])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


async def test_node_factory_without_pytest() -> None:
    async with NodeFactory() as make:
        a = await make("a", transport="memory")
        b = await make("b", connect_to="a")
        assert b.is_connected("a")
        memory_faults(a).drop_link("b")
        assert not b.is_connected("a")
    assert not a.is_running and not b.is_running


async def test_node_factory_grpc_nodes_on_loopback() -> None:
    async with NodeFactory() as make:
        a = await make("a", transport="grpc")
        b = await make("b", transport="grpc", connect_to="a")
        assert a.address is not None and a.address.startswith("127.0.0.1:")
        assert not a.address.endswith(":50051") and b.is_connected("a") and a.is_connected("b")
        with pytest.raises(ConfigError, match="fault injection needs the memory transport"):
            memory_faults(a)
    assert not a.is_running and not b.is_running


async def test_memory_faults_refuses_other_transports() -> None:
    from tests.grpc.conftest import grpc_config

    with pytest.raises(ConfigError, match="fault injection needs the memory transport"):
        memory_faults(Node("g", grpc_config("g")))


def _python_block_after(text: str, heading: str, first_line: str) -> str:
    """The first fenced python block after ``heading`` that starts with ``first_line``."""
    section = text.split(heading, 1)[1]
    for block in section.split("```python\n")[1:]:
        code = block.split("```", 1)[0]
        if code.startswith(first_line):
            return code
    raise AssertionError(f"no python block starting with {first_line!r} after {heading!r}")


def test_the_readme_example_runs(pytester: pytest.Pytester) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    pytester.makepyfile(
        myapp=_python_block_after(readme, "## Command line", "# myapp.py"),
        test_readme=_python_block_after(readme, "## Testing your handlers", "import pytest"),
    )
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    pytester.runpytest("-p", "no:cacheprovider", "-q").assert_outcomes(passed=2)
