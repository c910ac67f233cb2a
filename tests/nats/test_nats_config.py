"""YAML ``transport: {mode: nats, nats: {...}}`` and the errors for bad values, each naming its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from node_comm import ConfigError, Node, load_config
from node_comm_nats import NatsTransportConfig
from tests.natsd import NatsServer


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "node.yaml"
    path.write_text(text)
    return load_config(path)


def test_yaml_section_becomes_the_options(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
node_id: w1
transport:
  mode: nats
  nats:
    servers: ["nats://10.0.0.1:4222", "tls://10.0.0.2:4222"]
    subject_prefix: prod.node_comm
    user: alice
    password: ${NATS_TEST_PASSWORD:-s3cret}
    chunk_size: 65536
    redial: {max_backoff: 2}
""",
    )
    opts = cfg.transport.section("nats")  # type: ignore[attr-defined]
    assert isinstance(opts, NatsTransportConfig)
    assert opts.servers == ["nats://10.0.0.1:4222", "tls://10.0.0.2:4222"]
    assert opts.subject_prefix == "prod.node_comm"
    assert (opts.user, opts.password, opts.chunk_size) == ("alice", "s3cret", 65536)
    assert opts.redial.max_backoff == 2.0
    assert NatsTransportConfig().servers == ["nats://127.0.0.1:4222"]


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("servers: []", "transport.nats.servers: expected a non-empty list of URLs"),
        ("servers: [localhost:4222]", "transport.nats.servers[0]: expected a URL such as 'nats://127.0.0.1:4222'"),
        ("subject_prefix: 'a.*'", "transport.nats.subject_prefix: expected dot-separated tokens"),
        ("subject_prefix: 'a..b'", "transport.nats.subject_prefix"),
        ("{user: u, password: p, token: t}", "transport.nats: user and token are given; use one kind"),
        ("user: u", "transport.nats: user and password go together"),
        ("creds_file: /nonexistent/x.creds", "transport.nats.creds_file: file '/nonexistent/x.creds' does not exist"),
        ("tls: {ca_file: /nonexistent/ca.pem}", "transport.nats.tls.ca_file: file"),
        ("chunk_size: 100", "transport.nats.chunk_size: expected an integer >= 4096"),
        ("presence_interval: 0", "transport.nats.presence_interval: expected a number > 0"),
        ("transfer_timeout: abc", "transport.nats.transfer_timeout: expected a number"),
        ("redial: {max_attempts: -1}", "transport.nats.redial.max_attempts: expected an integer >= 0"),
        ("serverz: [nats://x:1]", "transport.nats.serverz: unknown key; did you mean 'servers'?"),
    ],
)
def test_bad_values_name_their_key(tmp_path: Path, section: str, message: str) -> None:
    body = section if section.startswith("{") else "{" + section + "}"
    with pytest.raises(ConfigError) as info:
        load(tmp_path, f"node_id: n\ntransport:\n  mode: nats\n  nats: {body}\n")
    assert message in str(info.value)


async def test_unreachable_server_is_a_clear_error_at_start() -> None:
    from tests.natsd import free_port

    url = f"nats://127.0.0.1:{free_port()}"
    node = Node("n", load_config_for(url))
    with pytest.raises(ConfigError) as info:
        await node.start()
    text = str(info.value)
    assert "cannot connect to the NATS servers" in text and url in text and "transport.nats.servers" in text
    assert not node.is_running


async def test_wrong_password_is_a_clear_error_at_start(tmp_path: Path) -> None:
    server = NatsServer(extra_conf='authorization { user: alice, password: "right" }').start()
    try:
        ok = Node("ok", load_config_for(server.url, user="alice", password="right"))
        await ok.start()
        await ok.stop()
        bad = Node("bad", load_config_for(server.url, user="alice", password="wrong"))
        with pytest.raises(ConfigError, match=r"cannot connect to the NATS servers.*[Aa]uthorization"):
            await bad.start()
    finally:
        server.stop()


def load_config_for(url: str, **opts: object) -> object:
    from tests.nats.conftest import nats_config

    return nats_config("n", url, "cfgtest", connect_timeout=1.0, start_timeout=1.0, **opts)


def test_quickstart_nats_runs_as_written() -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, str(root / "examples" / "quickstart_nats.py")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=root,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "Result: {'echo': {'msg': 'hello'}}",
        "Broadcast: {'node_2': {'echo': 'to everyone'}}",
    ]
