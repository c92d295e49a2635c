"""Durable work consumers: the events a service must act on, split across its instances.

All instances of a service bind the same durable pull consumer, so each event is handled by one
of them. An event is acknowledged after its handler returns (the acknowledgement, which nobody waits on,
leaves with the connection's next write: ``shared.natsclient.ack_soon``); a handler may ask for a delayed
redelivery (``Retry``), and a handler that keeps failing, or a message that is not a valid event,
goes to ``hive.dlq.<service>`` with the reason. The service goes on either way.

A spec may also *claim* events (``WorkSpec.claim``): the instance an event was delivered to keeps
it, unacknowledged, while it works on it at its own pace, and settles it through its ``Ticket``
(acknowledge when done, hand it back to be delivered again, possibly later). That is how work is
split among instances through NATS itself: the server delivers each event to one of them, and the
events a dead instance held come back to the others once its acknowledgement wait is over. While
an event is held, in hand or claimed, the consumer tells the server now and then that it is still
being worked on, so a slow instance keeps what it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from shared.background import cancel_and_wait
from shared.bus import EventBus, event_msg_seq
from shared.logging import get_logger
from shared.natsclient import HiveNatsClient, ack_soon, delivery_count, progress_soon
from shared.pull import consume_forever
from shared.recorded import Recorded, Undecodable, decode_recorded
from shared.subjects import EVENTS_STREAM
from shared.telemetry import continued_span

log = get_logger("hive.work")


@dataclass(frozen=True)
class Retry:
    """Ask for this event again after `delay_s` (e.g. a retry backoff not yet elapsed)."""

    delay_s: float


Handler = Callable[[Recorded], Awaitable[Retry | None]]


class Ticket:
    """A delivered work event this instance holds: settle it exactly once (later calls do nothing)."""

    def __init__(
        self, msg: Msg, recorded: Recorded, on_settled: Callable[[Ticket], None] | None = None
    ) -> None:
        self.msg = msg
        self.recorded = recorded
        self.touched = time.monotonic()
        """When the server last heard of it (delivered, or told it is in progress)."""
        self.settled = False
        self._on_settled = on_settled

    async def ack(self) -> None:
        """Done with it: it is delivered to no one again."""
        await self._settle(self.msg.ack())

    def ack_soon(self) -> bool:
        """``ack`` without a write of its own (``shared.natsclient.ack_soon``): it leaves with the
        connection's next write, within ``DEFERRED_WRITE_S``. False, having done nothing, on a
        connection that is not Hive's (``await ack()`` then)."""
        if not isinstance(self.msg._client, HiveNatsClient):
            return False
        if self._mark_settled():
            ack_soon(self.msg)
        return True

    async def retry(self, delay_s: float = 0.0) -> None:
        """Deliver it again (to any instance) after `delay_s`."""
        await self._settle(self.msg.nak(delay=max(delay_s, 0.001)) if delay_s > 0 else self.msg.nak())

    async def _settle(self, settling: Awaitable[None]) -> None:
        if not self._mark_settled():
            settling.close()  # type: ignore[attr-defined]  # a coroutine never awaited
            return
        await settling

    def _mark_settled(self) -> bool:
        """True the first time only: from now on it is settled, and its holder is told."""
        if self.settled:
            return False
        self.settled = True
        if self._on_settled is not None:
            self._on_settled(self)
        return True


Claim = Callable[[Recorded, Ticket], Awaitable[bool]]
"""Called before the handler: True when the service keeps the event (it settles the ticket itself)."""


@dataclass
class WorkSpec:
    """One durable consumer: its name, the subjects it takes and the handler."""

    durable: str
    filters: list[str]
    handler: Handler
    batch: int = 64
    claim: Claim | None = None
    max_claims: int = 256
    """Claimed events an instance holds at most: beyond, it takes no more until some are settled,
    so what it cannot decide soon stays in the stream for another instance (and is not kept alive
    by telling the server, again and again, that it is in progress)."""
    ack_wait_s: float = 30.0
    """Until an event not acknowledged is delivered again: a dead instance's events go to another
    after this long (the service's WORK_ACK_WAIT_S unless the spec asks for less)."""
    max_deliver: int = 20
    max_ack_pending: int = 2000
    decode: Callable[[int, str, bytes], Recorded | Undecodable] = decode_recorded
    """Turns a delivered message into its event (a service that decoded it already may hand that
    over instead: ``services/router/reads.py``); it must give what ``decode_recorded`` gives."""
    handled: int = field(default=0, init=False)
    delivered: int = field(default=0, init=False)
    """Messages this instance received, undecodable and redelivered ones included."""


async def ensure_work_consumer(bus: EventBus, spec: WorkSpec) -> None:
    """Create the durable consumer, or update its filters and timings if they changed."""
    config = ConsumerConfig(
        name=spec.durable,
        durable_name=spec.durable,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=spec.ack_wait_s,
        max_deliver=-1,
        max_ack_pending=spec.max_ack_pending,
        filter_subjects=spec.filters,
        description=f"work of {bus.service}",
    )
    try:
        info = await bus.js.consumer_info(EVENTS_STREAM, spec.durable)
    except nats.js.errors.NotFoundError:
        info = None
    if info is not None:
        current = info.config
        if sorted(current.filter_subjects or [current.filter_subject or ""]) == sorted(spec.filters) and (
            current.ack_wait == spec.ack_wait_s
        ):
            return
    try:
        await bus.js.add_consumer(EVENTS_STREAM, config)
    except nats.js.errors.BadRequestError as exc:
        # Created concurrently by another instance with the same config: fine.
        if "already exists" not in str(exc.description):
            raise


class WorkConsumer:
    """Runs one WorkSpec in this instance until stopped."""

    def __init__(self, bus: EventBus, spec: WorkSpec) -> None:
        self.bus = bus
        self.spec = spec
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._toucher: asyncio.Task[None] | None = None
        self.in_hand: dict[int, Ticket] = {}
        """Events whose handler runs, by stream sequence."""
        self.claimed: dict[int, Ticket] = {}
        """Events claimed and not settled yet, by stream sequence."""
        self._room = asyncio.Event()
        self.log = log.bind(service=bus.service, durable=spec.durable)

    async def start(self) -> None:
        await ensure_work_consumer(self.bus, self.spec)
        self._task = asyncio.create_task(self._run(), name=f"work-{self.spec.durable}")
        self._toucher = asyncio.create_task(self._touch_held(), name=f"touch-{self.spec.durable}")

    async def stop(self, timeout: float = 10.0) -> None:
        """Finish the event in hand, acknowledge it, hand the fetched rest and what is claimed back,
        then stop."""
        self._stopping.set()
        self._room.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout)
            except TimeoutError:
                self._task.cancel()
            self._task = None
        await cancel_and_wait(self._toucher)
        self._toucher = None
        for ticket in list(self.claimed.values()):
            with contextlib.suppress(nats.errors.Error):
                await ticket.retry()  # another instance takes it at once
        self.claimed.clear()

    async def _touch_held(self) -> None:
        """Tell the server that what is held is still being worked on (so it is not delivered to
        another instance meanwhile), once half the acknowledgement wait has passed since it last
        heard of it. On Hive's client each word leaves with the connection's next write
        (``progress_soon``, within ``DEFERRED_WRITE_S``): a router behind a backlog holds hundreds of
        claims and told the server of each with a coroutine and a publish of its own."""
        half = self.spec.ack_wait_s / 2
        while True:
            await asyncio.sleep(half / 2)
            now = time.monotonic()
            for ticket in [*self.in_hand.values(), *self.claimed.values()]:
                if not ticket.settled and now - ticket.touched >= half:
                    ticket.touched = now
                    with contextlib.suppress(nats.errors.Error):
                        if not progress_soon(ticket.msg):
                            await ticket.msg.in_progress()

    def _claim_settled(self, ticket: Ticket) -> None:
        seq = ticket.recorded.seq
        if self.claimed.get(seq) is ticket:
            del self.claimed[seq]
            self._room.set()

    async def _run(self) -> None:
        def on_lost(exc: Exception) -> None:
            self.log.warning("work_consumer_lost", error=repr(exc))

        await consume_forever(
            self.bus.nc,
            EVENTS_STREAM,
            self.spec.durable,
            self._handle,
            self._stopping,
            on_lost=on_lost,
            batch=self.spec.batch,
        )

    async def _handle(self, msg: Msg) -> None:
        self.spec.delivered += 1
        seq = event_msg_seq(msg)
        try:
            item = self.spec.decode(seq, msg.subject, msg.data)
        except Exception as exc:  # decoding refuses with a reason; anything else must not stall the consumer
            item = Undecodable(seq, msg.subject, f"could not decode: {exc!r}")
        if isinstance(item, Undecodable):
            await self.bus.dead_letter(msg.subject, msg.data, item.reason, seq)
            await msg.term()
            return
        if self.spec.claim is not None:
            while len(self.claimed) >= self.spec.max_claims and not self._stopping.is_set():
                self._room.clear()
                await self._room.wait()
            ticket = Ticket(msg, item, self._claim_settled)
            self.claimed[seq] = ticket  # delivered again while held: the new delivery stands for it
            if await self.spec.claim(item, ticket):
                return
            self._claim_settled(ticket)
        self.in_hand[seq] = Ticket(msg, item)  # touched while in hand, if the handler takes long
        try:
            await self._run_handler(msg, item, seq, delivery_count(msg))
        finally:
            self.in_hand.pop(seq, None)

    async def _run_handler(self, msg: Msg, item: Recorded, seq: int, delivered: int) -> None:
        started = time.perf_counter()
        try:
            with continued_span(f"{self.bus.service} handle {item.event.type_name()}", msg.headers, seq=seq):
                outcome = await self.spec.handler(item)
        except asyncio.CancelledError:
            await msg.nak()
            raise
        except Exception as exc:
            if delivered >= self.spec.max_deliver:
                self.log.exception("work_handler_gave_up", seq=seq, subject=msg.subject, delivered=delivered)
                await self.bus.dead_letter(
                    msg.subject, msg.data, f"handler failed {delivered} times: {exc!r}", seq
                )
                await msg.term()
            else:
                self.log.warning(
                    "work_handler_failed", seq=seq, subject=msg.subject, delivered=delivered, error=repr(exc)
                )
                await msg.nak(delay=min(0.05 * 2**delivered, 5.0))
            return
        if isinstance(outcome, Retry):
            await msg.nak(delay=max(outcome.delay_s, 0.001))
            return
        if not ack_soon(msg):  # nobody waits on it: it leaves with the connection's next write
            await msg.ack()
        self.spec.handled += 1
        metrics = self.bus.metrics
        if metrics is not None:
            metrics.events_handled.labels(self.bus.service, item.event.type_name()).inc()
            metrics.handle_seconds.labels(self.bus.service).observe(time.perf_counter() - started)
