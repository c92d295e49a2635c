"""HTTP connections with deadlines and a ceiling: no client holds a connection without using it.

uvicorn closes a connection idle between two requests (its keep-alive timeout) but waits forever
for a request that never starts or never ends: a client that opens connections and sends nothing
(idle), sends its headers a byte at a time (slowloris) or its body so (slow body) holds each one,
and a file descriptor, for as long as it likes. This protocol gives each request a deadline:
its head must be complete ``header_timeout_s`` after the connection opened (or after the first byte
of the next request on a kept-alive connection), its body ``body_timeout_s`` after the head; past a
deadline the connection is closed. While the handler works there is no deadline (that is the
application's time). A connection opened while ``max_connections`` are held gets a 503 in the
API's error shape for its request and is closed.

It extends uvicorn's h11 protocol at the points uvicorn itself uses (``connection_made``,
``data_received``, ``on_response_complete``, ``connection_lost``, ``self.conn``, ``self.app``):
``tests/integration/test_gateway_connections.py`` notices if a uvicorn release moves them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, ClassVar, Literal

import h11
import msgspec
from uvicorn.protocols.http.h11_impl import H11Protocol

from services.gateway.schemas import ErrorBody, ErrorResponse
from shared.logging import get_logger

log = get_logger("hive.gateway")

Phase = Literal["head", "body", "handler"]
"""Where a request is: its head arriving, its body arriving, or in the handler's hands."""

ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]


def phase_of(their_state: object) -> Phase:
    """The phase of the client's side of the connection, as h11 sees it after the bytes so far."""
    if their_state is h11.IDLE:
        return "head"
    if their_state is h11.SEND_BODY:
        return "body"
    return "handler"


def over_capacity(max_connections: int) -> ASGIApp:
    """The application a connection beyond the ceiling gets: 503, one error shape, then closed."""
    body = msgspec.json.encode(
        ErrorResponse(
            error=ErrorBody(
                status=503,
                code="unavailable",
                message=f"the gateway holds {max_connections} connections already "
                "(GATEWAY_MAX_CONNECTIONS); retry later",
            )
        )
    )
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
    ]

    async def app(
        _scope: MutableMapping[str, Any],
        _receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


class DeadlineProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline on each request's head and body, and a ceiling."""

    header_timeout_s: ClassVar[float] = 10.0
    body_timeout_s: ClassVar[float] = 30.0
    max_connections: ClassVar[int] = 1000

    _deadline: asyncio.TimerHandle | None = None
    _phase: Phase = "head"

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        held = len(self.connections)
        if held > self.max_connections:
            self.app = over_capacity(self.max_connections)
        if held == self.max_connections + 1:  # once per crossing, not once per refused connection
            log.warning("gateway_connections_over_limit", held=held, limit=self.max_connections)
        self._arm("head")

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and phase_of(self.conn.their_state) == "head":
            self._arm("head")  # the first byte of the next request on a kept-alive connection
        super().data_received(data)
        phase = phase_of(self.conn.their_state)
        if phase != self._phase:
            if phase == "handler":
                self._disarm()
                self._phase = phase
            else:
                self._arm(phase)

    def on_response_complete(self) -> None:
        # Idle until the next request's first byte: uvicorn's keep-alive timeout watches that.
        self._disarm()
        self._phase = "head"
        super().on_response_complete()
        # A pipelined request already (partly) here has started: it gets its deadline now.
        phase = phase_of(self.conn.their_state)
        if phase == "body" or (phase == "head" and self.conn.trailing_data[0]):
            self._arm(phase)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, phase: Phase) -> None:
        self._disarm()
        self._phase = phase
        timeout = self.header_timeout_s if phase == "head" else self.body_timeout_s
        self._deadline = self.loop.call_later(timeout, self._expired, phase)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, phase: Phase) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        log.debug("gateway_connection_timed_out", phase=phase, client=self.client)
        self.transport.close()


def deadline_protocol(
    header_timeout_s: float, body_timeout_s: float, max_connections: int
) -> type[H11Protocol]:
    """The protocol class uvicorn is given (``http=``), with these settings."""
    return type(
        "ConfiguredDeadlineProtocol",
        (DeadlineProtocol,),
        {
            "header_timeout_s": header_timeout_s,
            "body_timeout_s": body_timeout_s,
            "max_connections": max_connections,
        },
    )
