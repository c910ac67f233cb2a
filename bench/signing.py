"""What the ``auth`` interceptor's signing costs: signed vs unsigned small calls, same run, interleaved.

Memory transport (the worst case: nothing else costs much, so the HMACs show fully) and gRPC over
127.0.0.1 with both nodes in this process. The signed pairs run ``auth`` on both nodes, which signs
the request and the reply and verifies both (4 HMAC-SHA256, a nonce, a replay-cache entry per call);
``+payload`` also hashes the payload; ``requests only`` leaves replies unsigned
(``sign_responses: false``); ``no-op interceptor`` is the cost of having any interceptor at all.

The handshake pair measures ``connect()`` + ``disconnect()`` over gRPC with the shared-secret
challenge-response (``transport.grpc.token``: one more round trip and four HMACs) against the plain
handshake.
"""

from __future__ import annotations

from typing import Any

from node_comm import Interceptor, InterceptorConfig, Node, NodeConfig, TransportConfig

from .common import Settings, interleave, log, seq_loop, small_payload
from .report import Results

TOKEN = "bench-signing-token"


class NoOp(Interceptor):
    """Passes every message on: the chain's own cost, without signing."""


async def echo(payload: Any, ctx: Any) -> Any:
    return payload


def _config(node_id: str, mode: str, listen: bool, interceptors: list[InterceptorConfig]) -> NodeConfig:
    if mode == "memory":
        transport = TransportConfig(mode="memory")
    else:
        from node_comm import GrpcTransportConfig

        transport = TransportConfig(mode="grpc", grpc=GrpcTransportConfig(host="127.0.0.1", port=0 if listen else None))
    return NodeConfig(node_id=node_id, transport=transport, interceptors=interceptors)


def _caller(client: Node, target: str) -> Any:
    call = client.call

    async def one(i: int) -> Any:
        return await call(target, "echo", small_payload(i))

    return one


async def _pair(mode: str, tag: str, interceptors: list[InterceptorConfig]) -> tuple[Node, Node]:
    server = Node(f"sig-{mode}-{tag}-srv", _config(f"sig-{mode}-{tag}-srv", mode, True, interceptors))
    client = Node(f"sig-{mode}-{tag}-cli", _config(f"sig-{mode}-{tag}-cli", mode, False, interceptors))
    server.register("echo", echo)
    if tag == "no-op":
        server.interceptors.add(NoOp())
        client.interceptors.add(NoOp())
    await server.start()
    await client.start()
    await client.connect(server.node_id, server.address)
    return server, client


async def run(settings: Settings, res: Results) -> None:
    await run_handshake(settings, res)
    log("auth signing vs unsigned calls ...")
    variants: dict[str, list[InterceptorConfig]] = {
        "unsigned": [],
        "no-op interceptor": [],
        "signed": [InterceptorConfig("auth", {"token": TOKEN})],
        "signed+payload": [InterceptorConfig("auth", {"token": TOKEN, "sign_payload": True})],
        "signed, requests only": [InterceptorConfig("auth", {"token": TOKEN, "sign_responses": False})],
    }
    tags = {
        "unsigned": "plain",
        "no-op interceptor": "no-op",
        "signed": "signed",
        "signed+payload": "payload",
        "signed, requests only": "requests",
    }
    for mode in ("memory", "grpc"):
        pairs: dict[str, tuple[Node, Node]] = {}
        try:
            for name, chain in variants.items():
                if mode == "grpc" and name not in ("unsigned", "signed"):
                    continue  # the other variants cost the same CPU on either transport
                pairs[name] = await _pair(mode, tags[name], chain)

            calls = {name: _caller(c, s.node_id) for name, (s, c) in pairs.items()}
            for name, first in calls.items():
                assert await first(1) == small_payload(1), name
            samples = await interleave(
                {name: (lambda one=one: seq_loop(one, settings.seconds)) for name, one in calls.items()},
                settings.rounds,
            )
            figs = {name: res.figure(f"signing.{mode}", name, s, "calls/s") for name, s in samples.items()}
            for name in figs:
                if name != "unsigned":
                    res.ratio(f"{mode} seq calls/s, {name}", figs[name], figs["unsigned"], None)
            if "no-op interceptor" in figs:
                res.ratio(f"{mode} seq calls/s, signed vs no-op", figs["signed"], figs["no-op interceptor"], None)
        finally:
            for server, client in pairs.values():
                await client.stop(grace=0)
                await server.stop(grace=0)


async def run_handshake(settings: Settings, res: Results) -> None:
    """connect + disconnect per second over gRPC: challenge-response (token) vs the plain handshake."""
    from node_comm import GrpcTransportConfig

    log("handshake with and without the shared-secret challenge-response ...")
    made: list[Node] = []

    async def node(node_id: str, port: int | None, token: str | None) -> Node:
        config = NodeConfig(
            node_id=node_id,
            transport=TransportConfig(mode="grpc", grpc=GrpcTransportConfig(host="127.0.0.1", port=port, token=token)),
        )
        n = Node(node_id, config)
        await n.start()
        made.append(n)
        return n

    try:
        loops = {}
        for name, token in (("plain handshake", None), ("challenge-response", TOKEN)):
            server = await node(f"hs-{len(made)}-srv", 0, token)
            client = await node(f"hs-{len(made)}-cli", None, token)

            async def one(i: int, client: Node = client, server: Node = server) -> None:
                await client.connect(server.node_id, server.address)
                await client.disconnect(server.node_id)

            loops[name] = one
        samples = await interleave(
            {name: (lambda one=one: seq_loop(one, settings.seconds)) for name, one in loops.items()},
            settings.rounds,
        )
        figs = {name: res.figure("signing.handshake", name, s, "connects/s") for name, s in samples.items()}
        res.ratio(
            "grpc connect+disconnect/s, challenge-response vs plain",
            figs["challenge-response"],
            figs["plain handshake"],
            None,
        )
    finally:
        for n in made:
            await n.stop(grace=0)
