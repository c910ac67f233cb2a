"""Server process of the peer workloads: a Pyro5 daemon and an RPyC ThreadedServer, each echoing."""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

import Pyro5.api
import rpyc
from rpyc.utils.server import ThreadedServer


@Pyro5.api.expose
class PyroEcho:
    def echo(self, payload: Any) -> Any:
        return payload


class RpycEcho(rpyc.Service):
    # RPyC passes dicts by reference (netrefs); JSON text crosses by value, as a user would send it.
    def exposed_echo(self, data: str) -> str:
        return json.dumps(json.loads(data))


def main() -> None:
    Pyro5.config.THREADPOOL_SIZE = 200
    daemon = Pyro5.api.Daemon(host="127.0.0.1", port=0)
    uri = daemon.register(PyroEcho, "echo")
    threading.Thread(target=daemon.requestLoop, daemon=True).start()
    rs = ThreadedServer(
        RpycEcho, hostname="127.0.0.1", port=0, protocol_config={"allow_public_attrs": False}, listener_timeout=None
    )
    threading.Thread(target=rs.start, daemon=True).start()
    sys.stdout.write(json.dumps({"pyro": str(uri), "rpyc_port": rs.port}) + "\n")
    sys.stdout.flush()
    sys.stdin.read()
    rs.close()
    daemon.shutdown()


if __name__ == "__main__":
    main()
