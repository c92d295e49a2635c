"""Pulling from a JetStream consumer: each message as soon as it is stored, or in bursts.

nats-py's ``fetch`` with a batch waits for the whole batch or its timeout, which adds up to that
timeout to a message's latency. ``consume`` keeps pull requests outstanding instead (asking for
more when half of what was asked has arrived, as nats.go's ``Consume`` does), hands each message
to the handler as it arrives (in the subscription's own task: no timer per message), and watches
idle heartbeats to notice a lost consumer or server. ``consume_forever`` goes on when it is lost.

Each message read that way costs a wake-up on both sides (a socket write and read, the
subscription's queue, a task switch): at a thousand messages a second that is most of what a
reader spends, ten times what decoding and applying costs. A reader that need not see each event
the moment it is stored (a projection whose decisions run on a timer, or wait for a sequence they
name) reads in bursts instead (``consume_bursts``): it asks for everything stored at once, hands it
over, and asks again when its ``pace`` says so, paying one wake-up per burst.

A reader that must see each event at once but needs only its bytes (the router's projection: it
must see a release the moment it is stored) reads with ``consume_stored``: the stored messages of
an ack-less consumer are handed over in the connection's read loop as they are read, with no
message object, queue, task switch nor coroutine per message (the router read about 3.5 messages
per task that way, and building, queueing and handing over each one cost more than applying it).
A consumer that acknowledges is read the same way with ``consume_delivered`` (an agent's inbox):
the handler gets each delivery's reply subject with its bytes and acknowledges it itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from shared.logging import get_logger
from shared.natsclient import (
    HiveNatsClient,
    ack_tokens,
    deliver_directly,
    deliver_stored,
    inline_status,
    pending_after,
    read_headers_lazily,
    reply_stream_seq,
)

PENDING_MESSAGES = "Nats-Pending-Messages"
WATCH_S = 0.25
ANSWER_TIMEOUT_S = 5.0
"""A burst's pull request unanswered this long: the consumer (or the server) is gone."""
SUSPECT_END_S = 0.1
"""A burst whose last message says nothing is pending after it, though it was stored this long
(the server's clock) before the burst was asked for, is followed by another request at once, not
after the pace: a busy server says "nothing pending" of a consumer seconds behind the log
(measured on nats-server 2.15 at 500 tasks/s: bursts of 1 to 100 events, each "the end", while
thousands were stored after them; after a 20,000-task run a reader took 25 s to reach the end of a
quiet log). An honest end costs one empty answer more, only when the log was quiet that long
before the burst. The ask is timed by this host's clock, the store by the server's: a clock ahead
of the server's costs at most that empty answer per burst, one behind it by more than this takes
the server's word again."""

Pace = Callable[[], Awaitable[None]]
"""Returns when a reader in bursts should ask for the next burst (``consume_bursts``)."""
StoredHandle = Callable[[int, str, bytes], Awaitable[None] | None]
"""Takes a stored message as its stream sequence, subject and payload (``consume_bursts``,
``consume_stored``): None when done with it, or what to await before the next one."""
DeliveredHandle = Callable[[str, str, bytes], Awaitable[None] | None]
"""Takes a delivery of a consumer that acknowledges as its reply subject (what it acknowledges;
its sequences), subject and payload (``consume_delivered``): as ``StoredHandle``."""

log = get_logger("hive.pull")


class ConsumerLost(Exception):
    """No message and no heartbeat for too long, or the server says the consumer is gone."""


def after_status(status: str, headers: dict[str, str], pending: int) -> int | ConsumerLost:
    """What a status on a pull request's reply subject (not a heartbeat) says: the messages still
    pending, after which more are asked for (408/409 with the count the request gave up, 404 for
    none left), or that the consumer is lost (any other status)."""
    if status in ("408", "409") and PENDING_MESSAGES in headers:
        return pending - int(headers[PENDING_MESSAGES])
    if status == "404":
        return 0
    return ConsumerLost(f"status {status}: {headers.get('Description', '')}")


async def pause_before_retry(nc: NatsClient, delay_s: float = 0.2) -> bool:
    """Wait before re-creating a lost consumer; False when retrying makes no sense any more.

    nats-py may turn a cancellation into a connection error, so a closed connection or a
    cancellation already requested for this task ends the retry loop too.
    """
    task = asyncio.current_task()
    if nc.is_closed or (task is not None and task.cancelling()):
        return False
    await asyncio.sleep(delay_s)
    return not nc.is_closed


async def consume(
    nc: NatsClient,
    stream: str,
    consumer: str,
    handle: Callable[[Msg], Awaitable[None]],
    stopping: asyncio.Event,
    *,
    batch: int = 256,
    expires_s: float = 30.0,
    heartbeat_s: float = 1.0,
    nak_on_stop: bool = True,
) -> None:
    """Handle messages one at a time until `stopping` is set; raise ConsumerLost if it goes away.

    On stop, the message in hand is finished; messages already delivered but not handled are
    negatively acknowledged (when the consumer acknowledges) so another instance gets them at once.
    """
    subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
    inbox = nc.new_inbox()
    pending = 0
    last_activity = time.monotonic()
    lost: list[ConsumerLost] = []

    async def request() -> None:
        nonlocal pending
        want = batch - pending
        if want <= 0:
            return
        body = {"batch": want, "expires": int(expires_s * 1e9), "idle_heartbeat": int(heartbeat_s * 1e9)}
        await nc.publish(subject, msgspec.json.encode(body), reply=inbox)
        pending += want

    async def on_message(msg: Msg) -> None:
        nonlocal pending, last_activity
        last_activity = time.monotonic()
        status = inline_status(msg.headers)
        if status is None:
            if stopping.is_set() or lost:
                if nak_on_stop and msg.reply:
                    with contextlib.suppress(nats.errors.Error):
                        await msg.nak()
                return
            pending -= 1
            if pending <= batch // 2:
                await request()
            await handle(msg)
            return
        if status == "100" or lost:
            return  # idle heartbeat: the consumer is alive
        assert msg.headers is not None
        verdict = after_status(status, msg.headers, pending)
        if isinstance(verdict, ConsumerLost):
            lost.append(verdict)
        else:
            pending = verdict
            await request()

    sub = await nc.subscribe(inbox, cb=on_message, pending_msgs_limit=batch * 4 + 1024)
    read_headers_lazily(nc, sub)
    try:
        await request()
        reconnects = nc.stats["reconnects"]
        while not stopping.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stopping.wait(), WATCH_S)
            if lost:
                raise lost[0]
            if nc.stats["reconnects"] != reconnects:
                # A restarted server forgot our pull requests: start again now, not after the
                # missed heartbeats.
                raise ConsumerLost("reconnected")
            if time.monotonic() - last_activity > heartbeat_s * 3:
                raise ConsumerLost("no message nor heartbeat")
    finally:
        if not nc.is_closed:
            # Finishes the message in hand; the rest still queued go through on_message, which
            # hands them back (nak) since we are stopping or lost.
            if not stopping.is_set() and not lost:
                lost.append(ConsumerLost("consumer abandoned"))
            with contextlib.suppress(nats.errors.Error, asyncio.TimeoutError):
                await asyncio.wait_for(sub.drain(), 30)  # type: ignore[no-untyped-call]
        read_headers_lazily(nc, sub, lazily=False)


async def consume_stored(
    nc: NatsClient,
    stream: str,
    consumer: str,
    handle: Callable[[Msg], Awaitable[None]],
    handle_stored: StoredHandle,
    stopping: asyncio.Event,
    *,
    batch: int = 256,
    expires_s: float = 30.0,
    heartbeat_s: float = 1.0,
) -> None:
    """``consume`` for an ack-less consumer whose stored messages are wanted as bytes: each is handed
    to `handle_stored` (its sequence, subject and payload) in the connection's read loop as soon as
    it is read, with no message object, queue, task switch nor coroutine (on Hive's client,
    ``deliver_stored``; on another, this is ``consume`` with `handle`).

    Same pull requests, heartbeats and losses as ``consume``, in the same order. What must be
    awaited (what `handle_stored` returns, a stored message that came as an object for `handle`)
    is awaited in a task of its own, and the messages read meanwhile wait their turn behind it. On
    stop, what is in hand is finished and the rest is dropped (nothing to hand back: no acks).
    What `handle_stored` raises is logged and the next message goes on, as a subscription's
    callback does.
    """
    if not isinstance(nc, HiveNatsClient):
        await consume(nc, stream, consumer, handle, stopping, batch=batch, nak_on_stop=False)
        return
    await _consume_raw(
        nc,
        stream,
        consumer,
        handle,
        handle_stored,
        reply_stream_seq,
        None,
        stopping,
        batch,
        expires_s,
        heartbeat_s,
    )


async def consume_delivered(
    nc: NatsClient,
    stream: str,
    consumer: str,
    handle: Callable[[Msg], Awaitable[None]],
    handle_delivered: DeliveredHandle,
    stopping: asyncio.Event,
    *,
    batch: int = 256,
    expires_s: float = 30.0,
    heartbeat_s: float = 1.0,
) -> None:
    """``consume_stored`` for a consumer that acknowledges: `handle_delivered` gets each delivery's
    reply subject (what it acknowledges, and where the sequences are), subject and payload, in the
    read loop as it is read; it acknowledges them itself. On stop (or a lost consumer) what is in
    hand is finished, and what was delivered but not handed over is negatively acknowledged, so it
    comes again at once, as ``consume`` does. On another client than Hive's, this is ``consume``.
    """
    if not isinstance(nc, HiveNatsClient):
        await consume(nc, stream, consumer, handle, stopping, batch=batch, nak_on_stop=True)
        return

    def hand_back(reply: str) -> None:
        with contextlib.suppress(nats.errors.Error):
            nc.publish_soon(reply, Msg.Ack.Nak)

    await _consume_raw(
        nc,
        stream,
        consumer,
        handle,
        handle_delivered,
        bytes.decode,
        hand_back,
        stopping,
        batch,
        expires_s,
        heartbeat_s,
    )


async def _consume_raw(
    nc: HiveNatsClient,
    stream: str,
    consumer: str,
    handle: Callable[[Msg], Awaitable[None]],
    handle_raw: Callable[[Any, str, bytes], Awaitable[None] | None],
    first: Callable[[bytes], Any],
    hand_back: Callable[[str], None] | None,
    stopping: asyncio.Event,
    batch: int,
    expires_s: float,
    heartbeat_s: float,
) -> None:
    """``consume_stored`` and ``consume_delivered``: `first` makes the handler's first argument of
    a delivery's raw reply subject; `hand_back` (None: nothing to hand back) takes the reply
    subject of each delivery not handed over."""
    subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
    inbox = nc.new_inbox()
    raw_inbox = inbox.encode()
    half = batch // 2
    pending = 0
    asked = False
    """More messages should be asked for (by the loop below: a pull request is a publish)."""
    arrivals = 0
    """Messages and statuses read: the loop below notes when they last changed (no clock read per
    message)."""
    lost: list[ConsumerLost] = []
    waiting: deque[tuple[Any, str, bytes, bytes] | Msg] = deque()
    """Read while an earlier one was awaited: handed over in order once it is done."""
    busy: asyncio.Task[None] | None = None
    woken: asyncio.Future[object] | None = None

    def wake() -> None:
        if woken is not None and not woken.done():
            woken.set_result(None)

    def failed(where: str) -> None:
        log.exception("stored_handler_failed", stream=stream, consumer=consumer, stage=where)

    def give_back(item: tuple[Any, str, bytes, bytes] | Msg) -> None:
        if hand_back is not None:
            hand_back(item.reply if isinstance(item, Msg) else item[3].decode())

    async def finish(first_outcome: Awaitable[None]) -> None:
        """Await what a message left, then hand over those that waited, until none is left."""
        nonlocal busy
        try:
            try:
                await first_outcome
            except Exception:
                failed("awaited")
            while waiting and not stopping.is_set() and not lost:
                item = waiting.popleft()
                try:
                    if isinstance(item, tuple):
                        outcome = handle_raw(item[0], item[1], item[2])
                        if outcome is not None:
                            await outcome
                    else:
                        await handle(item)
                except Exception:
                    failed("awaited")
        finally:
            while waiting:
                give_back(waiting.popleft())
            busy = None

    def take(msg: Msg) -> None:
        """Hand over a stored message that came as an object: always something to await."""
        nonlocal busy
        if busy is not None:
            waiting.append(msg)
            return
        busy = asyncio.ensure_future(finish(handle(msg)))

    def arrive_stored(subject: bytes, reply: bytes, data: bytes) -> bool:
        """A stored message as bytes, handed over at once unless one before it is still in hand:
        what each message read runs."""
        nonlocal pending, asked, arrivals, busy
        if subject.startswith(raw_inbox):
            return False  # on the request's own subject: a status, judged as a message (arrive)
        arrivals += 1
        if stopping.is_set() or lost:
            if hand_back is not None:
                hand_back(reply.decode())
            return True
        pending -= 1
        if pending <= half and not asked:
            asked = True
            wake()
        try:
            if busy is not None:
                waiting.append((first(reply), subject.decode(), data, reply))
            else:
                outcome = handle_raw(first(reply), subject.decode(), data)
                if outcome is not None:
                    busy = asyncio.ensure_future(finish(outcome))
        except Exception:
            failed("read")
        return True

    def arrive(msg: Msg) -> None:
        nonlocal pending, asked, arrivals
        arrivals += 1
        status = inline_status(msg.headers)
        if status is None:  # a stored message the client would not hand over as bytes
            if stopping.is_set() or lost:
                give_back(msg)
                return
            pending -= 1
            if pending <= half and not asked:
                asked = True
                wake()
            try:
                take(msg)
            except Exception:
                failed("read")
            return
        if status == "100" or lost:
            return  # idle heartbeat: the consumer is alive
        assert msg.headers is not None
        verdict = after_status(status, msg.headers, pending)
        if isinstance(verdict, ConsumerLost):
            lost.append(verdict)
        else:
            pending = verdict
            asked = True
        wake()

    async def request() -> None:
        nonlocal pending
        want = batch - pending
        if want <= 0:
            return
        body = {"batch": want, "expires": int(expires_s * 1e9), "idle_heartbeat": int(heartbeat_s * 1e9)}
        pending += want  # before the publish: messages may come back before it returns
        try:
            await nc.publish(subject, msgspec.json.encode(body), reply=inbox)
        except BaseException:
            pending -= want
            raise

    async def unexpected(msg: Msg) -> None:
        arrive(msg)  # only if the client handed a message to the subscription's own queue

    sub = await nc.subscribe(inbox, cb=unexpected, pending_msgs_limit=batch * 4 + 1024)
    read_headers_lazily(nc, sub)
    deliver_directly(nc, sub, arrive)
    deliver_stored(nc, sub, arrive_stored)
    halt: asyncio.Future[object] = asyncio.ensure_future(stopping.wait())
    try:
        await request()
        reconnects = nc.stats["reconnects"]
        noted = arrivals
        last_activity = time.monotonic()
        while not stopping.is_set():
            if asked:
                asked = False
                await request()
                continue
            woken = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait((woken, halt), timeout=WATCH_S, return_when=asyncio.FIRST_COMPLETED)
            finally:
                woken.cancel()
                woken = None
            if lost:
                raise lost[0]
            if nc.stats["reconnects"] != reconnects:
                raise ConsumerLost("reconnected")  # a restarted server forgot our pull requests
            if arrivals != noted:
                noted = arrivals
                last_activity = time.monotonic()
            elif time.monotonic() - last_activity > heartbeat_s * 3:
                raise ConsumerLost("no message nor heartbeat")
    finally:
        halt.cancel()
        if not stopping.is_set() and not lost:
            lost.append(ConsumerLost("consumer abandoned"))
        deliver_stored(nc, sub, None)
        deliver_directly(nc, sub, None)
        read_headers_lazily(nc, sub, lazily=False)
        if not nc.is_closed:
            with contextlib.suppress(nats.errors.Error, asyncio.TimeoutError):
                await sub.unsubscribe()
        if busy is not None:  # the message in hand is finished; those waiting are handed back
            await asyncio.wait({busy}, timeout=30)


def at_the_end(received: int, left: int, asked_at: float, stored_at: float) -> bool:
    """Whether a burst (`received` messages, the last one stored at `stored_at` and followed by
    `left` pending, asked for at `asked_at`) read the log to its end, so the next one waits for the
    pace: an empty answer, or "nothing pending" after a message stored less than ``SUSPECT_END_S``
    before the ask."""
    if left > 0:
        return False
    return received == 0 or asked_at - stored_at <= SUSPECT_END_S


async def consume_bursts(
    nc: NatsClient,
    stream: str,
    consumer: str,
    handle: Callable[[Msg], Awaitable[None]],
    stopping: asyncio.Event,
    pace: Pace,
    *,
    batch: int = 1024,
    handle_stored: StoredHandle | None = None,
) -> None:
    """Read an ack-less consumer in bursts until `stopping` is set; raise ConsumerLost if it goes away.

    Each burst is a no-wait pull request for up to `batch` messages: the server sends what is stored
    and says when nothing is left. Once caught up (``at_the_end``), the next burst waits for `pace`;
    until then the next request follows at once. A status sent to
    the request's own reply subject ends the burst (404, 408) or says the consumer is lost; a
    stored message is never taken for a status, whatever headers it carries.

    With `handle_stored`, Hive's client hands over each stored message as its bytes
    (``deliver_stored``) and `handle_stored` gets its sequence, subject and payload, read off the
    reply subject once, instead of `handle` a message object (statuses, and every message on
    another client, still come as messages).
    """
    subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
    prefix = nc.new_inbox()
    arrived: deque[Msg | tuple[str, str, bytes]] = deque()
    signal = asyncio.Event()

    def arrive(msg: Msg) -> None:
        arrived.append(msg)
        signal.set()

    inbox = prefix.encode()

    def arrive_stored(subject: bytes, reply: bytes, data: bytes) -> bool:
        if subject.startswith(inbox):
            return False  # on the request's own subject: judged as a message, below
        arrived.append((subject.decode(), reply.decode(), data))
        signal.set()
        return True

    async def on_message(msg: Msg) -> None:
        arrive(msg)

    sub = await nc.subscribe(f"{prefix}.*", cb=on_message, pending_msgs_limit=batch * 4 + 1024)
    read_headers_lazily(nc, sub)
    deliver_directly(nc, sub, arrive)  # Hive's client: no queue nor task switch per message
    if handle_stored is not None:
        deliver_stored(nc, sub, arrive_stored)
    body = msgspec.json.encode({"batch": batch, "no_wait": True})
    reconnects = nc.stats["reconnects"]
    number = 0
    try:
        while not stopping.is_set():
            number += 1
            reply = f"{prefix}.{number}"
            asked_at = time.time()
            await nc.publish(subject, body, reply=reply)
            received = 0
            left = 0
            stored_ns = 0
            while True:
                if not arrived:
                    signal.clear()
                    try:
                        async with asyncio.timeout(ANSWER_TIMEOUT_S):
                            await signal.wait()
                    except TimeoutError:
                        raise ConsumerLost("a pull request went unanswered") from None
                    continue
                msg = arrived.popleft()
                if type(msg) is tuple:  # a stored message's subject, reply subject and payload
                    assert handle_stored is not None
                    tokens = ack_tokens(msg[1])
                    received += 1
                    outcome = handle_stored(int(tokens[5]), msg[0], msg[2])
                    if outcome is not None:
                        await outcome
                    left = int(tokens[8])
                    stored_ns = int(tokens[7])
                else:
                    assert isinstance(msg, Msg)
                    if msg.subject.startswith(prefix):  # a status, not a stored message
                        if msg.subject != reply:
                            continue  # the end of an earlier burst
                        status = inline_status(msg.headers)
                        if status in ("404", "408"):
                            break
                        description = (msg.headers or {}).get("Description", "")
                        raise ConsumerLost(f"status {status}: {description}")
                    received += 1
                    await handle(msg)
                    left = pending_after(msg)
                    stored_ns = int(ack_tokens(msg.reply)[7])
                if left == 0 or received >= batch:
                    break
            if nc.stats["reconnects"] != reconnects:
                raise ConsumerLost("reconnected")
            if not at_the_end(received, left, asked_at, stored_ns / 1e9):
                continue
            pacing = asyncio.ensure_future(pace())
            halt = asyncio.ensure_future(stopping.wait())
            try:
                await asyncio.wait({pacing, halt}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                pacing.cancel()
                halt.cancel()
    finally:
        if not nc.is_closed:
            with contextlib.suppress(nats.errors.Error, asyncio.TimeoutError):
                await sub.unsubscribe()
        read_headers_lazily(nc, sub, lazily=False)
        deliver_directly(nc, sub, None)
        deliver_stored(nc, sub, None)


LOST = (ConsumerLost, nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError)
"""What ends a ``consume`` without anybody asking it to: a lost consumer, server or connection."""


async def consume_forever(
    nc: NatsClient,
    stream: str,
    consumer: str | Callable[[], Awaitable[str]],
    handle: Callable[[Msg], Awaitable[None]],
    stopping: asyncio.Event,
    *,
    on_lost: Callable[[Exception], None],
    batch: int = 256,
    nak_on_stop: bool = True,
    close_consumer: Callable[[str], Awaitable[None]] | None = None,
    pace: Pace | None = None,
    handle_stored: StoredHandle | None = None,
    handle_delivered: DeliveredHandle | None = None,
) -> None:
    """``consume`` (with `pace`: ``consume_bursts``) until `stopping` is set; when the consumer is
    lost, open it again and go on.

    `consumer` is a durable's name, or opens a new consumer and returns its name (an ephemeral one
    that starts where the last left off). When it is lost, `on_lost` says why (a log line), and
    after a pause it is bound or opened again; the loop ends early only when the connection is
    closed. `close_consumer` releases a consumer after each run (deletes an ephemeral one rather
    than leaving it to expire). `handle_stored`: see ``consume_bursts`` (with `pace`) and
    ``consume_stored`` (without: for an ack-less consumer only); `handle_delivered`: see
    ``consume_delivered`` (a consumer that acknowledges, without `pace`).
    """
    while not stopping.is_set():
        name = ""
        try:
            name = consumer if isinstance(consumer, str) else await consumer()
            if pace is not None:
                await consume_bursts(
                    nc, stream, name, handle, stopping, pace, batch=batch, handle_stored=handle_stored
                )
            elif handle_delivered is not None:
                await consume_delivered(nc, stream, name, handle, handle_delivered, stopping, batch=batch)
            elif handle_stored is not None:
                await consume_stored(nc, stream, name, handle, handle_stored, stopping, batch=batch)
            else:
                await consume(nc, stream, name, handle, stopping, batch=batch, nak_on_stop=nak_on_stop)
        except asyncio.CancelledError:
            raise
        except LOST as exc:
            on_lost(exc)
            if not await pause_before_retry(nc):
                return
        finally:
            if name and close_consumer is not None and not nc.is_closed:
                with contextlib.suppress(Exception):
                    await close_consumer(name)
