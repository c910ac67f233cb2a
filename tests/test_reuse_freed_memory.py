"""``reuse_freed_memory`` (opt-in): a node's process reuses freed large buffers instead of
faulting in fresh pages for every large message. Measured in fresh processes (the setting is
process-wide) by the page faults of a pattern like a large transfer's: several MiB-sized buffers
alive at once, then freed, again and again."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from node_comm import ConfigError, NodeConfig
from node_comm.config_loader import config_from_dict

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")

PROBE = r"""
import asyncio, json, resource, sys
from node_comm import Node, NodeConfig, TransportConfig

async def main(reuse):
    node = Node("n", NodeConfig(node_id="n", transport=TransportConfig(mode="memory"), reuse_freed_memory=reuse))
    await node.start()
    from node_comm import _malloc
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for i in range(20):  # like writes in flight: 4 buffers of 4 MiB alive, then all freed
        bufs = [bytes([i]) * (4 << 20) for _ in range(4)]
        del bufs
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    await node.stop()
    print(json.dumps({"faults": faults, "applied": _malloc._applied}))

asyncio.run(main(sys.argv[1] == "1"))
"""

PAGES_PER_ROUND = 4 * (4 << 20) // 4096  # 4096: every round on fresh pages


def faults(reuse: bool) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, "1" if reuse else "0"], capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def glibc() -> bool:
    import ctypes

    try:
        ctypes.CDLL(None).gnu_get_libc_version  # noqa: B018
    except AttributeError:
        return False
    return True


@pytest.mark.skipif(not glibc(), reason="glibc only")
def test_large_buffers_are_reused_not_faulted_in_again() -> None:
    on, off = faults(True), faults(False)
    assert on["applied"] and not off["applied"]
    assert off["faults"] > 10 * PAGES_PER_ROUND  # malloc's defaults: fresh pages nearly every round
    assert on["faults"] < 3 * PAGES_PER_ROUND  # the first round's pages, then reuse


def test_the_setting_is_a_yaml_key_and_checked() -> None:
    assert NodeConfig(node_id="n").reuse_freed_memory is False  # malloc is left alone unless asked
    cfg = config_from_dict({"node_id": "n", "reuse_freed_memory": True})
    assert cfg.reuse_freed_memory is True
    with pytest.raises(ConfigError, match="reuse_freed_memory"):
        config_from_dict({"node_id": "n", "reuse_freed_memory": "sometimes"})
