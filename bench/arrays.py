"""numpy weights: a 64 MiB dict of float32 arrays (16 x 4 MiB) echoed over gRPC with ``pickle``
(protocol 5, arrays out-of-band), the old in-band pickle, the ``numpy`` serializer, and ``raw`` with
the same bytes, against raw grpc.aio unary of those bytes; and the codecs alone, in this process.
Paired rounds; MB/s counts the payload once per call (as ``large`` does); peak RSS beside."""

from __future__ import annotations

import gc
import pickle
import time
from typing import Any

from .arrays_server import METHODS, SERVER_ID, inband_pickle, node_config
from .common import Sample, ServerProcess, Settings, interleave, log
from .large import _round, rss_budget
from .rawgrpc import UnaryClient
from .rawtcp import TcpEchoClient
from .report import Results

MIB = 1 << 20
SIZE = 64 * MIB
LAYERS = 16


def weights(size: int = SIZE) -> dict[str, Any]:
    import numpy as np

    n = size // LAYERS // 4
    return {f"layer{i}.weight": np.full(n, i, dtype=np.float32).reshape(-1, 1024) for i in range(LAYERS)}


class _Protocol4:
    """What numpy users often do by hand: ``pickle.dumps(obj, protocol=4)``."""

    def serialize(self, obj: Any) -> bytes:
        return pickle.dumps(obj, protocol=4)

    def deserialize(self, data: Any) -> Any:
        return pickle.loads(data)


async def _codecs(tree: Any, rounds: int, res: Results) -> None:
    """Encode + decode alone (no transport, far less noise): decoding over a ``bytearray``, as the
    gRPC transport hands payloads above ``chunk_size``."""
    from node_comm_serializers import NumpySerializer, PickleSerializer

    codecs = {
        "pickle": PickleSerializer(),
        "pickle in-band (before)": inband_pickle(),
        "pickle protocol 4": _Protocol4(),
        "numpy": NumpySerializer(),
    }

    def measure(codec: Any) -> Any:
        async def one() -> Sample:
            gc.collect()
            t0 = time.perf_counter()
            data = codec.serialize(tree)
            t1 = time.perf_counter()
            buf = bytearray(data)  # what the transport hands over (not timed)
            del data
            t2 = time.perf_counter()
            back = codec.deserialize(buf)
            t3 = time.perf_counter()
            del back, buf
            enc, dec = t1 - t0, t3 - t2
            return Sample(SIZE / (enc + dec) / 1e6, extra={"encode_ms": enc * 1e3, "decode_ms": dec * 1e3})

        return one

    out = await interleave({k: measure(c) for k, c in codecs.items()}, rounds)
    figs = {k: res.figure("arrays.codec.64MiB", k, v, "MB/s", size=SIZE) for k, v in out.items()}
    base = figs["pickle in-band (before)"]
    for k in ("pickle", "numpy", "pickle protocol 4"):
        f = figs[k]
        res.ratio(
            f"64MiB numpy encode+decode: {k} vs in-band pickle",
            f,
            base,
            None,
            note=f"encode {f['encode_ms']:.0f} ms, decode {f['decode_ms']:.1f} ms",
        )


async def _memory_budget(node: Any, server_pid: int, res: Results) -> None:
    """Peak RSS above idle of a 256 MiB echo, pickle-5 arrays and raw bytes, each side (issue 9's
    budget: <= 1.5x the payload). The caller's payload exists before the idle mark: it is the
    user's. Both sides give freed memory back to the OS first, so the mark is what is live. Two
    rounds each, interleaved; the median is shown."""
    size = 256 * MIB
    tree = weights(size)
    blob = b"".join(memoryview(a).cast("B") for a in tree.values())

    async def pickle_echo(_: Any) -> Any:
        out = await node.call(SERVER_ID, METHODS["pickle"], tree, serializer="pickle", timeout=600)
        assert out["layer3.weight"][0, 0] == 3
        del out
        return blob  # _round checks the length of what came back

    async def raw_echo(d: bytes) -> Any:
        return await node.call(SERVER_ID, METHODS["raw"], d, serializer="raw", timeout=600)

    async def trim_server() -> None:
        await node.call(SERVER_ID, "bench_trim", None, timeout=60)

    out = await interleave(
        {
            "pickle": lambda: _round(pickle_echo, blob, 0.0, 1, server_pid, trim_server),
            "raw": lambda: _round(raw_echo, blob, 0.0, 1, server_pid, trim_server),
        },
        2,
        warmup=False,
    )
    for k, samples in out.items():
        fig = res.figure("arrays.256MiB", k, samples, "MB/s", size=size)
        what = "pickle-5 arrays" if k == "pickle" else "raw bytes"
        rss_budget(res, f"grpc 256MiB {what} echo: peak RSS above idle / P, worst side", fig, size)


async def run(settings: Settings, res: Results) -> None:
    log("numpy weights: codecs, and echo over gRPC (pickle, numpy, raw) ...")
    try:
        import numpy as np
    except ImportError:
        res.skip("64MiB numpy echo", "numpy is not installed (pip install 'node-comm-serializers[numpy]')")
        return
    from node_comm import Node

    tree = weights()
    await _codecs(tree, settings.rounds, res)
    srv = ServerProcess("bench.arrays_server")
    try:
        info = await srv.ready()
        unary = UnaryClient(info["raw"])
        tcp = TcpEchoClient(info["tcp"])
        node = Node("bench-arrays-cli", node_config("bench-arrays-cli", None))
        node.serializers.register(inband_pickle())
        await node.start()
        try:
            await node.connect(SERVER_ID, info["node"])
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
                "raw TCP": tcp.echo,
            }
            for echo in systems.values():  # warm up: connections, first big buffers
                await echo(blob)
            calls = 1 if settings.quick else 2
            rounds = 3 if settings.quick else settings.rounds
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
            for ser in ("pickle", "numpy"):
                res.ratio(f"grpc 64MiB numpy echo: {ser} vs the loopback ceiling", figs[ser], figs["raw TCP"], 0.3)
            res.ratio(
                "grpc 64MiB numpy echo: pickle vs in-band pickle", figs["pickle"], figs["pickle in-band (before)"], None
            )
            await _memory_budget(node, srv.pid, res)
        finally:
            await node.stop(grace=0)
            await unary.close()
            await tcp.close()
    finally:
        srv.close()
