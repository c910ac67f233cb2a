"""YAML anchors and aliases in config files: small ones load, alias bombs are refused fast.

A few hundred bytes of nested aliases ("billion laughs") used to take from 19 s to minutes in
``load_config``; each must now fail within a second with a ConfigError that names the aliases.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from node_comm import ConfigError, load_config
from node_comm.config_loader import config_from_dict
from node_comm.yaml_reader import MAX_ALIAS_EXPANSION, MAX_YAML_DEPTH


def bomb(size: int, *, levels: int, fanout: int, where: str) -> str:
    """A config of exactly ``size`` bytes whose key ``where`` holds ``fanout ** levels`` strings
    written as ``levels`` lines of aliases (padded to ``size`` with a comment)."""
    lines = ["node_id: n", f"{where}:", f"  l0: &l0 [{', '.join(['lol'] * fanout)}]"]
    for i in range(1, levels):
        lines.append(f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * fanout)}]")
    text = "\n".join(lines) + "\n"
    assert len(text) < size, len(text)
    return text + "#" * (size - len(text) - 1) + "\n"


def load_timed(path: Path) -> tuple[str, float]:
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value), time.perf_counter() - start


@pytest.mark.parametrize(
    "size, levels, fanout, where",
    [
        (424, 9, 6, "lol"),  # under an unknown key
        (542, 10, 7, "interceptors"),  # under a known key
        (542, 10, 7, "transport"),  # a transport section
    ],
)
def test_alias_bomb_fails_fast_naming_aliases(tmp_path: Path, size: int, levels: int, fanout: int, where: str) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb(size, levels=levels, fanout=fanout, where=where))
    assert path.stat().st_size == size
    message, elapsed = load_timed(path)
    assert elapsed < 1.0
    assert "YAML aliases (*l0, *l1, *l2, *l3, *l4, ...) expand this file by" in message
    assert f"more than the {MAX_ALIAS_EXPANSION:,} allowed" in message
    assert message.startswith(str(path))


@pytest.mark.parametrize(
    "text",
    [
        "node_id: n\ninterceptors: &a [*a]\n",
        "node_id: n\ntransport: &t {grpc: *t}\n",
        "node_id: n\nlol: &x {a: [1, {b: *x}]}\n",
    ],
)
def test_an_alias_inside_its_own_anchor_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text(text)
    message, elapsed = load_timed(path)
    assert "YAML alias refers to its own anchor" in message
    assert elapsed < 1.0


def test_small_anchors_and_merge_keys_still_load(tmp_path: Path) -> None:
    path = tmp_path / "anchors.yaml"
    path.write_text(
        "node_id: n\n"
        "heartbeat:\n"
        "  <<: &hb {enabled: true, interval: 1, timeout: 3}\n"
        "  timeout: 5\n"
        "transport:\n"
        "  mode: grpc\n"
        "  grpc:\n"
        "    reconnect: &rc {initial_backoff: 0.5, max_backoff: 30}\n"
        "  custom_transport: {reconnect: *rc, heartbeat: *hb}\n"
    )
    config = load_config(path)
    assert (config.heartbeat.enabled, config.heartbeat.interval, config.heartbeat.timeout) == (True, 1.0, 5.0)
    assert config.transport.grpc.reconnect.max_backoff == 30.0
    assert config.transport.section("custom_transport")["reconnect"] == {"initial_backoff": 0.5, "max_backoff": 30}


def test_aliases_within_the_budget_load(tmp_path: Path) -> None:
    # 100 aliases of a 41-node list: about 4,100 extra nodes, under the budget
    path = tmp_path / "many.yaml"
    path.write_text(
        "node_id: n\ntransport:\n  custom:\n    base: &b [" + ", ".join(["x"] * 40) + "]\n"
        "    copies: [" + ", ".join(["*b"] * 100) + "]\n"
    )
    copies = load_config(path).transport.section("custom")["copies"]
    assert len(copies) == 100 and copies[99] == ["x"] * 40


def test_duplicate_key_next_to_a_merge_key_is_still_an_error(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("node_id: n\nheartbeat:\n  <<: {interval: 1}\n  timeout: 5\n  timeout: 6\n")
    message, _ = load_timed(path)
    assert "key 'timeout' appears twice in one mapping" in message


@pytest.mark.parametrize(
    "nested",
    [
        "[" * 101 + "]" * 101,  # flow style
        "[" * 500_000 + "]" * 500_000,  # refused as it is scanned: as fast as 101 levels
        "\n  " + "- " * 200 + "x",  # block style
    ],
    ids=["flow-101", "flow-500000", "block-200"],
)
def test_deep_nesting_is_a_config_error(tmp_path: Path, nested: str) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("node_id: n\nlol: " + nested + "\n")
    message, elapsed = load_timed(path)
    assert f"YAML nested more than {MAX_YAML_DEPTH} levels deep at line " in message
    assert elapsed < 1.0


def test_nesting_within_the_limit_loads(tmp_path: Path) -> None:
    path = tmp_path / "nested.yaml"
    path.write_text("node_id: n\ntransport:\n  custom: {x: " + "[" * 96 + "]" * 96 + "}\n")
    expected: list[object] = []
    for _ in range(95):
        expected = [expected]
    assert load_config(path).transport.section("custom") == {"x": expected}


def _shared_bomb(levels: int = 9, fanout: int = 9) -> list[object]:
    node: list[object] = ["${HOME:-lol}"] * fanout
    for _ in range(levels):
        node = [node] * fanout
    return node


def test_config_from_dict_refuses_unknown_keys_before_walking_values() -> None:
    """A mapping parsed elsewhere (``yaml.safe_load`` keeps aliases shared) is not expanded."""
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="lol: unknown key"):
        config_from_dict({"node_id": "n", "lol": _shared_bomb()})
    assert time.perf_counter() - start < 1.0


def test_an_ill_typed_shared_value_is_reported_without_expanding_it() -> None:
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        config_from_dict({"node_id": "n", "debug": _shared_bomb()})
    assert time.perf_counter() - start < 1.0
    assert "debug: expected a boolean (true/false), got [[[...], [...], [...], [...], ...]" in str(info.value)


def test_interpolation_visits_shared_values_once() -> None:
    data = yaml.safe_load("node_id: n\ntransport:\n  custom: {a: &a [x, '${NC_NOT_SET:-y}'], b: *a}\n")
    data["transport"]["custom"]["bomb"] = _shared_bomb()
    start = time.perf_counter()
    custom = config_from_dict(data).transport.section("custom")
    assert time.perf_counter() - start < 1.0
    assert custom["a"] == custom["b"] == ["x", "y"]
