"""A real third-party plugin, pip-installed: tests/thirdparty_plugin is built with hatchling and
installed into a temporary target, then used from a subprocess that has it on PYTHONPATH (and
nothing else from it is imported here). Proves that transports, serializers and interceptors arrive
by ``pip install`` alone and are selected by name in YAML."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
PLUGIN_SRC = HERE / "thirdparty_plugin"
DIST, VERSION = "node-comm-thirdparty-example", "0.3.1"

# Build + install + three subprocesses take ~3 s; the cap keeps a hung pip from stalling the suite.
pytestmark = pytest.mark.timeout(30)

CONFIG = """\
node_id: ${NODE_ID}
transport:
  mode: loopback
  loopback: {tag: from-yaml}
interceptors:
  - name: stamp
    options: {value: third-party}
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugin, built and installed with pip into a fresh target directory (offline: the
    build backend hatchling comes from the dev environment, nothing is fetched)."""
    root = tmp_path_factory.mktemp("thirdparty")
    src, target = root / "src", root / "site"
    shutil.copytree(PLUGIN_SRC, src, ignore=shutil.ignore_patterns("__pycache__", "use_plugin.py"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=25,
    )
    assert proc.returncode == 0, f"pip install failed (hatchling comes with `make install`):\n{proc.stderr}"
    assert (target / "node_comm_thirdparty" / "plugin.py").exists()
    return target


def _env(target: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODE_COMM_")}
    env["PYTHONPATH"] = str(target)
    return env


def test_plugin_is_not_installed_in_this_environment() -> None:
    """Guard: without the pip install, the names are unknown (so the test below proves the install)."""
    from node_comm.plugins import discover

    regs = discover()
    assert "loopback" not in regs.transports
    assert "rot13json" not in regs.serializers
    assert "stamp" not in regs.interceptors


def test_yaml_selects_transport_serializer_and_interceptor_of_installed_plugin(installed: Path, tmp_path: Path) -> None:
    config = tmp_path / "node.yaml"
    config.write_text(CONFIG)
    proc = subprocess.run(
        [sys.executable, str(PLUGIN_SRC / "use_plugin.py"), str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        env=_env(installed),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    # The interceptor stamped the call on the client; the handler saw the stamp.
    assert out["result"] == {"echo": "hello", "stamp": "third-party:client"}
    assert out["interceptors"] == ["StampInterceptor"]
    stats = out["stats"]
    assert stats["stamped"] >= 1
    # The transport carried the request and the response, configured from transport.loopback.
    assert out["transport_class"] == "node_comm_thirdparty.plugin.LoopbackTransport"
    assert stats["tags"] == ["from-yaml", "from-yaml"]
    assert stats["sent"] >= 2
    # The request went out in rot13json: ROT13'd JSON on the wire, never the plain text.
    assert "rot13json" in stats["sent_serializers"]
    assert any("uryyb" in p for p in stats["sent_payloads"])
    assert not any("hello" in p for p in stats["sent_payloads"])
    assert stats["serialized"] >= 1 and stats["deserialized"] >= 1


def test_unknown_name_lists_the_plugins_names(installed: Path, tmp_path: Path) -> None:
    config = tmp_path / "node.yaml"
    config.write_text("node_id: x\ntransport: {mode: lopback}\n")
    code = "import sys; from node_comm import load_config; load_config(sys.argv[1])"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        env=_env(installed),
    )
    assert proc.returncode != 0
    assert "transport.mode: transport 'lopback' is not installed; did you mean 'loopback'?" in proc.stderr
    assert "available: memory, grpc, loopback" in proc.stderr


def test_node_comm_plugins_lists_it_with_distribution_and_version(installed: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "node_comm", "plugins", "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        env=_env(installed),
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    (mine,) = [p for p in report["plugins"] if p["name"] == "thirdparty"]
    assert mine == {
        "name": "thirdparty",
        "distribution": DIST,
        "version": VERSION,
        "transports": ["loopback"],
        "serializers": ["rot13json"],
        "interceptors": ["stamp"],
    }
    assert report["transports"]["loopback"] == "thirdparty"

    text = subprocess.run(
        [sys.executable, "-m", "node_comm", "plugins"],
        capture_output=True,
        text=True,
        timeout=30,
        env=_env(installed),
    )
    assert f"thirdparty  [{DIST} {VERSION}]" in text.stdout

    blocked = subprocess.run(
        [sys.executable, "-m", "node_comm", "plugins", "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**_env(installed), "NODE_COMM_BLOCK_PLUGINS": "thirdparty"},
    )
    report = json.loads(blocked.stdout)
    assert "thirdparty" not in [p["name"] for p in report["plugins"]]
    skipped = {"name": "thirdparty", "reason": "blocked", "distribution": f"{DIST} {VERSION}"}
    assert skipped in report["not_loaded"]
