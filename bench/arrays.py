"""numpy weights over gRPC: a 64 MiB dict of float32 arrays echoed with ``pickle`` (protocol 5,
arrays out-of-band), the old in-band pickle, the ``numpy`` serializer, and ``raw`` with the same
bytes, against raw grpc.aio unary of those bytes. Paired rounds; MB/s counts the payload once per
call (as ``large`` does); peak RSS of both processes beside."""

from __future__ import annotations

from typing import Any

from .arrays_server import METHODS, SERVER_ID, inband_pickle, node_config
from .common import ServerProcess, Settings, interleave, log
from .large import _round
from .rawgrpc import UnaryClient
from .report import Results

MIB = 1 << 20
SIZE = 64 * MIB
LAYERS = 16  # 16 arrays of 4 MiB, as a small model's state dict


def weights() -> dict[str, Any]:
    import numpy as np

    n = SIZE // LAYERS // 4
    return {f"layer{i}.weight": np.full(n, i, dtype=np.float32).reshape(-1, 1024) for i in range(LAYERS)}


async def run(settings: Settings, res: Results) -> None:
    log("numpy weights over gRPC (pickle, numpy, raw) ...")
    try:
        import numpy as np
    except ImportError:
        res.skip("grpc 64MiB numpy echo", "numpy is not installed (pip install 'node-comm-serializers[numpy]')")
        return
    from node_comm import Node

    srv = ServerProcess("bench.arrays_server")
    try:
        info = await srv.ready()
        unary = UnaryClient(info["raw"])
        node = Node("bench-arrays-cli", node_config("bench-arrays-cli", None))
        node.serializers.register(inband_pickle())
        await node.start()
        try:
            await node.connect(SERVER_ID, info["node"])
            tree = weights()
            blob = b"".join(memoryview(a).cast("B") for a in tree.values())  # the same bytes, flat

            def caller(ser: str) -> Any:
                method = METHODS[ser]
                payload = blob if ser == "raw" else tree

                async def echo(_: Any) -> bytes:
                    out = await node.call(SERVER_ID, method, payload, serializer=ser, timeout=600)
                    if ser != "raw":
                        assert np.array_equal(out["layer3.weight"][:1], tree["layer3.weight"][:1])
                        return blob  # _round checks the length of what came back
                    return out  # type: ignore[no-any-return]

                return echo

            async def raw_echo(d: bytes) -> bytes:
                return await unary.echo_bytes(d)

            systems: dict[str, Any] = {
                "pickle": caller("pickle"),
                "pickle in-band (before)": caller("pickle-inband"),
                "numpy": caller("numpy"),
                "raw": caller("raw"),
                "raw unary": raw_echo,
            }
            for echo in systems.values():  # warm up: connections, first big buffers
                await echo(blob)
            calls = 1 if settings.quick else 2
            rounds = max(3, settings.rounds - 2)
            out = await interleave(
                {k: (lambda e=e: _round(e, blob, 0.0, calls, srv.pid)) for k, e in systems.items()},
                rounds,
                warmup=False,
            )
            figs = {k: res.figure("arrays.64MiB", k, v, "MB/s", size=SIZE) for k, v in out.items()}
            res.ratio("grpc 64MiB numpy echo: pickle vs raw unary", figs["pickle"], figs["raw unary"], 1.5)
            res.ratio("grpc 64MiB numpy echo: numpy vs raw unary", figs["numpy"], figs["raw unary"], 1.5)
            res.ratio("grpc 64MiB numpy echo: pickle vs node-comm raw", figs["pickle"], figs["raw"], 0.9)
            res.ratio("grpc 64MiB numpy echo: numpy vs node-comm raw", figs["numpy"], figs["raw"], 0.9)
            res.ratio(
                "grpc 64MiB numpy echo: pickle vs in-band pickle", figs["pickle"], figs["pickle in-band (before)"], None
            )
        finally:
            await node.stop(grace=0)
            await unary.close()
    finally:
        srv.close()
