"""The NATS client Hive uses: nats-py's, with its per-message hot spots made cheap.

Every event crosses several consumers, so per-message costs add up: reading the wire (Hive's own
parser, ``shared.wire``, and a hand-over without a coroutine, ``deliver_now``; a burst reader
takes each message in the read loop itself, ``deliver_directly``), header parsing (every stored
event carries its append's ``Nats-Msg-Id`` and ``Nats-Expected-*`` headers, which no reader looks
at: here they are parsed when first read, not on arrival), the JetStream metadata of a delivered
message (nats-py also builds a datetime for each) and the socket writes (one per wake-up of
nats-py's flusher; here one per two turns of the event loop, from a callback rather than the
flusher task, and none of its own for what nobody waits on: ``publish_soon``, ``ack_soon``). What
a reader sees is the same, except that only the server's inline status line (``NATS/1.0 404 ...``)
makes a message a status (``inline_status``): a stored message's own ``Status`` header does not.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from typing import Any

from nats import errors
from nats.aio.client import PING_PROTO, Client, _validate_subject
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.aio.transport import TcpTransport
from nats.protocol.command import pub_cmd

from shared.logging import get_logger
from shared.wire import WireParser

_WHITESPACE = re.compile(r"\s")
_CRLF = b"\r\n"
_VERSION_LINE = b"NATS/1.0"
_HEADERS_START = len(_VERSION_LINE) + len(_CRLF)
_SPACE = 32
STATUS = "Status"
DEFERRED_WRITE_S = 0.05
"""Longest a message sent with ``publish_soon`` waits for another write to leave with."""

log = get_logger("hive.nats")

DirectHandler = Callable[[Msg], None]
"""Takes a subscription's message in the read loop itself (``deliver_directly``): must not block."""
StoredHandler = Callable[[bytes, bytes, bytes], bool]
"""Offered a subscription's message as its subject, reply subject and payload, raw, in the read
loop itself (``deliver_stored``): True if it took it, False to have it built and handed over as
usual. Must not block."""


def parse_header_lines(raw: bytes) -> dict[str, str]:
    """``Name: Value`` lines to a dict; names with whitespace or non-ASCII bytes are skipped."""
    out: dict[str, str] = {}
    for line in raw.split(_CRLF):
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        try:
            key = name.strip().decode("ascii")
        except UnicodeDecodeError:
            continue
        if _WHITESPACE.search(key):
            continue
        out[key] = value.strip().decode("utf-8", "replace")
    return out


class LazyHeaders(dict[str, str]):
    """A stored message's headers, parsed from its raw lines the first time a method reads them.

    Only for Hive's own JetStream readers (``read_headers_lazily``), whose code reads headers
    through the dict's methods (``get``, ``in``, ``dict(...)``): a serialiser that walks a dict's
    storage directly (``json.dumps``, msgspec) sees it empty until then.
    """

    __slots__ = ("_raw",)

    def __init__(self, raw: bytes) -> None:  # dict's own __init__ has nothing to do: not called
        self._raw: bytes | None = raw

    def _parsed(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            super().update(parse_header_lines(raw))

    def __getitem__(self, key: str) -> str:
        self._parsed()
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self._parsed()
        return super().__contains__(key)

    def __iter__(self) -> Iterator[str]:
        self._parsed()
        return super().__iter__()

    def __len__(self) -> int:
        self._parsed()
        return super().__len__()

    def __eq__(self, other: object) -> bool:
        self._parsed()
        if isinstance(other, LazyHeaders):
            other._parsed()
        return super().__eq__(other)

    def __repr__(self) -> str:
        self._parsed()
        return super().__repr__()

    def get(self, key: str, default: Any = None) -> Any:
        self._parsed()
        return super().get(key, default)

    def keys(self) -> Any:
        self._parsed()
        return super().keys()

    def values(self) -> Any:
        self._parsed()
        return super().values()

    def items(self) -> Any:
        self._parsed()
        return super().items()

    def copy(self) -> dict[str, str]:
        self._parsed()
        return dict(super().items())

    def __setitem__(self, key: str, value: str) -> None:
        self._parsed()
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self._parsed()
        super().__delitem__(key)

    def pop(self, key: str, *default: Any) -> Any:
        self._parsed()
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, str]:
        self._parsed()
        return super().popitem()

    def setdefault(self, key: str, default: Any = None) -> Any:
        self._parsed()
        return super().setdefault(key, default)

    def update(self, *args: Any, **kwargs: str) -> None:
        self._parsed()
        super().update(*args, **kwargs)

    def clear(self) -> None:
        self._raw = None
        super().clear()

    def __or__(self, other: Any) -> Any:
        self._parsed()
        return dict(super().items()) | other

    def __ior__(self, other: Any) -> Any:
        self._parsed()
        return super().__ior__(other)

    def __reduce__(self) -> Any:
        self._parsed()
        return (dict, (dict(super().items()),))


class StatusHeaders(dict[str, str]):
    """The headers of a message whose version line carries a status: one the server sent itself."""

    __slots__ = ()


def inline_status(headers: dict[str, str] | None) -> str | None:
    """The server's status code of a message (``100`` idle heartbeat, ``404``, ``408``, ``503``,
    ...), or None for a stored message, whatever headers it was published with: the server sends a
    status on its version line, which nats-py files under ``Status``, as it does a stored message's
    own ``Status`` header (``HiveNatsClient`` tells them apart: ``StatusHeaders``)."""
    if type(headers) is not StatusHeaders:
        return None
    return headers.get(STATUS)


class HiveNatsClient(Client):
    """nats-py's client with Hive's parser (``shared.wire``), lazily parsed headers, direct
    hand-over to Hive's own pull readers and fewer socket writes."""

    _parse_header_lines = staticmethod(parse_header_lines)

    def __init__(self) -> None:
        super().__init__()
        self._ps = WireParser(self)  # nats-py only ever calls reset() on it after this
        self.lazy_header_sids: set[int] = set()
        self.direct_handlers: dict[int, DirectHandler] = {}
        self.stored_handlers: dict[int, StoredHandler] = {}
        self._lazy_headers = False
        self._deferred_write: asyncio.TimerHandle | None = None
        self._write_due = False
        self._write_failure: asyncio.Future[None] | None = None

    def publish_soon(self, subject: str, payload: bytes = b"") -> None:
        """``publish`` of a message nobody waits on (an acknowledgement), without a write of its
        own: it leaves with this connection's next write (an append, a pull request, another
        publish), or ``DEFERRED_WRITE_S`` later if none comes. At a moderate rate each write is a
        wake-up of both the server and the flusher, and an acknowledgement had one to itself. Same
        checks and errors as ``publish``; ``flush``, ``drain`` and ``close`` write it too."""
        if not self._skip_subject_validation:
            _validate_subject(subject)
        if self.is_closed:
            raise errors.ConnectionClosedError
        if self.is_draining_pubs:
            raise errors.ConnectionDrainingError
        size = len(payload)
        if not self.is_connected and (
            self._max_pending_size <= 0 or size + self._pending_data_size > self._max_pending_size
        ):
            raise errors.OutboundBufferLimitError
        if size > self._max_payload:
            raise errors.MaxPayloadError
        self._queue(pub_cmd(subject, "", payload), size)
        if self._max_pending_size > 0 and self._pending_data_size > self._max_pending_size:
            self._write_deferred()  # as much as a publish may leave pending: out now
        elif self._deferred_write is None:
            self._deferred_write = asyncio.get_running_loop().call_later(
                DEFERRED_WRITE_S, self._write_deferred
            )

    def writes_now(self) -> bool:
        """Whether a built command can be queued for the next write here (up over TCP, not
        draining); otherwise ``publish`` buffers or refuses it as it should."""
        return self._up_over_tcp() and not self.is_draining_pubs

    def write_now(self, command: bytes, size: int) -> None:
        """Queue a publish command built by the caller (of a `size`-byte payload) for the
        connection's next write: what ``publish`` does once it has built one."""
        if size > self._max_payload:
            raise errors.MaxPayloadError
        self._queue(command, size)
        self._write_soon()

    def _queue(self, command: bytes, size: int) -> None:
        """A publish command's counters and its place in what the next write sends."""
        self.stats["out_msgs"] += 1
        self.stats["out_bytes"] += size
        self._pending.append(command)
        self._pending_data_size += len(command)

    def _write_deferred(self) -> None:
        """Write what ``publish_soon`` left pending, unless a write is due anyway (or the
        connection is down: reconnecting writes what is pending)."""
        if self._deferred_write is not None:
            self._deferred_write.cancel()
            self._deferred_write = None
        queue = self._flush_queue
        if self._pending_data_size <= 0 or not self.is_connected:
            return
        if self._up_over_tcp():
            self._write_soon()
        elif queue is not None and queue.empty():  # another transport: its flusher writes
            queue.put_nowait(asyncio.get_running_loop().create_future())

    def deliver_now(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> bool:
        """``_process_msg`` without a coroutine, for the messages where it would await nothing:
        False, having changed nothing, for any other (a JetStream push subscription, a request's
        future, a status, headers parsed on arrival, a subscription over its pending limits), which
        ``WireParser`` then hands to ``_process_msg``. Same counters, same order, same message."""
        sub = self._subs.get(sid)
        if sub is None:
            self.stats["in_msgs"] += 1
            self.stats["in_bytes"] += len(data)
            return True
        if sub._jsi is not None or sub._future is not None:
            return False
        size = len(data)
        direct = self.direct_handlers.get(sid)
        queue = sub._pending_queue
        if direct is None:
            limit = sub._pending_bytes_limit
            if (limit > 0 and sub._pending_size + size >= limit) or queue.full():
                return False
        if headers and (
            sid not in self.lazy_header_sids
            or len(headers) <= _HEADERS_START + len(_CRLF)
            or headers[len(_VERSION_LINE)] == _SPACE
        ):
            return False
        self._count_received(sid, sub, size)
        if direct is not None:
            stored = self.stored_handlers.get(sid)
            if stored is not None and stored(subject, reply, data):
                return True  # taken as bytes: no message built, no headers kept
        hdr = LazyHeaders(headers[_HEADERS_START:]) if headers else None
        msg = self._build_message(sid, subject, reply, data, hdr)
        if not msg:
            return True
        if direct is not None:
            _hand_over(direct, msg)
            return True
        sub._pending_size += size
        queue.put_nowait(msg)
        return True

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes) -> None:
        self._lazy_headers = sid in self.lazy_header_sids  # read by _process_headers, first thing
        direct = self.direct_handlers.get(sid)
        sub = self._subs.get(sid)
        if direct is None or sub is None or sub._jsi is not None or sub._future is not None:
            await super()._process_msg(sid, subject, reply, data, headers)
            return
        # What deliver_now declined on a subscription handed over directly: a status, mostly.
        self._count_received(sid, sub, len(data))
        msg = self._build_message(sid, subject, reply, data, await self._process_headers(headers))
        if msg:
            _hand_over(direct, msg)

    def _count_received(self, sid: int, sub: Subscription, size: int) -> None:
        """nats-py's bookkeeping of a message taken for `sub`: the client's counters, the
        subscription's, and its end once it has received its ``max_msgs``."""
        self.stats["in_msgs"] += 1
        self.stats["in_bytes"] += size
        sub._received += 1
        if sub._max_msgs > 0 and sub._received >= sub._max_msgs:
            self._subs.pop(sid, None)

    async def _process_headers(self, headers: bytes) -> dict[str, str] | None:
        """A status (the server's own: heartbeats, the end of a pull request, no responders) is
        parsed at once into ``StatusHeaders``; on a subscription read lazily, other headers are
        parsed when first read (``LazyHeaders``); elsewhere at once, as nats-py does."""
        if not headers:
            return None
        if len(headers) > len(_VERSION_LINE) and headers[len(_VERSION_LINE)] == _SPACE:
            parsed = await super()._process_headers(headers)
            return StatusHeaders(parsed) if parsed is not None else None
        if not self._lazy_headers or len(headers) <= _HEADERS_START + len(_CRLF):
            return await super()._process_headers(headers)
        return LazyHeaders(headers[_HEADERS_START:])

    async def _flush_pending(self, force_flush: bool = False) -> Any:
        """Write what is pending two turns of the event loop from now, from a callback, as the
        flusher task would (what the tasks woken meanwhile add leaves in the same write), without
        its wake-up, queue and three futures per write (as much as the write itself costs). The
        flusher still writes when a caller waits on the write (``force_flush``) and when the socket
        has a backlog (it waits for it to drain); nats-py's own way serves while the connection is
        not up."""
        if self._write_due and not force_flush:
            return None  # written in a turn or two anyway
        if force_flush or not self._up_over_tcp():
            return await super()._flush_pending(force_flush)
        self._write_soon()
        return None

    async def _send_ping(self, future: asyncio.Future[bool] | None = None) -> None:
        """A PING written behind every command still pending, in the same write. nats-py writes a
        PING straight to the socket, ahead of what this client holds back for a turn or two
        (``_write_soon``): the PONG that ``flush`` waits for would then vouch for none of it, and a
        subscription made just before ``flush`` could still be unknown to the server when it
        returned (a service said it was ready while its health subscription was not yet there)."""
        if not self._up_over_tcp():
            await super()._send_ping(future)
            return
        transport = self._transport
        assert transport is not None
        pending, self._pending, self._pending_data_size = self._pending, [], 0
        pending.append(PING_PROTO)
        try:
            transport.writelines(pending)
        except BaseException:
            pending.pop()
            self._pending[:0] = pending  # as a failed write leaves them: pending, in order
            self._pending_data_size += sum(len(command) for command in pending)
            raise
        self._pongs.append(future if future is not None else asyncio.get_running_loop().create_future())

    def _up_over_tcp(self) -> bool:
        return self.is_connected and not self.is_connecting and type(self._transport) is TcpTransport

    def _write_soon(self) -> None:
        if not self._write_due:
            self._write_due = True
            asyncio.get_running_loop().call_soon(self._write_turn, True)

    def _write_turn(self, again: bool) -> None:
        if again:  # one more turn: what the tasks woken with the first command add goes along
            asyncio.get_running_loop().call_soon(self._write_turn, False)
            return
        self._write_due = False
        if self._pending_data_size <= 0 or not self._up_over_tcp():
            return  # nothing to write, or reconnecting (which writes what is pending)
        transport = self._transport
        assert isinstance(transport, TcpTransport) and transport._io_writer is not None
        flusher = self._flusher_task
        queue = self._flush_queue
        if (
            transport._io_writer.transport.get_write_buffer_size() > 0
            and flusher is not None
            and not flusher.done()
            and queue is not None
        ):
            if queue.empty():  # the flusher writes it once the backlog has drained
                queue.put_nowait(asyncio.get_running_loop().create_future())
            return
        pending, self._pending, self._pending_data_size = self._pending, [], 0
        try:
            transport.writelines(pending)  # type: ignore[no-untyped-call]
        except OSError as exc:
            self._write_failure = asyncio.ensure_future(self._write_failed(exc))
        except (RuntimeError, AttributeError):  # a loop or connection closing: as the flusher does
            return

    async def _write_failed(self, exc: OSError) -> None:
        """What the flusher does when a write fails: tell, then reconnect."""
        await self._error_cb(exc)
        await self._process_op_err(exc)

    async def _flusher(self) -> None:
        """Write what is pending once the event loop has run the callbacks already due: what the
        tasks woken with the first command add (appends, acknowledgements, pull requests) leaves in
        the same write. (nats-py writes as soon as the flusher wakes: at saturation a router spent
        a fifth of its CPU in socket writes.)"""
        assert self._flush_queue is not None
        while self.is_connected and not self.is_connecting:
            flushed = await self._flush_queue.get()
            try:
                await asyncio.sleep(0)
                if self._pending_data_size > 0:
                    assert self._transport is not None
                    pending, self._pending, self._pending_data_size = self._pending, [], 0
                    self._transport.writelines(pending)
                    await self._transport.drain()  # type: ignore[no-untyped-call]
            except OSError as exc:
                await self._error_cb(exc)
                await self._process_op_err(exc)
                return
            except (asyncio.CancelledError, RuntimeError, AttributeError):
                return
            finally:
                if not flushed.done():
                    flushed.set_result(None)


def read_headers_lazily(nc: Client, sub: Subscription, lazily: bool = True) -> None:
    """Parse the headers of the messages ``sub`` receives when its handler first reads them.

    For a reader whose code reads them only through the dict's methods, if at all (see
    ``LazyHeaders``). ``lazily=False`` forgets the subscription once it is done.
    """
    if isinstance(nc, HiveNatsClient):
        if lazily:
            nc.lazy_header_sids.add(sub._id)
        else:
            nc.lazy_header_sids.discard(sub._id)


def deliver_directly(nc: Client, sub: Subscription, handler: DirectHandler | None) -> None:
    """Hand each message of `sub` to `handler` as it is read, not through the subscription's queue
    and task (a queue put, a task switch, a get and a coroutine per message); None stops it.

    In arrival order, statuses included; no pending limits (the handler takes each message at
    once). For a handler that only stores or signals: it runs in the connection's read loop, so
    it must not block, and what it raises is logged, not raised there. Hive's client only: on
    another, the subscription's own callback goes on taking the messages.
    """
    if isinstance(nc, HiveNatsClient):
        if handler is not None:
            nc.direct_handlers[sub._id] = handler
        else:
            nc.direct_handlers.pop(sub._id, None)


def deliver_stored(nc: Client, sub: Subscription, handler: StoredHandler | None) -> None:
    """Offer each message of `sub`, handed over directly (``deliver_directly``), to `handler` as
    raw bytes first: subject, reply subject and payload, before any message object or headers are
    built (a reader of stored messages needs nothing else). What it declines (returns False), and
    what ``deliver_now`` declines anyway (a status, headers parsed on arrival), goes on to the
    direct handler as a message. None stops it. Hive's client only: elsewhere, nothing changes.
    Exceptions are not caught: they leave the read loop as a message that cannot be built does."""
    if isinstance(nc, HiveNatsClient):
        if handler is not None:
            nc.stored_handlers[sub._id] = handler
        else:
            nc.stored_handlers.pop(sub._id, None)


def ack_soon(msg: Msg) -> bool:
    """Acknowledge a JetStream delivery with ``publish_soon`` (no write of its own): True, or False
    having done nothing when its connection is not Hive's (then ``await msg.ack()``). Raises what
    ``Msg.ack`` raises for a message that is not a delivery or was acknowledged already."""
    client = msg._client
    if not isinstance(client, HiveNatsClient):
        return False
    msg._check_reply()
    client.publish_soon(msg.reply)
    msg._ackd = True
    return True


def progress_soon(msg: Msg) -> bool:
    """``Msg.in_progress`` with ``publish_soon``: the same ``+WPI`` to the delivery's reply subject,
    with no coroutine and no write of its own. True, or False having done nothing when its
    connection is not Hive's (then ``await msg.in_progress()``). Raises what ``in_progress`` raises
    for a message that is not a delivery."""
    client = msg._client
    if not isinstance(client, HiveNatsClient):
        return False
    if not msg.reply:
        raise errors.NotJSMessageError
    client.publish_soon(msg.reply, Msg.Ack.Progress)
    return True


def _hand_over(handler: DirectHandler, msg: Msg) -> None:
    try:
        handler(msg)
    except Exception:
        log.exception("nats_direct_handler_failed", subject=msg.subject)


def ack_tokens(reply: str) -> list[str]:
    """The tokens of a JetStream delivery's reply subject, in the v1 (9-token) layout: stream
    sequence at 5, delivery count at 4, stored at (ns) at 7, pending after at 8.

    v2 subjects (``$JS.ACK.<domain>.<account>.<stream>...``, 12 tokens or more) are cut down to it.
    """
    tokens = reply.split(".")
    if len(tokens) >= 12:
        return tokens[:2] + tokens[4:11]
    if len(tokens) != 9:
        raise ValueError(f"not a JetStream delivery: {reply!r}")
    return tokens


def reply_stream_seq(reply: bytes) -> int:
    """Stream sequence of a JetStream delivery, read off its raw reply subject (``ack_tokens``)."""
    tokens = reply.split(b".")
    if len(tokens) == 9:
        return int(tokens[5])
    return int(ack_tokens(reply.decode())[5])


def stream_seq(msg: Msg) -> int:
    """Stream sequence of a JetStream delivery."""
    return int(ack_tokens(msg.reply)[5])


def delivery_count(msg: Msg) -> int:
    """How many times this message has been delivered to the consumer."""
    return int(ack_tokens(msg.reply)[4])


def pending_after(msg: Msg) -> int:
    """Messages still pending for the consumer after this one."""
    return int(ack_tokens(msg.reply)[8])


def stored_at_ns(msg: Msg) -> int:
    """When the server stored the message (Unix nanoseconds, server clock)."""
    return int(ack_tokens(msg.reply)[7])
