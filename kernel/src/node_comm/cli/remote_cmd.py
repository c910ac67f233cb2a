"""``node-comm call``, ``ping`` and ``health``: reach a running node from the shell.

``call`` and ``ping`` dial as a temporary dial-only grpc node (no listening port); TLS, token and
interceptors come from ``--config`` when given. ``health`` asks the standard gRPC health service.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import json
import os
import sys
import time
from typing import Any

from ..config import HeartbeatConfig, NodeConfig, TransportConfig
from ..exceptions import (
    CallTimeoutError,
    ConfigError,
    ConnectFailedError,
    NodeCommError,
    RemoteExecutionError,
)
from ..node import Node
from .output import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError, dumps, error, print_json, safe, table

GRPC_MISSING = (
    "this command needs the gRPC transport, which is not installed; "
    "install it with `pip install node-comm-grpc` (or `pip install 'node-comm[grpc]'`)"
)


def _grpc_config_class() -> Any:
    try:
        from node_comm_grpc.config import GrpcTransportConfig
    except ImportError:
        raise UsageError(GRPC_MISSING) from None
    return GrpcTransportConfig


def dial_only_config(config_file: str | None, node_id: str) -> NodeConfig:
    """A grpc config with no listening port for a short-lived node called ``node_id``; TLS, token,
    interceptors and plugins come from ``config_file`` when given (its own node id, port, peers,
    heartbeat and redial are not used)."""
    grpc_class = _grpc_config_class()
    base = NodeConfig(node_id=node_id)
    if config_file is not None:
        from ..config_loader import load_config

        base = load_config(config_file)
    grpc_options = base.transport.grpc if base.transport.grpc is not None else grpc_class()
    grpc_options = dataclasses.replace(
        grpc_options, port=None, reconnect=dataclasses.replace(grpc_options.reconnect, enabled=False)
    )
    return dataclasses.replace(
        base,
        node_id=node_id,
        transport=TransportConfig(mode="grpc", grpc=grpc_options),
        heartbeat=HeartbeatConfig(),
        peers=[],
        shutdown_grace=0.0,
    )


def _temp_id(given: str | None) -> str:
    return given or f"node-comm-cli-{os.getpid()}"


def _parse_payload(text: str | None) -> Any:
    if text is None:
        return None
    if text == "-":
        text = sys.stdin.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"the payload is not valid JSON ({exc}): {text[:80]!r}; quote it for the shell, "
            """e.g. '{"x": 1}' or '"a string"'"""
        ) from None


def _remote_error(exc: RemoteExecutionError) -> None:
    print(f"node-comm: remote error {safe(exc.code.value)}: {safe(exc.message)}", file=sys.stderr)
    if exc.traceback:
        tb = safe(exc.traceback)
        print(tb, file=sys.stderr, end="" if tb.endswith("\n") else "\n")


async def _connect(node: Node, node_id: str, address: str, timeout: float | None) -> bool:
    try:
        await node.connect(node_id, address, timeout=timeout)
    except ConnectFailedError as exc:
        message = exc.message
        if address not in message:
            message = f"cannot connect to node {node_id!r} at {address}: {message}"
        error(message)
        return False
    return True


# ---------------------------------------------------------------------------------------- call
async def _call(args: argparse.Namespace, payload: Any) -> int:
    node = Node(config=dial_only_config(args.config, _temp_id(args.as_id)))
    async with node:
        if not await _connect(node, args.node_id, args.address, args.timeout):
            return EXIT_FAILED
        try:
            result = await node.call(
                args.node_id, args.method, payload, timeout=args.timeout, serializer=args.serializer
            )
        except RemoteExecutionError as exc:
            _remote_error(exc)
            return EXIT_FAILED
        except CallTimeoutError as exc:
            error(f"{exc} (raise it with --timeout SECONDS)")
            return EXIT_FAILED
        except ConfigError:
            raise
        except NodeCommError as exc:
            error(f"{type(exc).__name__}: {exc}")
            return EXIT_FAILED
    print(dumps(result), flush=True)
    return EXIT_OK


def cmd_call(args: argparse.Namespace) -> int:
    payload = _parse_payload(args.payload)
    return asyncio.run(_call(args, payload))


# ---------------------------------------------------------------------------------------- ping
async def _connect_any(node: Node, address: str, timeout: float | None) -> str | None:
    """Connect to whichever node answers at ``address`` (the grpc transport's ``connect_any``: the
    id comes from its handshake reply); its id, or ``None`` after printing why not."""
    transport: Any = node.transport
    try:
        return str(await transport.connect_any(address, timeout or node.config.connect_timeout))
    except ConnectFailedError as exc:
        error(exc.message if address in exc.message else f"cannot connect to {address}: {exc.message}")
        return None


async def _ping(args: argparse.Namespace) -> int:
    node = Node(config=dial_only_config(args.config, _temp_id(args.as_id)))
    report: dict[str, Any] = {"address": args.address, "node_id": args.node_id, "replies": []}
    async with node:
        t0 = time.perf_counter()
        if args.node_id is None:
            args.node_id = report["node_id"] = await _connect_any(node, args.address, args.timeout)
            if args.node_id is None:
                return EXIT_FAILED
        elif not await _connect(node, args.node_id, args.address, args.timeout):
            return EXIT_FAILED
        report["connect_ms"] = round((time.perf_counter() - t0) * 1000, 3)
        if not args.json:
            print(f"connected to node {args.node_id!r} at {args.address} in {report['connect_ms']:.1f} ms")
        for seq in range(1, args.count + 1):
            if seq > 1:
                await asyncio.sleep(args.interval)
            t = time.perf_counter()
            reply: dict[str, Any] = {"seq": seq}
            try:
                answer = await node.call(args.node_id, "_heartbeat", None, timeout=args.timeout)
            except NodeCommError as exc:
                reply.update(ok=False, error=f"{type(exc).__name__}: {exc}")
            else:
                ok = isinstance(answer, dict) and answer.get("node_id") == args.node_id
                reply.update(ok=ok, rtt_ms=round((time.perf_counter() - t) * 1000, 3))
                reply["status"] = answer.get("status") if isinstance(answer, dict) else repr(answer)
            report["replies"].append(reply)
    rtts = [r["rtt_ms"] for r in report["replies"] if r.get("ok")]
    report["answered"], report["sent"] = len(rtts), args.count
    if rtts:
        report.update(min_ms=min(rtts), avg_ms=round(sum(rtts) / len(rtts), 3), max_ms=max(rtts))
    if args.json:
        print_json(report)
    else:
        rows = [
            [r["seq"], r.get("status", "-"), f"{r['rtt_ms']:.2f}" if "rtt_ms" in r else r.get("error", "")]
            for r in report["replies"]
        ]
        print(table(["seq", "status", "rtt ms"], rows))
        summary = f"{len(rtts)}/{args.count} answered"
        if rtts:
            summary += f", rtt min/avg/max = {report['min_ms']:.2f}/{report['avg_ms']:.2f}/{report['max_ms']:.2f} ms"
        print(summary)
    return EXIT_OK if len(rtts) == args.count else EXIT_FAILED


def cmd_ping(args: argparse.Namespace) -> int:
    if args.count < 1:
        raise UsageError(f"--count: expected a number >= 1, got {args.count}")
    return asyncio.run(_ping(args))


# -------------------------------------------------------------------------------------- health
def cmd_health(args: argparse.Namespace) -> int:
    try:  # gRPC is imported here only: the kernel and the other commands never need it
        grpc: Any = importlib.import_module("grpc")
        health_pb2: Any = importlib.import_module("grpc_health.v1.health_pb2")
        health_pb2_grpc: Any = importlib.import_module("grpc_health.v1.health_pb2_grpc")
    except ImportError:
        error(GRPC_MISSING)
        return EXIT_USAGE
    tls = None
    if args.config:
        from ..config_loader import load_config

        grpc_options = load_config(args.config).transport.grpc
        tls = getattr(grpc_options, "tls", None)
    options: list[tuple[str, Any]] = []
    if tls is not None:
        security: Any = importlib.import_module("node_comm_grpc.security")
        if tls.server_name:
            options.append(("grpc.ssl_target_name_override", tls.server_name))
        channel = grpc.secure_channel(args.address, security.channel_credentials(tls), options=options)
    else:
        channel = grpc.insecure_channel(args.address)
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout)
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details()
            if code == grpc.StatusCode.NOT_FOUND:
                message = f"the node at {args.address} has no health status for service {args.service!r}"
            else:
                message = f"cannot reach the health service at {args.address}: {code.name}: {details}"
            if args.json:
                print_json({"address": args.address, "service": args.service, "status": None, "error": message})
            error(message)
            return EXIT_FAILED
    finally:
        channel.close()
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    if args.json:
        print_json({"address": args.address, "service": args.service, "status": status})
    else:
        print(f"{safe(args.address)} {safe(args.service or '(server)')}: {status}")
    return EXIT_OK if status == "SERVING" else EXIT_FAILED


# ------------------------------------------------------------------------------------- parsers
def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="take TLS, token, interceptors and plugins from this node config")
    p.add_argument("--as", dest="as_id", metavar="NODE_ID", help="the node id to dial as (default: node-comm-cli-PID)")


def add_parsers(sub: Any) -> None:
    """``node-comm call``, ``ping`` and ``health``."""
    raw = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "call",
        help="call a method of a running node and print its result as JSON",
        description="Dial ADDRESS as a temporary dial-only grpc node, call NODE_ID's METHOD with the JSON "
        "payload, print the result as JSON on stdout. A remote error prints its code and message "
        "on stderr and exits 1; so does a connection failure or a timeout.",
        epilog="example:\n"
        """  $ node-comm call 127.0.0.1:50051 worker add '{"a": 1, "b": 2}'\n"""
        "  3\n"
        "  $ node-comm call 127.0.0.1:50051 worker nope\n"
        "  node-comm: remote error METHOD_NOT_FOUND: node 'worker' has no method 'nope'; registered: add",
        formatter_class=raw,
    )
    p.add_argument("address", metavar="ADDRESS", help="host:port of the node")
    p.add_argument("node_id", metavar="NODE_ID", help="the id of the node there")
    p.add_argument("method", metavar="METHOD", help="the method to call")
    p.add_argument("payload", metavar="JSON", nargs="?", help="the payload as JSON (default null; - reads stdin)")
    p.add_argument("--timeout", type=float, metavar="S", help="seconds for the connect and for the call")
    p.add_argument("--serializer", metavar="NAME", help="serializer of the call (default json)")
    _common(p)
    p.set_defaults(func=cmd_call)

    p = sub.add_parser(
        "ping",
        help="connect to a node and time round trips of its _heartbeat method",
        description="Connect to NODE_ID at ADDRESS (the handshake checks the id) and call the framework "
        "method _heartbeat COUNT times, printing each round-trip time. Without NODE_ID, connect to "
        "whichever node answers there and print its id (from its handshake reply; with a token, "
        "proved by its knowledge of the secret). Exits 1 unless every ping is answered by that node.",
        epilog="example:\n"
        "  $ node-comm ping 127.0.0.1:50051 --count 2\n"
        "  connected to node 'worker' at 127.0.0.1:50051 in 4.1 ms\n"
        "  seq  status  rtt ms\n"
        "  ---  ------  ------\n"
        "  1    alive   0.91\n"
        "  2    alive   0.62\n"
        "  2/2 answered, rtt min/avg/max = 0.62/0.77/0.91 ms",
        formatter_class=raw,
    )
    p.add_argument("address", metavar="ADDRESS", help="host:port of the node")
    p.add_argument(
        "node_id",
        metavar="NODE_ID",
        nargs="?",
        help="the id of the node there (the handshake checks it); default: whichever node answers",
    )
    p.add_argument("--count", "-c", type=int, default=3, metavar="N", help="pings to send (default 3)")
    p.add_argument("--interval", type=float, default=0.2, metavar="S", help="seconds between pings (default 0.2)")
    p.add_argument("--timeout", type=float, default=5.0, metavar="S", help="seconds per ping (default 5)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    _common(p)
    p.set_defaults(func=cmd_ping)

    p = sub.add_parser(
        "health",
        help="query the standard gRPC health service of a node",
        description="Ask grpc.health.v1.Health/Check at ADDRESS. Exits 0 when the status is SERVING, "
        "1 otherwise (NOT_SERVING while stopping, unreachable, unknown service).",
        epilog="example:\n  $ node-comm health 127.0.0.1:50051\n  127.0.0.1:50051 (server): SERVING",
        formatter_class=raw,
    )
    p.add_argument("address", metavar="ADDRESS", help="host:port of the node")
    p.add_argument(
        "--service",
        default="",
        help="service name to check (default '': the whole server; node_comm.v1.NodeComm is the node's own service)",
    )
    p.add_argument("--timeout", type=float, default=5.0, metavar="S", help="seconds to wait (default 5)")
    p.add_argument("--config", metavar="FILE", help="take TLS settings from this node config")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=cmd_health)
