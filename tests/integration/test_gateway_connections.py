"""Connections over real sockets: idle, slowloris and slow-body clients are closed, and held ones capped."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import msgspec
import pytest

from services.gateway.service import GatewayService
from shared.settings import Settings
from tests.conftest import running

HEADER_S = 0.5
BODY_S = 0.5
KEEPALIVE_S = 0.5
MAX_CONNECTIONS = 5
SLACK_S = 1.5
"""How much later than its deadline a connection may close on a loaded machine."""

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[GatewayService]:
    async with running(
        GatewayService,
        settings,
        gateway_header_timeout_s=HEADER_S,
        gateway_body_timeout_s=BODY_S,
        gateway_keepalive_s=KEEPALIVE_S,
        gateway_max_connections=MAX_CONNECTIONS,
    ) as service:
        yield service


async def connect(gateway: GatewayService) -> Connection:
    return await asyncio.open_connection("127.0.0.1", gateway.port)


async def closed_within(reader: asyncio.StreamReader, timeout: float) -> float:
    """Read until the server closes the connection; how long that took (fails after `timeout`).
    A reset counts as closed: a server closing while the client still sends makes its kernel reset."""
    started = time.monotonic()
    try:
        while await asyncio.wait_for(reader.read(65536), timeout):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - started


async def trickle(writer: asyncio.StreamWriter, data: bytes, every_s: float) -> None:
    """Send `data` a byte at a time (the client under test, not a synchronisation) until refused."""
    for byte in data:
        writer.write(bytes([byte]))
        try:
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.sleep(every_s)


def held(gateway: GatewayService) -> int:
    assert gateway._server is not None
    return len(gateway._server.server_state.connections)


async def test_a_connection_that_sends_nothing_is_closed_within_the_header_timeout(
    gateway: GatewayService,
) -> None:
    reader, writer = await connect(gateway)
    assert await closed_within(reader, HEADER_S + SLACK_S) >= HEADER_S * 0.8
    writer.close()


async def test_a_slowloris_client_is_closed_within_the_header_timeout(gateway: GatewayService) -> None:
    reader, writer = await connect(gateway)
    head = b"GET /api/v1/agents HTTP/1.1\r\nHost: hive\r\n" + b"X-Slow: " + b"a" * 200 + b"\r\n\r\n"
    sending = asyncio.create_task(trickle(writer, head, every_s=0.02))
    took = await closed_within(reader, HEADER_S + SLACK_S)
    assert took >= HEADER_S * 0.8
    sending.cancel()
    writer.close()


async def test_a_slow_body_is_closed_within_the_body_timeout(gateway: GatewayService) -> None:
    reader, writer = await connect(gateway)
    body = b'{"task_type": "x", "name": "' + b"a" * 200 + b'"}'
    writer.write(
        b"POST /api/v1/orchestration/task/assign HTTP/1.1\r\nHost: hive\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    sending = asyncio.create_task(trickle(writer, body, every_s=0.02))
    took = await closed_within(reader, BODY_S + SLACK_S)
    assert took >= BODY_S * 0.8
    sending.cancel()
    writer.close()


async def test_a_kept_alive_connection_is_closed_once_idle_and_a_prompt_one_is_served(
    gateway: GatewayService,
) -> None:
    reader, writer = await connect(gateway)
    for _ in range(2):  # two requests on one connection, each well within its deadlines
        writer.write(b"GET /api/v1/agents HTTP/1.1\r\nHost: hive\r\n\r\n")
        status = await asyncio.wait_for(reader.readline(), 5)
        assert status.startswith(b"HTTP/1.1 200"), status
        headers = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        length = int(headers.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await asyncio.wait_for(reader.readexactly(length), 5)
    assert await closed_within(reader, KEEPALIVE_S + SLACK_S) >= KEEPALIVE_S * 0.8
    writer.close()


async def test_two_hundred_idle_connections_are_all_closed_and_their_descriptors_released(
    gateway: GatewayService,
) -> None:
    baseline = held(gateway)
    opened = []
    for _ in range(200):
        try:
            opened.append(await connect(gateway))
        except OSError:
            break
    assert len(opened) == 200
    await asyncio.wait_for(
        asyncio.gather(*(closed_within(reader, HEADER_S + SLACK_S * 3) for reader, _ in opened)),
        HEADER_S + SLACK_S * 4,
    )
    for _reader, writer in opened:
        writer.close()
    assert held(gateway) == baseline


async def test_a_connection_beyond_the_limit_is_answered_503_in_the_error_shape_and_closed(
    gateway: GatewayService,
) -> None:
    holding = [await connect(gateway) for _ in range(MAX_CONNECTIONS)]
    reader, writer = await connect(gateway)
    writer.write(b"GET /api/v1/agents HTTP/1.1\r\nHost: hive\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 5)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503"), head
    assert b"retry-after: 1" in head.lower()
    error = msgspec.json.decode(body)["error"]
    assert (
        error["status"] == 503
        and error["code"] == "unavailable"
        and "GATEWAY_MAX_CONNECTIONS" in error["message"]
    )
    writer.close()
    # Once the others are gone (each says it is done; the server closes it), a new one is served.
    for held_reader, holder in holding:
        holder.write_eof()
        await closed_within(held_reader, 5)
        holder.close()
    reader, writer = await connect(gateway)
    writer.write(b"GET /api/v1/agents HTTP/1.1\r\nHost: hive\r\nConnection: close\r\n\r\n")
    assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 200")
    writer.close()
