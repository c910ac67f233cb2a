"""The raw asyncio TCP echo that ``make bench`` measures the loopback ceiling with
(``bench/rawtcp.py``) returns every byte (a broken baseline would make every ratio against it
meaningless), and its server hangs up on a length past its bound instead of allocating it."""

from __future__ import annotations

import asyncio
import os

import pytest

from bench import rawtcp


@pytest.mark.parametrize("size", [0, 5, 3 * 1024 * 1024 + 7], ids=["empty", "tiny", "several-MiB"])
async def test_raw_tcp_echo_returns_every_byte(size: int) -> None:
    server, address = await rawtcp.start_tcp_server()
    client = rawtcp.TcpEchoClient(address)
    try:
        for _ in range(2):  # the second echo reuses both sides' buffers
            data = os.urandom(size)
            out = await asyncio.wait_for(client.echo(data), 30)
            assert bytes(out) == data
    finally:
        await client.close()
        server.close()


async def test_raw_tcp_server_hangs_up_on_an_oversize_length() -> None:
    server, address = await rawtcp.start_tcp_server()
    host, _, port = address.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write((rawtcp.MAX_MESSAGE + 1).to_bytes(8, "big"))
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed: nothing allocated or echoed
    finally:
        writer.close()
        server.close()
