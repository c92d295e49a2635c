"""The event bus: JetStream connection, streams, appends with optimistic concurrency, reads.

Knows nothing of the domain beyond "an event has a subject and an id": services decide, the bus
stores. Every append carries ``Nats-Msg-Id`` (retries de-duplicate) and, when the caller states
what it last saw of the aggregate, ``Nats-Expected-Last-Subject-Sequence`` with the aggregate's
wildcard as ``Nats-Expected-Last-Subject-Sequence-Subject``: a stale append is refused by the
server (err_code 10071) and surfaces as ``ConcurrencyConflict``.

Agents use the bus too, so it loads no server-side package: metrics are a service's object
handed in, and tracing a hook (``trace_headers``) the service shell passes; without one, appends
carry no trace context.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.client import _validate_subject
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from shared.denials import Denials
from shared.domain.message_ids import dead_letter_msg_id
from shared.duplicates import same_decision
from shared.errors import HiveError
from shared.events import Event, encode_event, subject_of, too_deep_field
from shared.ids import check_id, new_id
from shared.logging import get_logger
from shared.natsclient import (
    HiveNatsClient,
    deliver_directly,
    deliver_stored,
    inline_status,
    pending_after,
    read_headers_lazily,
    stream_seq,
)
from shared.nesting import MAX_NESTING
from shared.permissions import inbox_prefix, parse_violation
from shared.pull import Pace, StoredHandle, consume_forever
from shared.recorded import Recorded, Undecodable, decode_recorded
from shared.subjects import (
    ALL_DLQ,
    ALL_EVENTS,
    DLQ_STREAM,
    EVENTS_STREAM,
    HEALTH_PING,
    aggregate_subjects,
    dlq_subject,
)

if TYPE_CHECKING:  # a service's metrics, handed in: the bus itself loads no Prometheus client
    from shared.metrics import ServiceMetrics

TraceHeaders = Callable[[dict[str, str]], object]
"""Adds the current trace context to an append's headers (``shared.telemetry.inject_headers``)."""

WRONG_LAST_SEQUENCE = 10071
STREAM_NOT_FOUND = 10059

log = get_logger("hive.bus")


class ConcurrencyConflict(HiveError):
    """Somebody appended to the aggregate since we last looked: catch up and decide again."""

    def __init__(self, subject_filter: str, expected: int, detail: str = "") -> None:
        super().__init__(f"{subject_filter}: expected last sequence {expected} ({detail})")
        self.subject_filter = subject_filter
        self.expected = expected


class NatsAuthError(HiveError, PermissionError):
    """The server refused this connection's credentials (or their absence); the message says whose."""


class EventTooLarge(HiveError, ValueError):
    """An event larger than the NATS server accepts in one message: nothing was sent."""

    def __init__(self, event: Event, size: int, limit: int) -> None:
        super().__init__(
            f"{event.type_name()} of {event.AGGREGATE} {event.aggregate_id!r} takes {size} bytes; "
            f"the NATS server accepts at most {limit} in one message"
        )
        self.size = size
        self.limit = limit


class EventTooDeep(HiveError, ValueError):
    """An event whose payload or result nests deeper than every reader accepts: nothing was sent."""

    def __init__(self, event: Event, field: str) -> None:
        super().__init__(
            f"{event.type_name()} of {event.AGGREGATE} {event.aggregate_id!r}: field `{field}` nests "
            f"deeper than {MAX_NESTING} levels, which no reader of the log accepts"
        )
        self.field = field


NO_RESPONDERS = "503"
"""The status of a request nobody answers (a publish to a subject no stream stores)."""


class _StreamAck(msgspec.Struct):
    """JetStream's answer to a publish: where it stored the message, or why it did not."""

    seq: int = 0
    duplicate: bool = False
    error: dict[str, Any] | None = None


_ACK_DECODER = msgspec.json.Decoder(_StreamAck)


def _time_out(answered: asyncio.Future[Msg]) -> None:
    if not answered.done():
        answered.set_exception(nats.errors.TimeoutError())


class AppendResult(NamedTuple):
    seq: int
    duplicate: bool


def _acknowledged(msg: Msg | bytes) -> AppendResult:
    """The stream's acknowledgement of a publish (a message, or the payload of one without headers);
    raises what nats-py's ``publish`` raises."""
    if isinstance(msg, bytes):
        data = msg
    else:
        if inline_status(msg.headers) == NO_RESPONDERS:
            raise nats.js.errors.NoStreamResponseError
        data = msg.data
    ack = _ACK_DECODER.decode(data)
    if ack.error is not None:
        nats.js.errors.APIError.from_error(ack.error)  # raises the error's class
    return AppendResult(ack.seq, ack.duplicate)


_HEADER_KEY = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE_NEWLINES = str.maketrans({"\r": " ", "\n": " "})
_HEADER_NAMES: dict[str, bytes] = {}
"""Header names checked once, as they go on the wire (``<name>: ``)."""


def _header_name(key: str) -> bytes:
    name = _HEADER_NAMES.get(key)
    if name is None:
        stripped = key.strip()
        if not stripped:
            name = b""
        elif not _HEADER_KEY.fullmatch(stripped):
            raise nats.errors.BadHeaderError(stripped)
        else:
            name = stripped.encode() + b": "
        if len(_HEADER_NAMES) < 1024:
            _HEADER_NAMES[key] = name
    return name


def hpub_command(subject: str, reply: str, headers: dict[str, str], payload: bytes) -> bytes:
    """The ``HPUB`` command nats-py's ``publish`` writes for these arguments, byte for byte (the
    same checks and errors), with each header name's bytes built once."""
    _validate_subject(subject)
    lines = [b"NATS/1.0\r\n"]
    for key, value in headers.items():
        name = _header_name(key)
        if name:  # nats-py skips empty names
            value = value.strip()
            if "\r" in value or "\n" in value:  # (``translate`` with a table: ~2 µs per value)
                value = value.translate(_HEADER_VALUE_NEWLINES)
            lines.append(name + value.encode() + b"\r\n")
    lines.append(b"\r\n")
    header = b"".join(lines)
    size = len(header)
    return b"".join(
        (f"HPUB {subject} {reply} {size} {size + len(payload)}\r\n".encode(), header, payload, b"\r\n")
    )


_VALID_TOKENS: set[str] = set()
"""Ids and subject tokens found valid (``check_id``) by recent appends: an agent's id, an event
type, is checked once, not at each append."""
_VALID_TOKENS_MAX = 4096


def _valid_token(token: str) -> None:
    if len(_VALID_TOKENS) >= _VALID_TOKENS_MAX:
        _VALID_TOKENS.clear()
    _VALID_TOKENS.add(token)


class _PendingAppend:
    """An ``append_soon`` waiting for the server's answer (answered from the read loop)."""

    __slots__ = ("answered", "data", "event", "expected", "expiry", "guarded", "headers", "timeout")

    def __init__(
        self,
        event: Event,
        data: bytes,
        headers: dict[str, str],
        guarded: str,
        expected: int | None,
        timeout: float,
        answered: asyncio.Future[AppendResult],
    ) -> None:
        self.event = event
        self.data = data
        self.headers = headers
        self.guarded = guarded
        self.expected = expected
        self.timeout = timeout
        self.answered = answered
        self.expiry: asyncio.TimerHandle | None = None


class LogBounds(NamedTuple):
    """What the event stream holds now: its first and last sequence, and when it was created (a
    stream created anew starts again at 1: what was built from the old one no longer matches)."""

    first_seq: int
    last_seq: int
    created: str


DEAD_LETTER_DATA_MAX = 16_384
"""Bytes of the original message a dead letter carries (the stream keeps the whole at `stream_seq`)."""
DEAD_LETTER_REASON_MAX = 2_000
DLQ_DUPLICATE_WINDOW_S = 24 * 3600.0
"""A letter's id is ``dlq:<service>:<seq>``: a message is dead-lettered once per service however
often it is read again (redeliveries, several instances, a projection rebuilt) within this window."""


_STAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)")


def stored_time(stamp: str) -> float:
    """A ``Nats-Time-Stamp`` header (RFC 3339 with up to nanoseconds, which ``datetime`` does not
    read: ``2026-12-02T14:42:46.260284123Z``) as Unix seconds."""
    found = _STAMP.fullmatch(stamp)
    if found is None:
        raise ValueError(f"not a stored time: {stamp!r}")
    whole, fraction, zone = found.groups()
    offset = "+00:00" if zone == "Z" else zone
    seconds = datetime.fromisoformat(whole + offset).timestamp()
    return seconds + (float("0." + fraction) if fraction else 0.0)


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """What goes to ``hive.dlq.<service>``: the original bytes (as text, the first
    ``DEAD_LETTER_DATA_MAX``) and why they failed."""

    service: str
    reason: str
    subject: str
    stream_seq: int | None = None
    data: str
    ts: float
    size: int = 0
    """Bytes of the original message (``data`` holds at most ``DEAD_LETTER_DATA_MAX`` of them)."""


event_msg_seq = stream_seq
"""Stream sequence of a stored event as delivered (``shared.natsclient.stream_seq``)."""


def connection_key(nc: NatsClient) -> str:
    """``<server id>/<client id>`` of a live connection: how NATS disconnect advisories name it."""
    info = getattr(nc, "_server_info", None) or {}  # nats-py keeps the server's INFO here
    server_id = info.get("server_id", "")
    if nc.client_id is None or not server_id:
        return ""
    return f"{server_id}/{nc.client_id}"


class EventBus:
    """One NATS connection for one service instance."""

    def __init__(
        self,
        nc: NatsClient,
        service: str,
        metrics: ServiceMetrics | None = None,
        *,
        user: str | None = None,
        denials: Denials | None = None,
        trace_headers: TraceHeaders | None = None,
    ) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.service = service
        self.metrics = metrics
        self.user = user
        self.denials = denials
        self.trace_headers = trace_headers
        self._acks: dict[str, asyncio.Future[Msg] | _PendingAppend] = {}
        """Appends waiting for the server's answer, by the last token of their reply subject."""
        self._checks: set[asyncio.Future[AppendResult]] = set()
        """Duplicates under a shared key an ``append_soon`` checks (``_stored``)."""
        self._ack_prefix: str | None = None
        self._ack_opening = asyncio.Lock()
        self._ack_tokens = itertools.count(1)
        self.on_encoded: Callable[[Event, bytes], None] | None = None
        """Told of each event about to be appended, with its bytes (a service that reads its own
        appends back may keep them rather than decode them: ``services/router/reads.py``)."""
        self.last_appended = 0
        """The highest sequence an append through this bus was stored at (or found stored at): what
        this service's own reads must have applied to see its own writes (the gateway's reads)."""

    @classmethod
    async def connect(
        cls,
        url: str,
        service: str,
        *,
        name: str | None = None,
        metrics: ServiceMetrics | None = None,
        connect_timeout: float = 10.0,
        user: str | None = None,
        password: str | None = None,
        trace_headers: TraceHeaders | None = None,
    ) -> EventBus:
        """Connect with unlimited reconnects; connection trouble is logged, never printed.

        With `user`, replies arrive under ``_INBOX.<user>`` (the only inbox its permissions let it
        read), a refused publish raises PermissionDenied at once, and refused credentials raise
        NatsAuthError instead of being retried until `connect_timeout`.
        """
        event_log = log.bind(service=service)
        refused = asyncio.Event()
        denials = Denials() if user is not None else None

        async def on_error(exc: Exception) -> None:
            violation = parse_violation(str(exc))
            if violation is not None:
                kind, subject = violation
                event_log.warning("nats_permission_denied", user=user, kind=kind, subject=subject)
                if denials is not None and kind == "publish":
                    denials.report(subject)
                return
            if "authorization violation" in str(exc).lower():
                refused.set()
            event_log.warning("nats_error", error=repr(exc))

        async def on_disconnected() -> None:
            if client.is_closed:  # our own close (drain, shutdown): nothing went wrong
                event_log.debug("nats_closed")
                return
            event_log.warning("nats_disconnected")

        async def on_reconnected() -> None:
            event_log.info("nats_reconnected")

        servers = [s.strip() for s in url.split(",") if s.strip()]
        options: dict[str, Any] = {}
        if user is not None:
            options["user"] = user
            options["password"] = password
            options["inbox_prefix"] = inbox_prefix(user)
        # nats-py retries the first connection forever when reconnects are unlimited: bound it.
        client = HiveNatsClient()
        connecting = asyncio.ensure_future(
            client.connect(
                servers=servers,
                name=name or service,
                error_cb=on_error,
                disconnected_cb=on_disconnected,
                reconnected_cb=on_reconnected,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.25,  # type: ignore[arg-type]  # seconds; floats work
                allow_reconnect=True,
                connect_timeout=2,
                **options,
            )
        )
        refusal = asyncio.ensure_future(refused.wait())
        try:
            await asyncio.wait(
                {connecting, refusal}, timeout=connect_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            refusal.cancel()
        if connecting.done() and connecting.exception() is None:
            return cls(client, service, metrics, user=user, denials=denials, trace_headers=trace_headers)
        if connecting.done() and not refused.is_set():
            connecting.result()  # raises what went wrong
        connecting.cancel()
        await asyncio.gather(connecting, return_exceptions=True)
        with contextlib.suppress(Exception):
            await client.close()
        if refused.is_set():
            who = f"user {user!r}" if user is not None else "connections without credentials"
            raise NatsAuthError(
                f"NATS at {url} refused {who}: authorization violation (check NATS_USER and NATS_PASSWORD)"
            )
        raise ConnectionRefusedError(f"no NATS server answered at {url} within {connect_timeout}s")

    async def close(self, timeout: float = 5.0) -> None:
        """Drain (flush pending acks and publishes) when connected, else just close."""
        if self.nc.is_closed:
            return
        if self.nc.is_connected:
            try:
                await asyncio.wait_for(self.nc.drain(), timeout)
                return
            except (TimeoutError, nats.errors.Error) as exc:
                log.warning("nats_drain_failed", service=self.service, error=repr(exc))
        try:
            await self.nc.close()
        except (RuntimeError, OSError, nats.errors.Error) as exc:
            # The server went away mid-reconnect: nats-py flushes into a transport already closed.
            # Nothing is left to send; the caller still has its own stores to close.
            log.warning("nats_close_failed", service=self.service, error=repr(exc))

    # --- streams --------------------------------------------------------------------------------

    async def ensure_streams(
        self,
        *,
        duplicate_window_s: float = 120.0,
        max_age_s: float = 0.0,
        replicas: int = 1,
        timeout: float = 120.0,
    ) -> None:
        """Create or update HIVE_EVENTS and HIVE_DLQ; waits for JetStream to be ready.

        A JetStream cluster needs a few seconds to elect its leaders after a start: services
        started at the same time as the servers wait here instead of failing.
        """
        events = StreamConfig(
            name=EVENTS_STREAM,
            subjects=[ALL_EVENTS],
            storage=StorageType.FILE,
            retention=RetentionPolicy.LIMITS,
            discard=DiscardPolicy.OLD,
            duplicate_window=duplicate_window_s,
            max_age=max_age_s,
            num_replicas=replicas,
            allow_direct=True,
            description="Hive event log: every state change, append-only",
        )
        dlq = StreamConfig(
            name=DLQ_STREAM,
            subjects=[ALL_DLQ],
            storage=StorageType.FILE,
            retention=RetentionPolicy.LIMITS,
            max_age=7 * 24 * 3600.0,
            duplicate_window=DLQ_DUPLICATE_WINDOW_S,
            num_replicas=replicas,
            allow_direct=True,
            description="Messages Hive services could not process, with the reason",
        )
        deadline = time.monotonic() + timeout
        for config in (events, dlq):
            while True:
                try:
                    await self._create_or_update_stream(config)
                    break
                except (
                    nats.js.errors.ServiceUnavailableError,
                    nats.errors.TimeoutError,
                    nats.errors.NoRespondersError,
                ) as exc:
                    if time.monotonic() > deadline:
                        raise
                    log.info("waiting_for_jetstream", service=self.service, error=repr(exc))
                    await asyncio.sleep(0.25)

    async def _create_or_update_stream(self, config: StreamConfig) -> None:
        assert config.name is not None
        try:
            info = await self.js.stream_info(config.name)
        except nats.js.errors.NotFoundError:
            try:
                await self.js.add_stream(config)
            except nats.js.errors.BadRequestError as exc:
                # Another instance created it in the meantime.
                if "already in use" not in str(exc.description):
                    raise
            return
        current = info.config
        if (
            current.duplicate_window != config.duplicate_window
            or (current.max_age or 0) != (config.max_age or 0)
            or current.subjects != config.subjects
            or (current.num_replicas or 1) != (config.num_replicas or 1)
        ):
            await self.js.update_stream(config)

    async def last_sequence(self) -> int:
        info = await self.js.stream_info(EVENTS_STREAM)
        return int(info.state.last_seq)

    async def log_bounds(self) -> LogBounds:
        info = await self.js.stream_info(EVENTS_STREAM)
        return LogBounds(int(info.state.first_seq), int(info.state.last_seq), str(info.created or ""))

    # --- append ---------------------------------------------------------------------------------

    async def append(
        self,
        event: Event,
        *,
        expected: int | None,
        msg_id: str | None = None,
        timeout: float = 5.0,
        expected_filter: str | None = None,
    ) -> AppendResult:
        """Append `event`; `expected` is the last sequence seen of its aggregate (0: new aggregate).

        `expected=None` skips the concurrency check (only for facts that cannot conflict).
        `msg_id` overrides the de-duplication key (e.g. one assignment per task attempt).
        `expected_filter` checks `expected` against another subject filter than the aggregate's,
        e.g. one spanning every aggregate that competes for a shared limit, or everything about
        one entity across aggregates (an agent and its breaker).
        """
        data, headers, guarded, subject = self._encoded(event, expected, msg_id, expected_filter)
        result = await self._publish(event, subject, data, headers, guarded, expected, timeout)
        return await self._stored(event, data, headers, guarded, expected, timeout, result)

    def append_soon(
        self,
        event: Event,
        *,
        expected: int | None,
        msg_id: str | None = None,
        timeout: float = 5.0,
        expected_filter: str | None = None,
    ) -> asyncio.Future[AppendResult]:
        """``append``, started now, without a task or coroutine of its own: the message is written
        with the connection's next write and the future is answered from the read loop when the
        server's acknowledgement arrives (a router appends each decision this way: a task per
        append, its coroutines and futures cost as much as the append's own bytes). Same result,
        same errors (set on the future, never raised here). Where this cannot be done (another
        client than Hive's, a connection not up, a user whose refused publishes are watched, the
        reply subscription not opened yet), it is ``append`` in a task."""
        loop = asyncio.get_running_loop()
        prefix = self._ack_prefix
        if prefix is None or not self._writes_now() or (self.denials is not None and self.user is not None):
            return loop.create_task(
                self.append(
                    event, expected=expected, msg_id=msg_id, timeout=timeout, expected_filter=expected_filter
                )
            )
        answered: asyncio.Future[AppendResult] = loop.create_future()
        try:
            data, headers, guarded, subject = self._encoded(event, expected, msg_id, expected_filter)
            token = str(next(self._ack_tokens))
            command = hpub_command(subject, prefix + token, headers, data)
        except Exception as exc:
            answered.set_exception(exc)
            return answered
        pending = _PendingAppend(event, data, headers, guarded, expected, timeout, answered)
        self._acks[token] = pending
        pending.expiry = loop.call_later(timeout, self._ack_timed_out, token)
        try:
            self._write_now(command, len(data))
        except Exception as exc:
            pending.expiry.cancel()
            self._acks.pop(token, None)
            answered.set_exception(exc)
        return answered

    def _encoded(
        self, event: Event, expected: int | None, msg_id: str | None, expected_filter: str | None
    ) -> tuple[bytes, dict[str, str], str, str]:
        """An append's payload, headers, guarded filter and subject (formed once per append),
        checked before anything is sent."""
        if event.aggregate_id not in _VALID_TOKENS:
            _valid_token(check_id(event.aggregate_id, f"{event.AGGREGATE} id"))
        subject = subject_of(event)
        for token in subject.split(".")[4:]:
            if token not in _VALID_TOKENS:
                _valid_token(check_id(token, f"subject token of {event.type_name()}"))
        data = encode_event(event)
        field = too_deep_field(event, data)
        if field is not None:
            raise EventTooDeep(event, field)
        headers = {"Nats-Msg-Id": msg_id or event.id}
        guarded = expected_filter or aggregate_subjects(event.AGGREGATE, event.aggregate_id)
        if expected is not None:
            headers["Nats-Expected-Last-Subject-Sequence"] = str(expected)
            headers["Nats-Expected-Last-Subject-Sequence-Subject"] = guarded
        if self.trace_headers is not None:
            self.trace_headers(headers)
        size = len(data) + 12
        for key, value in headers.items():
            size += len(key) + len(value) + 4
        if size > self.nc.max_payload:  # the server counts headers too, and drops the connection
            raise EventTooLarge(event, size, int(self.nc.max_payload))
        if self.on_encoded is not None:
            self.on_encoded(event, data)
        return data, headers, guarded, subject

    async def _stored(
        self,
        event: Event,
        data: bytes,
        headers: dict[str, str],
        guarded: str,
        expected: int | None,
        timeout: float,
        result: AppendResult,
    ) -> AppendResult:
        """What an append's answer means: a duplicate under a shared key is checked (and stored
        under the event's own id if someone else's message holds the key); counted."""
        if result.duplicate and headers["Nats-Msg-Id"] != event.id:
            stored = await self.recorded_at(result.seq)
            if not same_decision(stored, event):
                # A shared key (``assign:<task>:<attempt>``, ...) is predictable, and the server
                # de-duplicates keys across the whole stream: someone stored something else under
                # ours first. Ours is not stored; store it under its own id (the expected-sequence
                # check still keeps deciders from storing the same decision twice). The same notice
                # about the same attempt to another agent is no forgery (only services may publish
                # notices): two router instances assigned one attempt at once, and the first won.
                log.warning(
                    "forged_duplicate",
                    service=self.service,
                    msg_id=headers["Nats-Msg-Id"],
                    subject=event.subject,
                    stored_subject=stored.subject if stored is not None else None,
                    stored_seq=result.seq,
                )
                headers["Nats-Msg-Id"] = event.id
                result = await self._publish(
                    event, subject_of(event), data, headers, guarded, expected, timeout
                )
        self._count(event, result)
        return result

    def _count(self, event: Event, result: AppendResult) -> None:
        if result.seq > self.last_appended:
            self.last_appended = result.seq
        if self.metrics:
            self.metrics.events_appended.labels(self.service, event.type_name()).inc()

    async def _publish(
        self,
        event: Event,
        subject: str,
        data: bytes,
        headers: dict[str, str],
        guarded: str,
        expected: int | None,
        timeout: float,
    ) -> AppendResult:
        publish = self._request_ack(subject, data, headers, timeout)
        try:
            if self.denials is not None and self.user is not None:
                ack = await self.denials.guard(self.user, subject, publish)
            else:
                ack = await publish
        except nats.js.errors.APIError as exc:
            raise self._refused(exc, guarded, expected) from exc
        return ack

    def _refused(self, exc: nats.js.errors.APIError, guarded: str, expected: int | None) -> Exception:
        """What a refused append raises: a conflict for a stale expected sequence, else the error."""
        if exc.err_code == WRONG_LAST_SEQUENCE:
            if self.metrics:
                self.metrics.append_conflicts.labels(self.service).inc()
            return ConcurrencyConflict(guarded, expected or 0, str(exc.description))
        return exc

    async def _request_ack(
        self, subject: str, data: bytes, headers: dict[str, str], timeout: float
    ) -> AppendResult:
        """Publish to the stream and wait for its acknowledgement: what nats-py's
        ``JetStreamContext.publish`` does (the same errors), for less per append. The replies come
        to one subscription of this connection and are matched by a counter (no random token, no
        timer task per append), and the acknowledgement is decoded by msgspec."""
        prefix = self._ack_prefix or await self._open_acks()
        token = str(next(self._ack_tokens))
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[Msg] = loop.create_future()
        self._acks[token] = answered
        expiry = loop.call_later(timeout, _time_out, answered)
        try:
            if self._writes_now():  # the command built here, with no coroutine of nats-py's
                self._write_now(hpub_command(subject, prefix + token, headers, data), len(data))
            else:
                await self.nc.publish(subject, data, reply=prefix + token, headers=headers)
            msg = await answered
        finally:
            expiry.cancel()
            self._acks.pop(token, None)
        return _acknowledged(msg)

    def _writes_now(self) -> bool:
        """Whether this connection is Hive's and can queue a built command for its next write."""
        nc = self.nc
        return isinstance(nc, HiveNatsClient) and nc.writes_now()

    def _write_now(self, command: bytes, size: int) -> None:
        nc = self.nc
        assert isinstance(nc, HiveNatsClient)
        nc.write_now(command, size)

    def _ack_timed_out(self, token: str) -> None:
        pending = self._acks.pop(token, None)
        if isinstance(pending, _PendingAppend) and not pending.answered.done():
            pending.answered.set_exception(nats.errors.TimeoutError())

    def _answered_soon(self, pending: _PendingAppend, msg: Msg | bytes) -> None:
        """The server's answer to an ``append_soon``: its result, or its error, on its future."""
        answered = pending.answered
        if pending.expiry is not None:
            pending.expiry.cancel()
        if answered.done():
            return
        try:
            result = _acknowledged(msg)
        except nats.js.errors.APIError as exc:
            refusal = self._refused(exc, pending.guarded, pending.expected)
            if refusal is not exc:
                refusal.__cause__ = exc
            answered.set_exception(refusal)
            return
        except Exception as exc:
            answered.set_exception(exc)
            return
        event = pending.event
        if result.duplicate and pending.headers["Nats-Msg-Id"] != event.id:  # rare: checked in a task
            p = pending
            check = asyncio.ensure_future(
                self._stored(event, p.data, p.headers, p.guarded, p.expected, p.timeout, result)
            )
            self._checks.add(check)
            check.add_done_callback(functools.partial(self._checked, answered))
            return
        self._count(event, result)
        answered.set_result(result)

    def _checked(self, answered: asyncio.Future[AppendResult], check: asyncio.Future[AppendResult]) -> None:
        self._checks.discard(check)
        if answered.done():
            return
        if check.cancelled():
            answered.cancel()
        elif (exc := check.exception()) is not None:
            answered.set_exception(exc)
        else:
            answered.set_result(check.result())

    async def _open_acks(self) -> str:
        """Subscribe once to this connection's append replies (``<inbox>.<counter>``)."""
        async with self._ack_opening:
            if self._ack_prefix is None:
                prefix = f"{self.nc.new_inbox()}."
                sub = await self.nc.subscribe(f"{prefix}*", cb=self._on_ack)
                # Hive's client answers each append in its read loop: no queue, task switch nor
                # coroutine per reply (the subscription's callback serves any other client).
                deliver_directly(self.nc, sub, self._answer)
                deliver_stored(self.nc, sub, self._answer_stored)
                self._ack_prefix = prefix
        return self._ack_prefix

    async def _on_ack(self, msg: Msg) -> None:
        self._answer(msg)

    def _answer_stored(self, subject: bytes, reply: bytes, data: bytes) -> bool:
        """An append's reply without headers, as bytes (Hive's client): an ``append_soon``'s is
        answered from its payload, with no message object; one nobody waits for any more is
        dropped; an ``append``'s is declined (built as a message for ``_answer``)."""
        assert self._ack_prefix is not None
        token = subject[len(self._ack_prefix) :].decode()
        pending = self._acks.get(token)
        if pending is None:
            return True  # timed out
        if not isinstance(pending, _PendingAppend):
            return False
        del self._acks[token]
        self._answered_soon(pending, data)
        return True

    def _answer(self, msg: Msg) -> None:
        """Hand an append's reply to the append waiting for it (none: it timed out)."""
        assert self._ack_prefix is not None
        answered = self._acks.pop(msg.subject[len(self._ack_prefix) :], None)
        if isinstance(answered, _PendingAppend):
            self._answered_soon(answered, msg)
        elif answered is not None and not answered.done():
            answered.set_result(msg)

    async def stored_after(self, seq: int) -> float | None:
        """When the first event after `seq` was stored (Unix seconds, the server's clock), by a
        direct get; None if the log holds none yet."""
        stamp = await self._direct_get_header(
            {"seq": seq + 1, "next_by_subj": ALL_EVENTS}, "Nats-Time-Stamp", f"after sequence {seq}"
        )
        return None if stamp is None else stored_time(stamp)

    async def subject_at(self, seq: int) -> str | None:
        """The subject of the message stored at `seq` (None if there is none), by a direct get."""
        return await self._direct_get_header({"seq": seq}, "Nats-Subject", f"of sequence {seq}")

    async def recorded_at(self, seq: int) -> Recorded | Undecodable | None:
        """The message stored at `seq`, decoded (None if there is none), by a direct get."""
        reply = await self.nc.request(
            f"$JS.API.DIRECT.GET.{EVENTS_STREAM}", msgspec.json.encode({"seq": seq}), timeout=5
        )
        headers = reply.headers or {}
        if inline_status(reply.headers) == "404":
            return None
        if "Nats-Subject" not in headers:
            raise RuntimeError(f"direct get of sequence {seq} failed: {headers}")
        return decode_recorded(seq, headers["Nats-Subject"], reply.data)

    async def _direct_get_header(self, request: dict[str, Any], header: str, what: str) -> str | None:
        """One header of the message a direct get of `request` finds (None if it finds none)."""
        reply = await self.nc.request(
            f"$JS.API.DIRECT.GET.{EVENTS_STREAM}", msgspec.json.encode(request), timeout=5
        )
        headers = reply.headers or {}
        if inline_status(reply.headers) == "404":
            return None
        if header not in headers:
            raise RuntimeError(f"direct get {what} failed: {headers}")
        return headers[header]

    async def aggregate_version(self, aggregate: str, aggregate_id: str) -> int:
        """Last stream sequence of any event of the aggregate (0 if none), asked of the server."""
        return await self.last_sequence_of(aggregate_subjects(aggregate, aggregate_id))

    async def last_sequence_of(self, subject_filter: str) -> int:
        """Last stream sequence of any message matching `subject_filter` (0 if none)."""
        request = msgspec.json.encode({"last_by_subj": subject_filter})
        reply = await self.nc.request(f"$JS.API.DIRECT.GET.{EVENTS_STREAM}", request, timeout=5)
        headers = reply.headers or {}
        if inline_status(reply.headers) == "404":
            return 0
        if "Nats-Sequence" not in headers:
            raise RuntimeError(f"direct get failed: {headers}")
        return int(headers["Nats-Sequence"])

    async def last_on(self, subject_filter: str) -> Recorded | Undecodable | None:
        """The last stored message matching `subject_filter` (None if none), by a direct get whose
        subject names the filter (``$JS.API.DIRECT.GET.<stream>.<filter>``): permissions can limit
        what a user reads this way, as the server refuses a body that would name another filter."""
        reply = await self.nc.request(f"$JS.API.DIRECT.GET.{EVENTS_STREAM}.{subject_filter}", b"", timeout=5)
        headers = reply.headers or {}
        if inline_status(reply.headers) == "404":
            return None
        if "Nats-Sequence" not in headers or "Nats-Subject" not in headers:
            raise RuntimeError(f"direct get of {subject_filter} failed: {headers}")
        return decode_recorded(int(headers["Nats-Sequence"]), headers["Nats-Subject"], reply.data)

    # --- reading --------------------------------------------------------------------------------

    async def ephemeral_consumer(
        self, subject_filter: str | list[str], start_seq: int, *, inactive_s: float = 30.0
    ) -> str:
        """An ack-less, in-memory consumer from `start_seq`, under a random name (one filter or
        several), gone `inactive_s` after it was last used."""
        name = f"{self.service}-read-{new_id()}"
        filters = [subject_filter] if isinstance(subject_filter, str) else subject_filter
        several = len(filters) > 1
        await self.js.add_consumer(
            EVENTS_STREAM,
            ConsumerConfig(
                name=name,
                ack_policy=AckPolicy.NONE,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=max(1, start_seq),
                filter_subject=None if several else filters[0],
                filter_subjects=filters if several else None,
                inactive_threshold=inactive_s,
                mem_storage=True,
                num_replicas=1,
            ),
        )
        return name

    async def read(
        self,
        *,
        subject_filter: str | list[str] = ALL_EVENTS,
        start_seq: int = 1,
        stop_seq: int | None = None,
        batch: int = 512,
    ) -> AsyncGenerator[Recorded | Undecodable, None]:
        """Read the log in order from `start_seq` up to `stop_seq` (default: the current end).

        Uses no-wait pull requests, so it returns as soon as the stored messages are read.
        """
        reading = self.read_stored(
            subject_filter=subject_filter, start_seq=start_seq, stop_seq=stop_seq, batch=batch
        )
        async with contextlib.aclosing(reading):
            async for seq, subject, data in reading:
                yield decode_recorded(seq, subject, data)

    async def read_stored(
        self,
        *,
        subject_filter: str | list[str] = ALL_EVENTS,
        start_seq: int = 1,
        stop_seq: int | None = None,
        batch: int = 512,
    ) -> AsyncGenerator[tuple[int, str, bytes], None]:
        """``read``, each message as its sequence, subject and bytes, undecoded (through one
        consumer, however many filters): for a reader that skips most of them by their bytes."""
        if stop_seq is None:
            stop_seq = await self.last_sequence()
        if stop_seq < start_seq:
            return
        name = await self.ephemeral_consumer(subject_filter, start_seq)
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox, pending_msgs_limit=batch * 2 + 16)
        read_headers_lazily(self.nc, sub)
        next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{EVENTS_STREAM}.{name}"
        request = msgspec.json.encode({"batch": batch, "no_wait": True})
        try:
            while True:
                await self.nc.publish(next_subject, request, reply=inbox)
                received = 0
                while received < batch:
                    msg = await sub.next_msg(timeout=10)
                    if inline_status(msg.headers):
                        break  # 404/408: nothing more for this request
                    received += 1
                    seq = event_msg_seq(msg)
                    if seq > stop_seq:
                        return
                    yield seq, msg.subject, msg.data
                    if seq >= stop_seq or pending_after(msg) == 0:
                        return
                if received == 0:
                    return
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            read_headers_lazily(self.nc, sub, lazily=False)
            with contextlib.suppress(Exception):
                await self.js.delete_consumer(EVENTS_STREAM, name)

    async def follow_raw(
        self,
        handler: Callable[[Msg], Awaitable[None]],
        stopping: asyncio.Event,
        *,
        subject_filter: str | list[str] = ALL_EVENTS,
        start_seq: int,
        label: str = "follow",
        pace: Pace | None = None,
        stored: StoredHandle | None = None,
    ) -> None:
        """Hand every stored message (matching `subject_filter`, one filter or several) from
        `start_seq` on to `handler`, in order, until stopped.

        Uses an ephemeral, ack-less consumer of its own; when it is lost (server restart, network)
        a new one starts right after the last message handed over, so nothing is skipped or repeated.
        With `pace`, messages are read in bursts (``shared.pull.consume_bursts``). With `stored`,
        Hive's client hands each to `stored` as its sequence, subject and payload, with no message
        object built (in bursts, or one at a time as each is read: ``consume_stored``); `handler`
        still gets them on another client (and any the client builds an object for): both must do
        the same.
        """
        next_seq = start_seq

        async def track(msg: Msg) -> None:
            nonlocal next_seq
            seq = event_msg_seq(msg)
            if seq < next_seq:
                return
            await handler(msg)
            next_seq = seq + 1

        async def track_after(outcome: Awaitable[None], seq: int) -> None:
            nonlocal next_seq
            await outcome
            next_seq = seq + 1

        def track_stored(seq: int, subject: str, data: bytes) -> Awaitable[None] | None:
            """``track`` for a message handed over as bytes; a coroutine only when `stored` returns
            something to await."""
            nonlocal next_seq
            if seq < next_seq:
                return None
            assert stored is not None
            outcome = stored(seq, subject, data)
            if outcome is not None:
                return track_after(outcome, seq)
            next_seq = seq + 1
            return None

        async def open_consumer() -> str:
            return await self.ephemeral_consumer(subject_filter, next_seq)

        async def close_consumer(name: str) -> None:
            await self.js.delete_consumer(EVENTS_STREAM, name)

        def on_lost(exc: Exception) -> None:
            log.warning(
                "consumer_lost", service=self.service, label=label, error=repr(exc), next_seq=next_seq
            )

        await consume_forever(
            self.nc,
            EVENTS_STREAM,
            open_consumer,
            track,
            stopping,
            on_lost=on_lost,
            batch=1024,
            nak_on_stop=False,
            close_consumer=close_consumer,
            pace=pace,
            handle_stored=track_stored if stored is not None else None,
        )

    async def follow(
        self,
        handler: Callable[[Recorded], Awaitable[None] | None],
        stopping: asyncio.Event,
        *,
        subject_filter: str = ALL_EVENTS,
        start_seq: int | None = None,
    ) -> None:
        """Hand every event stored from `start_seq` (default: from now on) to `handler` until stopped."""
        if start_seq is None:
            start_seq = await self.last_sequence() + 1

        async def on_msg(msg: Msg) -> None:
            item = decode_recorded(event_msg_seq(msg), msg.subject, msg.data)
            if isinstance(item, Recorded):
                outcome = handler(item)
                if outcome is not None:
                    await outcome

        await self.follow_raw(on_msg, stopping, subject_filter=subject_filter, start_seq=start_seq)

    async def read_aggregate(self, aggregate: str, aggregate_id: str) -> tuple[list[Recorded], int]:
        """Every decodable event of one aggregate in order, and the aggregate's last sequence."""
        events: list[Recorded] = []
        last = 0
        subject_filter = aggregate_subjects(aggregate, aggregate_id)
        async for item in self.read(subject_filter=subject_filter):
            last = item.seq
            if isinstance(item, Recorded):
                events.append(item)
        return events, last

    # --- health -------------------------------------------------------------------------------

    async def gather_health(
        self, window_s: float = 1.0, expect: frozenset[str] = frozenset(), grace_s: float = 0.05
    ) -> list[dict[str, Any]]:
        """Ask every service instance for its health (core NATS scatter-gather on hive.svc.health).

        Collects for up to `window_s`; once every service in `expect` has answered, waits only
        `grace_s` more for their other instances.
        """
        inbox = self.nc.new_inbox()
        replies: list[dict[str, Any]] = []
        decoder = msgspec.json.Decoder(dict[str, Any])
        complete = asyncio.Event()

        async def collect(msg: Msg) -> None:
            if not msg.data:  # an empty body is the "no responders" status
                return
            with contextlib.suppress(msgspec.DecodeError):
                replies.append(decoder.decode(msg.data))
            if expect and expect <= {str(r.get("service")) for r in replies}:
                complete.set()

        sub = await self.nc.subscribe(inbox, cb=collect)
        try:
            await self.nc.publish(HEALTH_PING, b"", reply=inbox)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(complete.wait(), window_s)
            if complete.is_set():
                await asyncio.sleep(grace_s)  # a short window for further instances of the same services
        finally:
            await sub.unsubscribe()
        return replies

    # --- dead letters ---------------------------------------------------------------------------

    async def dead_letter(
        self, subject: str, data: bytes, reason: str, stream_seq: int | None = None
    ) -> None:
        """Keep a message we could not process on ``hive.dlq.<service>``, with the reason.

        A stored event (`stream_seq` given) is kept once per service (``dead_letter_msg_id``).
        """
        letter = DeadLetter(
            service=self.service,
            reason=reason[:DEAD_LETTER_REASON_MAX],
            subject=subject,
            stream_seq=stream_seq,
            data=data[:DEAD_LETTER_DATA_MAX].decode("utf-8", errors="replace"),
            ts=time.time(),
            size=len(data),
        )
        msg_id = dead_letter_msg_id(self.service, stream_seq) if stream_seq is not None else None
        headers = {"Nats-Msg-Id": msg_id} if msg_id else None
        ack = await self.js.publish(dlq_subject(self.service), msgspec.json.encode(letter), headers=headers)
        if ack.duplicate:
            return
        if self.metrics:
            self.metrics.events_dead_lettered.labels(self.service).inc()
        log.warning(
            "dead_lettered", service=self.service, subject=subject, seq=stream_seq, reason=letter.reason
        )
