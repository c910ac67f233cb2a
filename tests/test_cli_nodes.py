"""``node-comm run / call / ping / health / check-config`` as real subprocesses against real nodes
in other processes over gRPC on loopback: exit codes (0 ok, 1 failed, 2 usage or config error),
stdout and stderr. Independent invocations of one test run concurrently to keep the file fast."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from node_comm.cli import main

from .test_cli import node_comm_bin

FIXTURES = Path(__file__).with_name("fixtures")
TOKEN = "t0k3n-not-for-output"


@dataclass
class Result:
    rc: int
    out: str
    err: str


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("NODE_COMM_")}


async def cli(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
    """Run ``node-comm ARGS`` to completion."""
    proc = await asyncio.create_subprocess_exec(
        str(node_comm_bin()),
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**_env(), **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin is not None else None), 60)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


def in_process(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    """``main(ARGS)`` in this process, for errors caught before anything is dialled or served."""
    try:
        rc = main(list(args))
    except SystemExit as exc:  # argparse: --help and usage errors
        rc = int(exc.code or 0)
    captured = capsys.readouterr()
    return Result(rc, captured.out, captured.err)


class Served:
    """``node-comm run`` in a subprocess; a thread collects its stdout and stderr lines so a test
    waits for a line (an event), never for a fixed time."""

    def __init__(self, config: Path, app: str = "cli_app:setup") -> None:
        self.proc = subprocess.Popen(
            [str(node_comm_bin()), "run", str(config), "--app", app, "--app-dir", str(FIXTURES)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        for stream in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=self._pump, args=(stream,), daemon=True).start()
        self.address = self.wait_for("listening on").split("listening on ")[1].split()[0]

    def _pump(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_for(self, text: str, timeout: float = 30.0, after: int = 0) -> str:
        """The first line (from index ``after``) containing ``text``; fails after ``timeout``."""

        def found() -> str | None:
            return next((line for line in self.lines[after:] if text in line), None)

        with self._cond:
            if not self._cond.wait_for(lambda: found() is not None or self.proc.poll() is not None, timeout):
                raise AssertionError(f"no line with {text!r} within {timeout}s:\n" + "\n".join(self.lines))
            line = found()
        if line is None:
            self.proc.wait(5)
            with self._cond:
                line = found()
            if line is None:
                raise AssertionError(f"exited {self.proc.returncode} without {text!r}:\n" + "\n".join(self.lines))
        return line

    def text(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def confs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli")
    _write(
        d / "server.yaml",
        f"""
        node_id: srv
        shutdown_grace: 5
        transport: {{mode: grpc, grpc: {{port: 0, token: "{TOKEN}"}}}}
        """,
    )
    _write(
        d / "client.yaml",
        f"""
        node_id: ignored-by-call
        transport: {{mode: grpc, grpc: {{token: "{TOKEN}"}}}}
        """,
    )
    return d


@pytest.fixture(scope="module")
def server(confs: Path) -> Iterator[Served]:
    """One ``node-comm run`` node ``srv`` (async setup, token auth) for the call/ping/health tests."""
    served = Served(confs / "server.yaml", app="cli_app:setup_async")
    yield served
    assert served.stop() == 0, served.text()


# ------------------------------------------------------------------------------------------ call
async def test_call_prints_the_result_as_json(server: Served, confs: Path) -> None:
    client = str(confs / "client.yaml")
    ok, stdin, text = await asyncio.gather(
        cli("call", server.address, "srv", "add", '{"a": 1, "b": 2}', "--config", client),
        cli("call", server.address, "srv", "add", "-", "--config", client, stdin='{"a": 40, "b": 2}'),
        cli("call", server.address, "srv", "slow", "0", "--config", client, "--as", "named-caller"),
    )
    assert (ok.rc, json.loads(ok.out), ok.err) == (0, 3, "")
    assert (stdin.rc, json.loads(stdin.out)) == (0, 42)
    assert (text.rc, json.loads(text.out)) == (0, "done")
    server.wait_for("slow started by named-caller")
    server.wait_for("app saw named-caller connect")  # the async setup's event hook ran


async def test_call_failures_exit_1_with_the_reason_on_stderr(server: Served, confs: Path) -> None:
    client = str(confs / "client.yaml")
    boom, missing, timeout, no_token, closed = await asyncio.gather(
        cli("call", server.address, "srv", "boom", "--config", client),
        cli("call", server.address, "srv", "nope", "--config", client),
        cli("call", server.address, "srv", "slow", "30", "--config", client, "--timeout", "0.3"),
        cli("call", server.address, "srv", "add", '{"a": 1, "b": 2}'),
        cli("call", f"127.0.0.1:{_free_port()}", "srv", "add", "--timeout", "5"),
    )
    for r in (boom, missing, timeout, no_token, closed):
        assert r.rc == 1, r
        assert r.out == "" and "Traceback" not in r.err
        assert "\x1b" not in r.err and "\x9b" not in r.err
    assert "node-comm: remote error HANDLER_ERROR: ValueError: boom\\x1b[2J\\x9b\n" in boom.err
    assert "remote error METHOD_NOT_FOUND: node 'srv' has no method 'nope'; registered: add, boom, slow" in missing.err
    assert "timed out after 0.3s" in timeout.err
    assert "requires a shared secret: set transport.grpc.token" in no_token.err
    assert "cannot connect to node 'srv'" in closed.err and "Connection refused" in closed.err


def test_call_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad_config = _write(tmp_path / "bad.yaml", "node_id: x\ntransport: {grpc: {tokn: a}}\n")
    bad_json = in_process(capsys, "call", "127.0.0.1:1", "srv", "add", "{a: 1}")
    bad_cfg = in_process(capsys, "call", "127.0.0.1:1", "srv", "add", "--config", str(bad_config))
    missing_arg = in_process(capsys, "call", "127.0.0.1:1")
    bad_count = in_process(capsys, "ping", "127.0.0.1:1", "srv", "--count", "0")
    assert bad_count.rc == 2 and "--count: expected a number >= 1, got 0" in bad_count.err
    assert bad_json.rc == 2 and "the payload is not valid JSON" in bad_json.err
    assert bad_cfg.rc == 2 and "transport.grpc.tokn: unknown key; did you mean 'token'?" in bad_cfg.err
    assert missing_arg.rc == 2 and "usage: node-comm call" in missing_arg.err


# ------------------------------------------------------------------------------------ ping/health
async def test_ping(server: Served, confs: Path) -> None:
    client = str(confs / "client.yaml")
    text, machine, wrong_id = await asyncio.gather(
        cli("ping", server.address, "srv", "--count", "2", "--interval", "0", "--config", client),
        cli("ping", server.address, "srv", "-c", "3", "--interval", "0", "--json", "--config", client),
        cli("ping", server.address, "other", "--config", client),
    )
    assert text.rc == 0, text.err
    lines = text.out.splitlines()
    assert lines[0].startswith(f"connected to node 'srv' at {server.address} in ")
    assert lines[1].split() == ["seq", "status", "rtt", "ms"]
    assert [line.split()[:2] for line in lines[3:5]] == [["1", "alive"], ["2", "alive"]]
    assert lines[5].startswith("2/2 answered, rtt min/avg/max = ")
    assert machine.rc == 0
    report = json.loads(machine.out)
    assert (report["node_id"], report["sent"], report["answered"]) == ("srv", 3, 3)
    assert [r["status"] for r in report["replies"]] == ["alive"] * 3
    assert 0 < report["min_ms"] <= report["avg_ms"] <= report["max_ms"]
    assert wrong_id.rc == 1 and "is node 'srv', not 'other'" in wrong_id.err


async def test_ping_without_a_node_id_prints_whoever_answers(server: Served, confs: Path, tmp_path: Path) -> None:
    client = str(confs / "client.yaml")
    wrong = _write(tmp_path / "wrong.yaml", "node_id: x\ntransport: {mode: grpc, grpc: {token: not-the-token}}\n")
    text, machine, no_token, wrong_token, closed = await asyncio.gather(
        cli("ping", server.address, "-c", "2", "--interval", "0", "--config", client),
        cli("ping", server.address, "-c", "1", "--json", "--config", client),
        cli("ping", server.address),
        cli("ping", server.address, "--config", str(wrong)),
        cli("ping", f"127.0.0.1:{_free_port()}", "--timeout", "5"),
    )
    assert text.rc == 0, text.err
    lines = text.out.splitlines()
    assert lines[0].startswith(f"connected to node 'srv' at {server.address} in ")
    assert lines[-1].startswith("2/2 answered, rtt min/avg/max = ")
    assert machine.rc == 0, machine.err
    report = json.loads(machine.out)
    assert (report["node_id"], report["sent"], report["answered"]) == ("srv", 1, 1)
    assert report["replies"][0]["status"] == "alive" and report["replies"][0]["rtt_ms"] > 0
    # The server's token still guards it, both ways; nothing secret is printed.
    assert no_token.rc == 1 and "requires a shared secret: set transport.grpc.token" in no_token.err
    assert wrong_token.rc == 1 and "bad credentials" in wrong_token.err
    for r in (no_token, wrong_token, closed):
        assert r.out == "" and "Traceback" not in r.err and TOKEN not in r.err
    assert closed.rc == 1 and "cannot connect to the node at 127.0.0.1:" in closed.err


def test_ping_without_a_node_id_under_bound_certificates_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With tls.bind_node_id the server's certificate is checked against the id dialled: unknown here."""
    pytest.importorskip("cryptography")
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cli")])
    now = datetime.datetime.now(datetime.timezone.utc)
    day = datetime.timedelta(days=1)
    builder = x509.CertificateBuilder(name, name, key.public_key(), x509.random_serial_number(), now, now + day)
    cert = builder.sign(key, hashes.SHA256())
    (tmp_path / "cli.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pkcs8, no_encryption = serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    (tmp_path / "cli.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, pkcs8, no_encryption))
    grpc = "{port: null, tls: {ca_file: cli.crt, cert_file: cli.crt, key_file: cli.key, bind_node_id: true}}"
    config = _write(tmp_path / "bound.yaml", f"node_id: cli\ntransport: {{mode: grpc, grpc: {grpc}}}\n")
    monkeypatch.chdir(tmp_path)  # the certificate paths are relative to the working directory
    bound = in_process(capsys, "ping", f"127.0.0.1:{_free_port()}", "--config", str(config))
    assert bound.rc == 2 and "tls.bind_node_id is on" in bound.err and "the node id must be given" in bound.err


async def test_health(server: Served) -> None:
    serving, machine, unknown, closed = await asyncio.gather(
        cli("health", server.address),
        cli("health", server.address, "--service", "node_comm.v1.NodeComm", "--json"),
        cli("health", server.address, "--service", "nope", "--json"),
        cli("health", f"127.0.0.1:{_free_port()}", "--timeout", "3"),
    )
    assert (serving.rc, serving.out) == (0, f"{server.address} (server): SERVING\n")
    assert machine.rc == 0
    assert json.loads(machine.out) == {
        "address": server.address,
        "service": "node_comm.v1.NodeComm",
        "status": "SERVING",
    }
    assert unknown.rc == 1 and json.loads(unknown.out)["status"] is None
    assert "no health status for service 'nope'" in unknown.err
    assert closed.rc == 1 and "cannot reach the health service" in closed.err


def test_health_without_the_grpc_plugin_says_what_to_install() -> None:
    code = "import sys; sys.modules['grpc'] = None\nfrom node_comm.cli import main\nsys.exit(main(['health', 'x:1']))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=_env())
    assert proc.returncode == 2
    assert "pip install node-comm-grpc" in proc.stderr and "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------------- run
def test_run_sigterm_lets_the_inflight_call_finish(tmp_path: Path) -> None:
    config = _write(tmp_path / "n.yaml", "node_id: n\nshutdown_grace: 10\ntransport: {mode: grpc, grpc: {port: 0}}\n")
    served = Served(config)
    try:
        call = subprocess.Popen(
            [str(node_comm_bin()), "call", served.address, "n", "slow", "1.5"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        served.wait_for("slow started")
        assert served.stop(signal.SIGTERM) == 0, served.text()
        out, err = call.communicate(timeout=30)
    finally:
        served.stop(signal.SIGKILL)
    assert (call.returncode, out.strip(), err) == (0, '"done"', "")
    log = served.text()
    assert "SIGTERM: stopping; in-flight calls get up to 10s" in log
    assert "node 'n' stopped" in log and "Traceback" not in log
    assert log.index("connected: node-comm-cli-") < log.index("SIGTERM") < log.index("slow finished")


def test_run_retries_a_peer_that_is_not_up_yet(tmp_path: Path) -> None:
    port = _free_port()
    early = _write(
        tmp_path / "early.yaml",
        f"""
        node_id: early
        transport: {{mode: grpc, grpc: {{port: 0, reconnect: {{initial_backoff: 0.05, max_backoff: 0.3}}}}}}
        peers: [{{node_id: late, address: "127.0.0.1:{port}"}}]
        """,
    )
    late = _write(tmp_path / "late.yaml", f"node_id: late\ntransport: {{mode: grpc, grpc: {{port: {port}}}}}\n")
    first = Served(early)
    second: Served | None = None
    try:
        first.wait_for(f"peer 'late' at 127.0.0.1:{port} not reachable (attempt 2)")
        second = Served(late)
        first.wait_for(f"connected: late (127.0.0.1:{port})")
        second.wait_for("connected: early")
        assert first.proc.poll() is None  # a missing peer never made it exit
        assert second.stop(signal.SIGINT) == 0
        first.wait_for("disconnected: late")
        assert first.stop() == 0
    finally:
        first.stop(signal.SIGKILL)
        if second is not None:
            second.stop(signal.SIGKILL)
    assert "INFO node_comm.run: node 'early' listening on 127.0.0.1:" in first.text()


async def test_run_config_errors_exit_2_and_a_setup_bug_exits_1(tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad.yaml", "node_id: g\npeers: [{node_id: h, adress: 'x:1'}]\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = _write(tmp_path / "busy.yaml", f"node_id: g\ntransport: {{mode: grpc, grpc: {{port: {port}}}}}\n")
        app = ("--app", "cli_app:setup", "--app-dir", str(FIXTURES))
        broken = ("--app", "cli_app:broken_setup", "--app-dir", str(FIXTURES))
        typo, in_use, bug = await asyncio.gather(
            cli("run", str(bad), *app), cli("run", str(busy), *app), cli("run", str(busy), *broken)
        )
    assert typo.rc == 2 and "Traceback" not in typo.err
    assert typo.err == f"node-comm: error: {bad}: peers[0].adress: unknown key; did you mean 'address'?\n"
    assert in_use.rc == 2 and "Traceback" not in in_use.err
    assert f"transport.grpc: cannot listen on 127.0.0.1:{port}" in in_use.err
    # A bug in the user's setup is not a usage error: exit 1 with its traceback.
    assert bug.rc == 1 and "Traceback" in bug.err and "RuntimeError: broken setup" in bug.err


def test_run_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _write(tmp_path / "good.yaml", "node_id: g\ntransport: {mode: grpc, grpc: {port: 0}}\n")
    no_address = _write(tmp_path / "noaddr.yaml", "node_id: g\ntransport: {mode: grpc}\npeers: [{node_id: h}]\n")
    app = ("--app-dir", str(FIXTURES))
    cases = [
        ((str(no_address), "--app", "cli_app:setup"), "peers[0].address: the grpc transport needs 'host:port'"),
        ((str(good), "--app", "no_such_module:setup"), "no module named 'no_such_module'"),
        ((str(good), "--app", "cli_app:nothing"), "module 'cli_app' has no attribute 'nothing'"),
        ((str(good), "--app", "cli_app:not_callable"), "'not_callable' is a int, not a function setup(node)"),
        ((str(good), "--app", "not a spec"), "expected 'package.module:function'"),
        ((str(good),), "the following arguments are required: --app"),
    ]
    for args, text in cases:
        r = in_process(capsys, "run", *args, *app)
        assert r.rc == 2, (args, r)
        assert text in r.err


# ---------------------------------------------------------------------------------- check-config
async def test_check_config(tmp_path: Path) -> None:
    config = _write(
        tmp_path / "node.yaml",
        """
        node_id: w
        transport:
          mode: grpc
          grpc: {port: 0, token: "${SECRET_TOKEN}", tls: {cert_file: c.pem, key_file: k.pem}}
        interceptors:
          - {name: auth, options: {token: "hunter2-interceptor"}}
          - {name: logging}
        peers: [{node_id: c, address: "h:1"}]
        """,
    )
    env = {"SECRET_TOKEN": "hunter2-transport"}
    text, machine = await asyncio.gather(
        cli("check-config", str(config), env=env), cli("check-config", str(config), "--json", env=env)
    )
    assert text.rc == 0 and machine.rc == 0
    for r in (text, machine):
        assert "hunter2" not in r.out and "k.pem" not in r.out
    assert text.out.startswith(f"{config}: OK (node 'w', transport 'grpc')\n")
    assert "      token: '***'" in text.out and "cert_file: c.pem" in text.out
    assert "transport    grpc     grpc          node-comm-grpc 0.1.0" in text.out
    assert "interceptor  auth     interceptors  node-comm-interceptors 0.1.0" in text.out
    report = json.loads(machine.out)
    assert report["ok"] is True
    assert report["config"]["transport"]["grpc"]["token"] == "***"
    assert report["config"]["interceptors"][0] == {"name": "auth", "options": {"token": "***"}}
    assert report["config"]["peers"] == [{"node_id": "c", "address": "h:1"}]
    assert report["config"]["shutdown_grace"] == 5.0  # defaults are filled in
    by_name = {(p["kind"], p["name"]): p for p in report["providers"]}
    assert by_name[("transport", "grpc")]["distribution"] == "node-comm-grpc"
    assert by_name[("serializer", "msgpack")]["plugin"] == "serializers"
    assert by_name[("interceptor", "logging")]["version"] == "0.1.0"


async def test_check_config_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _write(tmp_path / "bad.yaml", "node_id: w\ntransport: {grpc: {prot: 1}}\n")
    typo = await cli("check-config", str(bad))
    assert typo.rc == 2 and typo.out == ""
    assert typo.err == f"node-comm: error: {bad}: transport.grpc.prot: unknown key; did you mean 'port'?\n"
    machine = in_process(capsys, "check-config", str(bad), "--json")
    assert machine.rc == 2 and json.loads(machine.out)["ok"] is False
    missing = in_process(capsys, "check-config", str(tmp_path / "nope.yaml"))
    assert missing.rc == 2 and "does not exist" in missing.err
    unset = in_process(capsys, "check-config", str(_write(tmp_path / "env.yaml", "node_id: ${NO_SUCH_VAR_X}\n")))
    assert unset.rc == 2 and "environment variable 'NO_SUCH_VAR_X' is not set" in unset.err


# ------------------------------------------------------------------------------------------ help
def test_every_subcommand_help_shows_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    commands = ["run", "call", "ping", "health", "check-config", "plugins"]
    for command in commands:
        r = in_process(capsys, command, "--help")
        assert r.rc == 0
        assert f"usage: node-comm {command}" in r.out
        assert "example:" in r.out and f"node-comm {command}" in r.out.split("example:")[1]
    top = in_process(capsys, "--help")
    assert all(c in top.out for c in commands) and "Exit codes: 0 ok, 1" in top.out
