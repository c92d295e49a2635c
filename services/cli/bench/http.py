"""A minimal keep-alive HTTP/1.1 JSON client on asyncio streams, for benchmarks that drive the gateway.

The CLI must not depend on test-only packages, and a benchmark client should cost little next to
what it measures: one connection per concurrent client, requests one after the other on it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import urlparse

import msgspec

_decoder = msgspec.json.Decoder(dict[str, Any])


class HttpError(RuntimeError):
    """The server closed the connection or answered something that is not HTTP/1.1 with a length."""


class JsonClient:
    def __init__(self, base_url: str) -> None:
        parsed = urlparse(base_url)
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 80
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> JsonClient:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.wait_closed()

    async def post(self, path: str, body: object) -> tuple[int, dict[str, Any]]:
        """POST `body` as JSON; returns the status and the decoded JSON answer."""
        payload = msgspec.json.encode(body)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        status, data = await self._exchange(head.encode() + payload)
        return status, _decoder.decode(data) if data else {}

    async def get(self, path: str) -> tuple[int, bytes]:
        """GET `path` (with its query string); returns the status and the raw answer."""
        return await self._exchange(f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode())

    async def _exchange(self, request: bytes) -> tuple[int, bytes]:
        assert self._reader is not None and self._writer is not None
        self._writer.write(request)
        await self._writer.drain()
        status_line = await self._reader.readline()
        parts = status_line.split()
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise HttpError(f"not an HTTP answer: {status_line!r}")
        length = None
        while True:
            line = await self._reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length is None:
            raise HttpError("answer without Content-Length")
        return int(parts[1]), await self._reader.readexactly(length)
