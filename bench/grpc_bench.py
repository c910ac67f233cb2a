"""gRPC transport (server node in another process) vs raw grpc.aio unary and raw bidi-stream echo."""

from __future__ import annotations

from typing import Any

from .common import ServerProcess, Settings, conc_loop, interleave, log, seq_loop, small_payload
from .rawgrpc import BidiClient, UnaryClient
from .report import Results
from .server import grpc_node_config

SERVER_ID = "bench-srv"


async def client_node(node_id: str, address: str | None, why: str | None) -> tuple[Any, str | None]:
    """A dial-only node-comm grpc node connected to the server node; (node, None) or (None, why)."""
    if address is None:
        return None, why or "grpc transport not available"
    from node_comm import Node

    node = Node(node_id, grpc_node_config(node_id, None))
    try:
        await node.start()
        await node.connect(SERVER_ID, address)
    except NotImplementedError as exc:
        await node.stop()
        return None, f"grpc transport not available ({exc})"
    return node, None


async def run(settings: Settings, res: Results) -> None:
    log("gRPC transport vs raw grpc.aio unary / bidi ...")
    srv = ServerProcess("bench.server")
    try:
        info = await srv.ready()
        unary = UnaryClient(info["raw"])
        bidi = BidiClient(info["raw"])
        node, why = await client_node("bench-cli", info["node"], info["node_error"])
        try:
            assert await unary.call(small_payload(1)) == small_payload(1)
            assert await bidi.call(small_payload(2)) == small_payload(2)

            async def u(i: int) -> Any:
                return await unary.call(small_payload(i))

            async def b(i: int) -> Any:
                return await bidi.call(small_payload(i))

            systems_seq = {
                "raw unary": lambda: seq_loop(u, settings.seconds),
                "raw bidi": lambda: seq_loop(b, settings.seconds),
            }
            c = settings.concurrency
            systems_conc = {
                "raw unary": lambda: conc_loop(u, settings.seconds, c),
                "raw bidi": lambda: conc_loop(b, settings.seconds, c),
            }
            if node is not None:
                call = node.call

                async def n(i: int) -> Any:
                    return await call(SERVER_ID, "echo", small_payload(i))

                assert await n(3) == small_payload(3)
                systems_seq = {"node-comm": lambda: seq_loop(n, settings.seconds), **systems_seq}
                systems_conc = {"node-comm": lambda: conc_loop(n, settings.seconds, c), **systems_conc}
            seq = await interleave(systems_seq, settings.rounds)
            figs = {k: res.figure("grpc.seq", k, v, "calls/s") for k, v in seq.items()}
            conc = await interleave(systems_conc, settings.rounds)
            cfigs = {k: res.figure("grpc.conc64", k, v, "calls/s") for k, v in conc.items()}
            if node is not None:
                res.ratio("grpc seq calls/s", figs["node-comm"], figs["raw bidi"], 1.0)
                res.ratio("grpc seq calls/s", figs["node-comm"], figs["raw unary"], None)
                res.ratio(f"grpc {c}-concurrent calls/s", cfigs["node-comm"], cfigs["raw unary"], 5.0)
                res.ratio(f"grpc {c}-concurrent calls/s", cfigs["node-comm"], cfigs["raw bidi"], None)
            else:
                reason = why or "grpc transport not available"
                res.skip("grpc seq calls/s", reason, figs["raw bidi"])
                res.skip(f"grpc {c}-concurrent calls/s", reason, cfigs["raw unary"])
            res.ratio("(baseline) raw bidi / raw unary, seq", figs["raw bidi"], figs["raw unary"], None)
            res.ratio(f"(baseline) raw bidi / raw unary, {c}-conc", cfigs["raw bidi"], cfigs["raw unary"], None)
        finally:
            if node is not None:
                await node.stop(grace=0)
            await bidi.close()
            await unary.close()
    finally:
        srv.close()
