"""``node-comm run CONFIG.yaml --app package.module:setup``: serve a node from a config file.

Builds the node from the YAML, calls the user's ``setup(node)`` (sync or async; it registers
handlers and event hooks), starts the node, dials every entry of ``peers:`` (retrying with the
transport's backoff until each answers) and serves until SIGINT or SIGTERM; then stops gracefully:
in-flight calls get ``shutdown_grace`` seconds to finish. A second signal exits at once.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib
import inspect
import logging
import os
import random
import signal
import sys
from collections.abc import Callable
from typing import Any

from ..config import NodeConfig, PeerConfig
from ..exceptions import ConfigError, ConnectFailedError, NodeCommError, NodeNotStartedError
from ..node import Node
from .output import EXIT_OK, UsageError, safe

log = logging.getLogger("node_comm.run")

#: Dial backoff when the transport's options have no ``reconnect`` section (seconds, factor).
DEFAULT_BACKOFF = (0.2, 10.0, 2.0, 0.2)


def load_app(spec: str, app_dir: str) -> Callable[[Node], Any]:
    """The callable named by ``package.module:function`` (``:setup`` when the function is omitted),
    imported with ``app_dir`` first on ``sys.path``."""
    module_name, _, attr = spec.partition(":")
    attr = attr or "setup"
    if not module_name or not all(part.isidentifier() for part in module_name.split(".") + attr.split(".")):
        raise UsageError(f"--app: expected 'package.module:function', got {spec!r}")
    path = os.path.abspath(app_dir)
    if path not in sys.path:
        sys.path.insert(0, path)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise UsageError(
                f"--app {spec}: no module named {exc.name!r} (looked in {path} and sys.path); "
                "run from the directory that holds it or pass --app-dir DIR"
            ) from None
        raise  # the app itself imports something missing: its traceback says what
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(f"--app {spec}: module {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise UsageError(f"--app {spec}: {attr!r} is a {type(obj).__name__}, not a function setup(node)")
    return obj  # type: ignore[no-any-return]


def _backoff(config: NodeConfig) -> tuple[float, float, float, float]:
    reconnect = getattr(config.transport.section(config.transport.mode), "reconnect", None)
    if reconnect is None:
        return DEFAULT_BACKOFF
    return (
        float(reconnect.initial_backoff),
        float(reconnect.max_backoff),
        float(reconnect.multiplier),
        float(reconnect.jitter),
    )


async def connect_with_retry(node: Node, peer: PeerConfig, backoff: tuple[float, float, float, float]) -> None:
    """Dial ``peer`` until it answers, waiting ``initial * multiplier**n`` (at most ``max``) seconds,
    with jitter, between attempts; each failure is logged at INFO. Cancel the task to give up."""
    initial, maximum, multiplier, jitter = backoff
    delay, attempt = initial, 0
    while True:
        attempt += 1
        try:
            await node.connect(peer.node_id, peer.address)
            return
        except NodeNotStartedError:
            return  # stopping
        except ConnectFailedError as exc:
            wait = max(0.0, delay * (1 + random.uniform(-jitter, jitter)))
            log.info(
                "peer %r at %s not reachable (attempt %d): %s; retrying in %.1fs",
                peer.node_id,
                peer.address,
                attempt,
                safe(exc.message),
                wait,
            )
        await asyncio.sleep(wait)
        delay = min(delay * multiplier, maximum)


def _report_dial(task: asyncio.Task[None], *, peer: PeerConfig) -> None:
    if task.cancelled() or task.exception() is None:
        return
    exc = task.exception()
    what = safe(exc.message) if isinstance(exc, NodeCommError) else repr(exc)
    log.error("gave up connecting to peer %r at %s: %s", peer.node_id, peer.address, what)


# Peer ids, addresses and reasons come from the network: control characters are escaped.
def _log_connect(peer: str, address: str | None) -> None:
    log.info("connected: %s (%s)", safe(peer), safe(address or "no address"))


def _log_disconnect(peer: str, reason: str) -> None:
    log.info("disconnected: %s: %s", safe(peer), safe(reason))


async def serve(config: NodeConfig, setup: Callable[[Node], Any]) -> int:
    """Build, set up, start and serve the node until SIGINT/SIGTERM; then stop gracefully."""
    node = Node(config.node_id, config)
    node.on("connect", _log_connect).on("disconnect", _log_disconnect)
    result = setup(node)
    if inspect.isawaitable(result):
        await result
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            log.warning("%s again: exiting now without waiting for in-flight calls", name)
            logging.shutdown()
            os._exit(1)
        log.info("%s: stopping; in-flight calls get up to %gs", name, config.shutdown_grace)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, on_signal, signum)
        except (NotImplementedError, RuntimeError):  # not on this platform / not the main thread
            signal.signal(signum, lambda s, _f: loop.call_soon_threadsafe(on_signal, s))
    await node.start()
    where = node.address or "nowhere (dial-only)"
    log.info("node %r listening on %s (transport %s)", node.node_id, where, config.transport.mode)
    backoff = _backoff(config)
    dials = [asyncio.create_task(connect_with_retry(node, peer, backoff)) for peer in config.peers]
    for task, peer in zip(dials, config.peers, strict=True):
        task.add_done_callback(functools.partial(_report_dial, peer=peer))
    try:
        await stop.wait()
    finally:
        for task in dials:
            task.cancel()
        await asyncio.gather(*dials, return_exceptions=True)
        await node.stop()
        log.info("node %r stopped", node.node_id)
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from ..config_loader import load_config

    config = load_config(args.config)
    if config.transport.mode == "grpc":
        for i, peer in enumerate(config.peers):
            if not peer.address:
                raise ConfigError(
                    f"{args.config}: peers[{i}].address: the grpc transport needs 'host:port' "
                    f"to dial node {peer.node_id!r}"
                )
    setup = load_app(args.app, args.app_dir)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    return asyncio.run(serve(config, setup))


def add_parser(sub: Any) -> None:
    """``node-comm run``."""
    p = sub.add_parser(
        "run",
        help="serve a node from a YAML config with your handlers, until SIGINT/SIGTERM",
        description="Build the node from CONFIG, call your setup(node) (sync or async: register handlers "
        "and event hooks), start it, connect to every node under peers: (retrying until each is up) "
        "and serve until SIGINT or SIGTERM, then stop gracefully (in-flight calls get shutdown_grace "
        "seconds). Logs to stderr.",
        epilog="example:\n"
        "  $ cat worker.yaml\n"
        "  node_id: worker\n"
        "  transport: {mode: grpc, grpc: {port: 50051}}\n"
        "  peers: [{node_id: coordinator, address: '10.0.0.1:50051'}]\n"
        "  $ cat myapp.py\n"
        "  def setup(node):\n"
        "      node.register('add', lambda p, ctx: p['a'] + p['b'])\n"
        "  $ node-comm run worker.yaml --app myapp:setup\n"
        "  ... INFO node_comm.run: node 'worker' listening on 127.0.0.1:50051 (transport grpc)\n"
        "  ... INFO node_comm.run: connected: coordinator (10.0.0.1:50051)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", metavar="CONFIG.yaml", help="the node's config file")
    p.add_argument(
        "--app", required=True, metavar="MODULE:FUNCTION", help="your setup(node) function, e.g. myapp:setup"
    )
    p.add_argument("--app-dir", default=".", metavar="DIR", help="directory to import the app from (default .)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"], help="default info")
    p.set_defaults(func=cmd_run)
