"""The live stream: every event the gateway applies, and every metrics sample, as Server-Sent Events.

Fed from what the gateway already does (its projection's listener, the monitor's samples), so an
open stream costs no reading of the log: each event is encoded once, however many browsers watch.
A subscriber holds a bounded queue; one that falls ``QUEUE_SIZE`` frames behind loses them and is
sent ``resync`` instead (its page reloads what it shows), so a slow client never holds the gateway's
memory. Every stream starts with ``hello`` (the gateway's sequence: the page reloads what it shows
as of then), carries ``: keep-alive`` comments every ``KEEPALIVE_S`` and ends when the gateway stops.

Frames (``event:`` names): ``hello`` ``{"seq"}``; ``event`` ``{"seq", "subject", "type", "ts",
"aggregate", "id", "event"}`` (``event`` is null and ``truncated`` true beyond ``MAX_EVENT_BYTES``:
read it at ``GET /api/v1/events``), with the sequence as the SSE ``id``; ``sample`` a metrics
history sample; ``resync`` ``{"seq", "reason"}``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

import msgspec

from services.gateway.history import HistorySample
from services.gateway.tickets import TICKET_TTL_S, issue_ticket
from shared.recorded import Recorded
from shared.replay import TimelineFilter

QUEUE_SIZE: Final = 2_000
"""Frames a subscriber may fall behind before it is told to resync."""
KEEPALIVE_S: Final = 15.0
MAX_EVENT_BYTES: Final = 16_384
"""An event body larger than this is streamed without its body (results can be large)."""
RETRY_MS: Final = 2_000
"""What a browser's EventSource waits before reconnecting by itself."""


class StreamedEvent(msgspec.Struct, kw_only=True):
    seq: int
    subject: str
    type: str
    ts: float
    aggregate: str
    id: str
    event: dict[str, Any] | None
    truncated: bool = False


def sse_frame(kind: str, data: bytes, event_id: int | None = None) -> bytes:
    """One Server-Sent Event (`data` is one line of JSON: msgspec writes no newline)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\n".encode() + b"data: " + data + b"\n\n"


def event_frame(recorded: Recorded) -> bytes:
    event = recorded.event
    body = msgspec.json.encode(event)
    streamed = StreamedEvent(
        seq=recorded.seq,
        subject=recorded.subject,
        type=event.type_name(),
        ts=event.ts,
        aggregate=event.AGGREGATE,
        id=event.aggregate_id,
        event=msgspec.json.decode(body) if len(body) <= MAX_EVENT_BYTES else None,
        truncated=len(body) > MAX_EVENT_BYTES,
    )
    return sse_frame("event", msgspec.json.encode(streamed), recorded.seq)


class Subscription:
    """One open stream: the frames waiting for it, and whether it lost some or must end."""

    def __init__(self, selection: TimelineFilter, queue_size: int) -> None:
        self.selection = selection
        self.queue_size = queue_size
        self.frames: deque[bytes] = deque()
        self.lost = False
        self.closed = False
        self.ready = asyncio.Event()

    def offer(self, frame: bytes) -> None:
        if self.lost or self.closed:
            return
        if len(self.frames) >= self.queue_size:
            self.frames.clear()
            self.lost = True
        else:
            self.frames.append(frame)
        self.ready.set()

    def close(self) -> None:
        self.closed = True
        self.ready.set()


class StreamTicket(msgspec.Struct, kw_only=True):
    ticket: str
    """Pass as ``?ticket=`` to ``GET /api/v1/stream`` (a browser's EventSource sends no header)."""
    expires_ts: int
    """Unix seconds; the ticket only opens a stream before then (an open stream stays open)."""
    ttl_s: float


class StreamHub:
    """Every open stream of this gateway (the desk of the stream routes); `current_seq` says where
    the gateway stands, `ticket_secret` (HIVE_API_TOKEN) signs the tickets that open a stream."""

    def __init__(
        self,
        current_seq: Callable[[], int],
        ticket_secret: str = "",
        *,
        queue_size: int = QUEUE_SIZE,
        keepalive_s: float = KEEPALIVE_S,
    ) -> None:
        self.current_seq = current_seq
        self.ticket_secret = ticket_secret
        self.queue_size = queue_size
        self.keepalive_s = keepalive_s
        self.subscriptions: set[Subscription] = set()
        self.closed = False

    def ticket(self, now: float) -> StreamTicket:
        ticket, expires = issue_ticket(self.ticket_secret, now)
        return StreamTicket(ticket=ticket, expires_ts=expires, ttl_s=TICKET_TTL_S)

    def on_event(self, recorded: Recorded) -> None:
        """The projection's listener: offer the event to every stream whose filter it passes."""
        if not self.subscriptions:
            return
        frame: bytes | None = None
        for subscription in self.subscriptions:
            if subscription.selection.matches(recorded):
                frame = frame or event_frame(recorded)
                subscription.offer(frame)

    def on_sample(self, sample: HistorySample) -> None:
        """The monitor's listener: every stream gets each metrics sample."""
        if not self.subscriptions:
            return
        frame = sse_frame("sample", msgspec.json.encode(sample))
        for subscription in self.subscriptions:
            subscription.offer(frame)

    def close(self) -> None:
        """End every stream (before the HTTP server stops: it waits for open responses)."""
        self.closed = True
        for subscription in self.subscriptions:
            subscription.close()

    async def frames(self, selection: TimelineFilter) -> AsyncIterator[bytes]:
        """The frames of one stream until the gateway stops or the client goes away."""
        subscription = Subscription(selection, self.queue_size)
        if self.closed:
            return
        self.subscriptions.add(subscription)
        try:
            yield f"retry: {RETRY_MS}\n\n".encode()
            yield sse_frame("hello", msgspec.json.encode({"seq": self.current_seq()}))
            while not subscription.closed:
                try:
                    await asyncio.wait_for(subscription.ready.wait(), self.keepalive_s)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                subscription.ready.clear()
                if subscription.lost:
                    subscription.lost = False
                    reason = f"this stream fell more than {self.queue_size} frames behind"
                    resync = {"seq": self.current_seq(), "reason": reason}
                    yield sse_frame("resync", msgspec.json.encode(resync))
                    continue
                while subscription.frames:
                    yield subscription.frames.popleft()
        finally:
            self.subscriptions.discard(subscription)
