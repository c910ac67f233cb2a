"""``node-comm`` command: the installed console script and ``python -m node_comm``, run as subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from node_comm.cli import main

BIN = Path(sys.executable).parent / "node-comm"
BUILTIN = {
    "grpc": ("node-comm-grpc", {"transports": ["grpc"]}),
    "memory": ("node-comm-memory", {"transports": ["memory"]}),
    "nats": ("node-comm-nats", {"transports": ["nats"]}),
    "serializers": ("node-comm-serializers", {"serializers": ["json", "msgpack", "numpy", "pickle", "raw"]}),
    "interceptors": ("node-comm-interceptors", {"interceptors": ["acl", "auth", "logging", "metrics", "tracing"]}),
}


def run(*args: str, env: dict[str, str] | None = None, module: bool = False) -> subprocess.CompletedProcess[str]:
    """``node-comm ARGS`` (or ``python -m node_comm ARGS``) with no NODE_COMM_* variables but ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("NODE_COMM_")}
    cmd = [sys.executable, "-m", "node_comm", *args] if module else [str(node_comm_bin()), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, env={**base, **(env or {})})


def node_comm_bin() -> Path:
    if BIN.exists():
        return BIN
    found = shutil.which("node-comm")
    if found is None:
        pytest.skip("the node-comm console script is not installed (run `make install`)")
    return Path(found)


def test_help() -> None:
    proc = run("--help")
    assert proc.returncode == 0
    assert "usage: node-comm" in proc.stdout
    assert "plugins" in proc.stdout
    assert "NODE_COMM_BLOCK_PLUGINS" in proc.stdout
    sub = run("plugins", "--help")
    assert sub.returncode == 0 and "--json" in sub.stdout and "--config" in sub.stdout


def test_no_command_prints_help_and_fails() -> None:
    proc = run()
    assert proc.returncode == 2
    assert "usage: node-comm" in proc.stdout


def test_version() -> None:
    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("node-comm ")


def test_plugins_text_lists_each_plugin_with_distribution_version_and_names() -> None:
    proc = run("plugins")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for name, (dist, provides) in BUILTIN.items():
        assert f"{name}  [{dist} 0.1.0]" in out
        for kind, names in provides.items():
            assert f"  {kind + ':':<14}{', '.join(names)}" in out
    assert "transports:   memory, grpc" in out
    assert "not loaded" not in out


def test_plugins_json() -> None:
    proc = run("plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    by_name = {p["name"]: p for p in report["plugins"]}
    assert set(by_name) == set(BUILTIN)
    for name, (dist, provides) in BUILTIN.items():
        entry: dict[str, Any] = by_name[name]
        assert (entry["distribution"], entry["version"]) == (dist, "0.1.0")
        for kind in ("transports", "serializers", "interceptors"):
            assert entry[kind] == provides.get(kind, [])
    assert report["transports"] == {"grpc": "grpc", "memory": "memory", "nats": "nats"}
    assert report["serializers"]["pickle"] == "serializers"
    assert report["interceptors"] == dict.fromkeys(("acl", "auth", "logging", "metrics", "tracing"), "interceptors")
    assert report["not_loaded"] == []
    assert report["entry_point_group"] == "node_comm"


def test_python_dash_m_node_comm() -> None:
    proc = run("plugins", "--json", module=True)
    assert proc.returncode == 0, proc.stderr
    assert {p["name"] for p in json.loads(proc.stdout)["plugins"]} == set(BUILTIN)


def test_respects_block_env() -> None:
    proc = run("plugins", "--json", env={"NODE_COMM_BLOCK_PLUGINS": "grpc,interceptors,nats"})
    report = json.loads(proc.stdout)
    assert {p["name"] for p in report["plugins"]} == {"memory", "serializers"}
    assert report["transports"] == {"memory": "memory"}
    assert report["interceptors"] == {}
    grpc = {"name": "grpc", "reason": "blocked", "distribution": "node-comm-grpc 0.1.0"}
    assert grpc in report["not_loaded"]
    text = run("plugins", env={"NODE_COMM_BLOCK_PLUGINS": "grpc"}).stdout
    assert "not loaded:\n  grpc [node-comm-grpc 0.1.0]: blocked" in text
    assert "grpc  [" not in text


def test_respects_autoload_env() -> None:
    report = json.loads(run("plugins", "--json", env={"NODE_COMM_DISABLE_PLUGIN_AUTOLOAD": "1"}).stdout)
    assert report["plugins"] == []
    assert report["serializers"] == {"json": "node_comm (stdlib fallback)"}
    assert {s["reason"] for s in report["not_loaded"]} == {"autoload disabled"}


def test_config_file_plugins_section(tmp_path: Path) -> None:
    cfg = tmp_path / "node.yaml"
    cfg.write_text("node_id: n\nplugins: {only: [memory, serializers]}\n")
    report = json.loads(run("plugins", "--json", "--config", str(cfg)).stdout)
    assert {p["name"] for p in report["plugins"]} == {"memory", "serializers"}
    assert {s["name"]: s["reason"] for s in report["not_loaded"]} == {
        "grpc": "not in plugins.only",
        "interceptors": "not in plugins.only",
        "nats": "not in plugins.only",
    }


def test_config_error_is_reported_without_traceback(tmp_path: Path) -> None:
    cfg = tmp_path / "node.yaml"
    cfg.write_text("node_id: n\nplugins: {blok: [grpc]}\n")
    proc = run("plugins", "--config", str(cfg))
    assert proc.returncode == 2  # a config error is a usage error (issue 10)
    assert "node-comm: error:" in proc.stderr
    assert "plugins.blok: unknown key; did you mean 'block'?" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_main_in_process(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NODE_COMM_BLOCK_PLUGINS", raising=False)
    monkeypatch.delenv("NODE_COMM_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    assert main(["plugins", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["transports"]["memory"] == "memory"
