"""Projections: a pure ``apply(state, recorded) -> state`` kept up to date from the log.

The runner owns the I/O: it loads the last snapshot (state + last applied sequence + the last
sequence of every aggregate, needed for optimistic concurrency), reads the rest of the log with an
ordered, ack-less consumer of its own, applies each event in stream order, and snapshots now and
then. ``apply`` is deterministic (no clock, no I/O); for speed it may mutate and return ``state``.

Each stored message is taken as its bytes (sequence, subject, payload: ``_on_stored``), with no
message object built: one at a time as each is read (``shared.pull.consume_stored``), or, with a
``linger_s``, in bursts (``shared.pull.consume_bursts``): once caught up it waits up to that long
before asking for what was stored meanwhile, so a busy log costs one wake-up per burst instead of
one per event. Whoever needs the projection current does not wait for
the linger: ``wait_for`` (and so ``catch_up``) and ``urgent`` make it read at once and keep reading
until they are answered.
What a projection is (``ProjectionSpec``, its derived snapshot schema, ``fold``) lives in the pure
``shared/projection_spec.py``, so views and decisions import no NATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, TypeVar

import msgspec
from nats.aio.msg import Msg

from shared.background import cancel_and_wait
from shared.bus import ConcurrencyConflict, EventBus, event_msg_seq
from shared.filter_match import FilterMatch
from shared.logging import get_logger
from shared.metrics import ServiceMetrics
from shared.projection_spec import ProjectionSpec
from shared.pull import LOST
from shared.recorded import Recorded, Undecodable, decode_recorded
from shared.snapshots import SnapshotStore
from shared.subjects import (
    AGGREGATES,
    ALL_EVENTS,
    NOTICE_TYPES,
    REPORT_TYPES,
    aggregate_subjects,
    entity_subjects,
    whole_aggregates,
)

S = TypeVar("S")

UNREAD_AFTER_S = 0.05
"""A projection reading only some events, waiting this long for a sequence it has not seen, asks
the server whether it reads it at all (``wait_for``)."""
CATCH_UP_ALONE_AFTER = 200
"""A projection reading only some events that starts more than this many messages behind the end
of the log reads up to the end through one filter, skipping undecoded what its filters do not match
(``_catch_up_through_one``): catching up on a log whose subjects hold several messages (progress
reports; every agent's assignments, on one subject per agent since notices are version 3), a
consumer with several filter subjects costs nats-server 2.15 more per message the further behind it
starts. Measured (router and workflow views, three progress reports per task,
``python -m services.cli.bench.read_cost``, and restarts from a snapshot), with version 2 notices:
2,100 messages behind, 10-20 ms of server CPU filtered against 10 ms through one filter and 15 ms
more of the reader's (it is handed every message); 4,900 behind, 0.5-1.0 s against 10-30 ms and
40-50 ms; a rebuild of 70,000, 22-27 s against 0.3 s. With version 3 (20 agents, no progress,
median of five, server CPU in 10 ms ticks): 2,020 messages behind, 410-440 ms filtered against
10-20 ms (the reader 50-116 ms either way); 1,020 behind, 110-120 ms against 10 ms; 420, 20 ms
against 0-10; 220, 0-10 both: through one filter from 200 on."""
URGENT_POLL_S = 0.002
"""While someone waits for the projection (``wait_for``, ``urgent``), a read in bursts that came
back empty is made again after this long, not after the linger."""

log = get_logger("hive.projection")


def version_key(subject: str) -> str | None:
    """``<aggregate>.<id>`` of an event's subject, whose version the runner keeps: what
    ``parse_event_subject`` reads of it, without its tuple and formatting (each message read)."""
    parts = subject.split(".")
    count = len(parts)
    if count != 5:
        if count != 6:
            return None
        aggregate = parts[2]
        if not (
            (aggregate == "task" and parts[4] in REPORT_TYPES)
            or (aggregate == "agent" and parts[4] in NOTICE_TYPES)
        ):
            return None
    if parts[0] != "hive" or parts[1] != "evt":
        return None
    return parts[2] + "." + parts[3]


class Snapshot(msgspec.Struct, Generic[S]):
    seq: int
    state: S
    versions: dict[str, int]
    pruned: bool = False


class ProjectionRunner(Generic[S]):
    """Keeps one projection current for one service instance."""

    MAX_VERSIONS = 500_000

    def __init__(
        self,
        bus: EventBus,
        spec: ProjectionSpec[S],
        store: SnapshotStore | None = None,
        *,
        snapshot_every: int = 2000,
        snapshot_min_interval_s: float = 2.0,
        metrics: ServiceMetrics | None = None,
        linger_s: float = 0.0,
        max_versions: int | None = None,
    ) -> None:
        self.bus = bus
        self.max_versions = max_versions or self.MAX_VERSIONS
        """Aggregates whose last sequence is kept in memory; beyond, the oldest are asked of the
        server when a command needs them (``expected_version``)."""
        self.spec = spec
        self.store = store
        self.snapshot_every = snapshot_every
        self.snapshot_min_interval_s = snapshot_min_interval_s
        self.metrics = metrics
        self.linger_s = linger_s
        """0: each event is read as soon as it is stored; else, in bursts at most this far apart."""
        self.state: S = spec.initial()
        self.filters: list[str] | None = list(spec.reads) if spec.reads is not None else None
        """What this projection reads (None: everything)."""
        self._whole: frozenset[str] = whole_aggregates(spec.reads)
        """Aggregates it reads every event of: the only ones whose versions it can know."""
        self.seq = 0
        self.loaded_from_snapshot = 0
        self.delivered = 0
        """Messages handed to this runner, re-deliveries included: the cost of its reading."""
        self.ignored = 0
        """Messages skipped undecoded (``ProjectionSpec.ignores``)."""
        self.unread = 0
        """Messages its filters do not match, skipped while catching up through one filter."""
        self._ignores = spec.ignores
        self.versions: dict[str, int] = {}
        self.decode: Callable[[int, str, bytes], Recorded | Undecodable] = decode_recorded
        """Turns a stored message into its event: a service that decoded (or appended) it already
        may hand that over instead (``services/router/reads.py``); it must give what this gives."""
        self._pruned = False
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._waiter_ids = 0
        self._listeners: list[Callable[[Recorded], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._since_snapshot = 0
        self._last_snapshot_at = time.monotonic()
        self._snapshot_task: asyncio.Task[None] | None = None
        self._codec = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(Snapshot[spec.state_type])  # type: ignore[name-defined]
        self._stopping = asyncio.Event()
        self._hurry = asyncio.Event()
        self._urgent = 0
        self._asked_at = time.monotonic()
        """When (monotonic) the read now under way was asked for, at the latest: the last burst's end."""
        self._complete_at: float | None = None
        """When (monotonic) the log held nothing this view had not applied, as far as it knows."""

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the snapshot, then follow the log from the next sequence in the background."""
        await self._load_snapshot()
        self._task = asyncio.create_task(self._pump(), name=f"projection-{self.spec.name}")

    async def stop(self, *, snapshot: bool = True) -> None:
        self._stopping.set()
        await cancel_and_wait(self._task)
        self._task = None
        if self._snapshot_task is not None:
            await asyncio.gather(self._snapshot_task, return_exceptions=True)
        if snapshot:
            await self.snapshot()
        for _seq, _id, fut in self._waiters:
            if not fut.done():
                fut.cancel()
        self._waiters.clear()

    def add_listener(self, listener: Callable[[Recorded], None]) -> None:
        """Called after each applied event (e.g. to wake an HTTP request waiting for it)."""
        self._listeners.append(listener)

    # --- concurrency helpers --------------------------------------------------------------------

    def version(self, aggregate: str, aggregate_id: str) -> int | None:
        """Last sequence seen of an aggregate; None when it may have been pruned from memory or
        the projection does not read all of its events (then only the server knows)."""
        if aggregate not in self._whole:
            return None
        return self.seen_version(aggregate, aggregate_id)

    def seen_version(self, aggregate: str, aggregate_id: str) -> int | None:
        """Last sequence of the aggregate's events this projection reads (None: maybe pruned): its
        version when it reads them all, else a guess, for a caller that asks the server after a
        refusal."""
        found = self.versions.get(f"{aggregate}.{aggregate_id}")
        if found is not None:
            return found
        return None if self._pruned else 0

    async def expected_version(self, aggregate: str, aggregate_id: str) -> int:
        """The version to append against: from memory, or from the server when pruned or not read
        whole (``_vouched``)."""
        found = self.version(aggregate, aggregate_id)
        if found is None:
            version = await self.bus.aggregate_version(aggregate, aggregate_id)
            if aggregate in self._whole:
                return version  # pruned from memory: the view read all of it
            return self._vouched(aggregate_subjects(aggregate, aggregate_id), version)
        return found

    async def expected_entity_version(self, entity_id: str) -> int:
        """The version of everything about `entity_id` (``hive.evt.*.<id>.>``): the newest of its
        aggregates, to append against all of them at once."""
        found = [self.version(aggregate, entity_id) for aggregate in AGGREGATES]
        if any(version is None for version in found):
            subjects = entity_subjects(entity_id)
            version = await self.bus.last_sequence_of(subjects)
            if self._whole == frozenset(AGGREGATES):
                return version  # pruned from memory: the view read all of it
            return self._vouched(subjects, version)
        return max(version or 0 for version in found)

    def _vouched(self, subject_filter: str, server_version: int) -> int:
        """The server's version, if this view has applied (what it reads of) the log up to it: a
        decision made on the view saw everything it needed before that version. Else the decision
        may have missed something: refused, to be made again once the view caught up."""
        if server_version > self.seq:
            raise ConcurrencyConflict(subject_filter, server_version, "newer than the view")
        return server_version

    async def wait_for(self, seq: int, timeout: float = 10.0) -> None:
        """Return once the event at `seq` (and everything before it) is applied: for a projection
        reading only some events, once everything it reads up to `seq` is."""
        if self.seq >= seq:
            return
        self._hurry.set()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiter_ids += 1
        heapq.heappush(self._waiters, (seq, self._waiter_ids, fut))
        try:
            async with asyncio.timeout(timeout):
                while self.filters is not None and not fut.done():
                    # Most waits are for events it reads, which come; else the server says.
                    await asyncio.wait({asyncio.shield(fut)}, timeout=UNREAD_AFTER_S)
                    if not fut.done():
                        await self._reach(seq)
                await asyncio.shield(fut)
        finally:
            if not fut.done():
                fut.cancel()

    async def _reach(self, seq: int) -> None:
        """The event at `seq` may be one this projection does not read: ask the server for the end
        of the log, then for the last event it reads; once that is applied, nothing it reads up to
        `seq` (or that end, if `seq` is not stored yet) is missing."""
        assert self.filters is not None
        stored = await self.bus.last_sequence()
        lasts = await asyncio.gather(*(self.bus.last_sequence_of(f) for f in self.filters))
        last = max(lasts, default=0)
        if last > self.seq:
            self._hurry.set()
            inner: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiter_ids += 1
            heapq.heappush(self._waiters, (last, self._waiter_ids, inner))
            await asyncio.shield(inner)
        self._reached(min(seq, stored))

    def _reached(self, seq: int) -> None:
        """Everything this projection reads up to `seq` is applied: say so to who waits."""
        self.seq = max(self.seq, seq)
        waiters = self._waiters
        while waiters and waiters[0][0] <= self.seq:
            _s, _i, fut = heapq.heappop(waiters)
            if not fut.done():
                fut.set_result(None)

    @contextlib.asynccontextmanager
    async def urgent(self) -> AsyncIterator[None]:
        """While inside, a projection read in bursts reads as soon as events are stored (e.g. while an
        HTTP request waits for an answer that a listener will see)."""
        self._urgent += 1
        self._hurry.set()
        try:
            yield
        finally:
            self._urgent -= 1

    def lag_s(self) -> float:
        """How far behind the log this view may be, in seconds: everything stored more than this
        long ago is applied. A decision that judges how long something has *not* happened must
        count only up to then (``services/balancer``). A reader in bursts knows it each time a
        burst ends at the end of the log (``_pace``) or a ``catch_up`` returns; before either,
        ``inf``. A reader of each event as it is stored does not know it: 0, as if current.
        The end of a burst is the server's word, which a busy server gives too soon: what it
        would cost to be wrong is checked with ``unapplied_since``."""
        if self.linger_s <= 0:
            return 0.0
        if self._complete_at is None:
            return math.inf
        return max(0.0, time.monotonic() - self._complete_at)

    async def unapplied_since(self) -> float | None:
        """When the first event this view has not applied was stored (Unix seconds, the server's
        clock), asked of the server by one direct get; None if the log held none when it answered.
        Everything stored before that time is applied: the log is in the order it was stored.

        ``lag_s`` takes the reader's word: a burst that ended with nothing pending. A busy server
        says so of a consumer seconds behind (measured at 500 tasks/s on nats-server 2.15: bursts
        of 1 to 100 events, each with "nothing pending", 2-4 s behind the log while ``lag_s`` said
        0.05 s), so a decision a too-late horizon makes futile checks it here. For a projection
        reading only some events the first one after its sequence may be one it does not read:
        the time is then earlier than need be, never later."""
        return await self.bus.stored_after(self.seq)

    def _complete_since(self, asked_at: float) -> None:
        """Everything stored before `asked_at` (monotonic) is applied."""
        if self._complete_at is None or asked_at > self._complete_at:
            self._complete_at = asked_at

    async def _pace(self) -> None:
        """When to read the next burst: soon while somebody waits, else after the linger (or when
        somebody starts waiting). Called when a burst ended at the end of the log: everything
        stored before that burst was asked for is applied."""
        self._complete_since(self._asked_at)
        try:
            if self._urgent or any(not fut.done() for _seq, _id, fut in self._waiters):
                await asyncio.sleep(URGENT_POLL_S)
                return
            self._hurry.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.linger_s):
                    await self._hurry.wait()
        finally:
            self._asked_at = time.monotonic()  # the next burst is asked for after this

    async def catch_up(self, timeout: float = 10.0) -> int:
        """Apply everything the stream holds right now (of what it reads); returns that sequence."""
        asked_at = time.monotonic()
        last = await self.bus.last_sequence()
        if self.filters is not None and self.seq < last:
            async with asyncio.timeout(timeout):
                await self._reach(last)
        await self.wait_for(last, timeout)
        self._complete_since(asked_at)
        return last

    # --- applying -------------------------------------------------------------------------------

    def _add_version(self, key: str, seq: int) -> None:
        """Keep the version of an aggregate not in ``versions`` (any more), pruning the oldest
        beyond ``max_versions``."""
        versions = self.versions
        versions[key] = seq
        if len(versions) > self.max_versions:
            self._pruned = True
            excess = len(versions) - self.max_versions
            for old in list(versions)[: excess + self.max_versions // 10]:
                del versions[old]

    def apply_message(self, seq: int, subject: str, data: bytes) -> str | None:
        """Apply one stored message; already-applied sequences change nothing (idempotence).

        Returns why the message could not be applied (it does not decode, or ``apply`` raised), for
        the caller to dead-letter; the projection goes on with the next one either way.
        """
        self.delivered += 1
        if seq <= self.seq:
            return None
        key = version_key(subject)
        if key is not None:
            versions = self.versions
            if versions.pop(key, None) is None or len(versions) >= self.max_versions:
                self._add_version(key, seq)  # one more aggregate than before: the bound may prune
            else:
                versions[key] = seq  # moved to the end: the newest, pruned last
        if (self._ignores is not None and self._ignores(self.state, subject)) or (
            self.spec.ignores_stored is not None and self.spec.ignores_stored(self.state, subject, data)
        ):
            self.ignored += 1
            self._since_snapshot += 1
            self._reached(seq)
            return None
        item = self.decode(seq, subject, data)
        problem: str | None = None
        if isinstance(item, Recorded):
            try:
                self.state = self.spec.apply(self.state, item)
            except Exception as exc:
                log.exception("projection_apply_failed", projection=self.spec.name, seq=seq, subject=subject)
                problem = f"projection {self.spec.name} could not apply it: {exc!r}"
            for listener in self._listeners:
                try:
                    listener(item)
                except Exception:
                    log.exception("projection_listener_failed", projection=self.spec.name, seq=seq)
        else:
            problem = item.reason
        self._since_snapshot += 1
        self._reached(seq)
        return problem

    async def _pump(self) -> None:
        """Follow the log from the next sequence, with a consumer of its own (resumed when lost);
        far behind, first catch up through one filter."""
        if self.filters is not None and await self._far_behind():
            await self._catch_up_through_one(self.filters)
        self._asked_at = time.monotonic()
        await self.bus.follow_raw(
            self._on_msg,
            self._stopping,
            subject_filter=self.filters or ALL_EVENTS,
            start_seq=self.seq + 1,
            label=f"projection {self.spec.name}",
            pace=self._pace if self.linger_s > 0 else None,
            stored=self._on_stored,
        )

    async def _far_behind(self) -> bool:
        """More than ``CATCH_UP_ALONE_AFTER`` messages stored after this view's sequence (if the
        server does not say, the filtered read goes on as if not)."""
        try:
            last = await self.bus.last_sequence()
        except LOST as exc:
            log.warning("projection_end_unknown", projection=self.spec.name, error=repr(exc))
            return False
        return last - self.seq > CATCH_UP_ALONE_AFTER

    async def _catch_up_through_one(self, filters: list[str]) -> None:
        """Read to the end of the log through ``ALL_EVENTS``, in bursts: what `filters` match is
        applied as the filtered read would, the rest skipped undecoded, touching no version (the
        filtered read never sees it), only the sequence reached. At the end (the first burst that
        ends there) the filtered consumer takes over after that sequence; a consumer lost on the
        way is opened again after the last message handed over (``follow_raw``)."""
        at_end = asyncio.Event()
        matches = FilterMatch(filters)  # asked of every message: answered once per subject shape

        def stored(seq: int, subject: str, data: bytes) -> Awaitable[None] | None:
            if matches(subject):
                return self._on_stored(seq, subject, data)
            self.delivered += 1
            self.unread += 1
            self._reached(seq)
            return None

        async def handle(msg: Msg) -> None:
            outcome = stored(event_msg_seq(msg), msg.subject, msg.data)
            if outcome is not None:
                await outcome

        async def reached_end() -> None:
            at_end.set()

        started = self.seq
        await self.bus.follow_raw(
            handle,
            at_end,
            subject_filter=ALL_EVENTS,
            start_seq=self.seq + 1,
            label=f"projection {self.spec.name} catching up",
            pace=reached_end,
            stored=stored,
        )
        log.info("projection_caught_up_through_one", projection=self.spec.name, since=started, seq=self.seq)

    async def _on_msg(self, msg: Msg) -> None:
        outcome = self._on_stored(event_msg_seq(msg), msg.subject, msg.data)
        if outcome is not None:
            await outcome

    def _on_stored(self, seq: int, subject: str, data: bytes) -> Awaitable[None] | None:
        """Apply a stored message; what it could not apply is dead-lettered (the coroutine
        returned), then the snapshot is considered, as after any message."""
        problem = self.apply_message(seq, subject, data)
        if problem is not None:
            return self._dead_letter(subject, data, seq, problem)
        self._after_message()
        return None

    def _after_message(self) -> None:
        if self._since_snapshot % 256 == 0:
            if self.metrics:
                self.metrics.projection_seq.labels(self.bus.service, self.spec.name).set(self.seq)
            self._maybe_snapshot()

    async def _dead_letter(self, subject: str, data: bytes, seq: int, reason: str) -> None:
        """Keep what this projection could not apply; a failure to do so is logged, and it goes on."""
        try:
            await self.bus.dead_letter(subject, data, reason, seq)
        except Exception as exc:
            log.warning("dead_letter_failed", projection=self.spec.name, seq=seq, error=repr(exc))
        self._after_message()

    # --- snapshots ------------------------------------------------------------------------------

    def _maybe_snapshot(self) -> None:
        if self.store is None or self._since_snapshot < self.snapshot_every:
            return
        if time.monotonic() - self._last_snapshot_at < self.snapshot_min_interval_s:
            return
        if self._snapshot_task is not None and not self._snapshot_task.done():
            return
        self._snapshot_task = asyncio.create_task(self.snapshot())

    def encode_snapshot(self) -> bytes:
        snap = Snapshot(seq=self.seq, state=self.state, versions=self.versions, pruned=self._pruned)
        return self._codec.encode(snap)

    async def snapshot(self) -> None:
        """Save state, sequence and aggregate versions (encoded synchronously, so consistent)."""
        if self.store is None or self.seq == 0:
            return
        blob = self.encode_snapshot()
        seq = self.seq
        self._since_snapshot = 0
        self._last_snapshot_at = time.monotonic()
        try:
            await self.store.save(self.spec.name, self.spec.schema, seq, blob)
        except Exception:
            log.exception("snapshot_save_failed", projection=self.spec.name, seq=seq)
            return
        log.debug("snapshot_saved", projection=self.spec.name, seq=seq, bytes=len(blob))

    async def _load_snapshot(self) -> None:
        if self.store is None:
            return
        found = await self.store.load(self.spec.name, self.spec.schema)
        if found is None:
            return
        seq, blob = found
        try:
            snap = self._decoder.decode(blob)
        except msgspec.DecodeError:
            log.warning("snapshot_unreadable", projection=self.spec.name, seq=seq)
            return
        self.state = snap.state
        self.seq = snap.seq
        self.versions = snap.versions
        self._pruned = snap.pruned
        self.loaded_from_snapshot = snap.seq
        log.info("snapshot_loaded", projection=self.spec.name, seq=snap.seq)


async def rebuild(bus: EventBus, spec: ProjectionSpec[S], *, stop_seq: int | None = None) -> tuple[S, int]:
    """A fresh projection from the whole log (up to `stop_seq`): for checks and time travel."""
    state = spec.initial()
    seq = 0
    matches = FilterMatch(spec.reads) if spec.reads is not None else None
    async for item in bus.read(stop_seq=stop_seq):
        seq = item.seq
        if (
            isinstance(item, Recorded)
            and (matches is None or matches(item.subject))
            and (spec.ignores is None or not spec.ignores(state, item.subject))
        ):
            state = spec.apply(state, item)
    return state, seq
