"""The query model's shell: resume from the file, catch up from the log, follow, write in batches.

On start it claims this gateway's file (``files.py``), resumes from the sequence the file holds
(or from 0 when the file is new, of an old schema, or was built from another stream), reads the
log from there to where the gateway's projection stands, then follows that projection (a listener:
each event is read and decoded once per gateway). While catching up, events are folded in memory
(``view.py``) into the model's own state; once following, the projection has folded each event into
the same fleet and workflows already, and the model only notes which of its objects changed (no
second fold). The rows noted go into a write buffer, written in one transaction per batch: every
``flush_events`` events, every ``flush_interval_s`` while reads come (``unread_flush_interval_s``
while none do: fewer rewrites of the rows of tasks still moving on), and at once when a read waits
for a sequence (``flushed_to``). Ended work older than ``retention_s`` is deleted every ``purge_interval_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections.abc import AsyncGenerator
from typing import Any

from nats.aio.msg import Msg

from services.gateway.query.files import ClaimedFile, claim
from services.gateway.query.store import WRITE_SLICE_ROWS, QueryStore
from services.gateway.query.view import (
    Changes,
    QueryState,
    Rows,
    Specs,
    apply_query,
    note_applied,
    restored,
    row_count,
    rows_in_slices,
    rows_of,
)
from services.gateway.view import GatewayState
from shared.bus import EventBus, event_msg_seq
from shared.logging import get_logger
from shared.natsclient import pending_after
from shared.projection import ProjectionRunner
from shared.recorded import Recorded, decode_recorded

log = get_logger("hive.gateway.query")

FLUSH_EVENTS = 5_000
"""Events applied before a write whatever the interval: bounds the buffer (the objects it refers
to, and the one write a read that comes then waits for) when no read came for a while."""
CATCH_UP_FLUSH_EVENTS = 5_000
FLUSH_INTERVAL_S = 0.1
"""Between two writes while reads come: a read waits for the write of everything applied, so a
small buffer answers it sooner."""
UNREAD_FLUSH_INTERVAL_S = 5.0
"""Between two writes while no read came for ``READS_RECENT_S``: a task's row is rewritten at each
write while the task moves on (submitted, assigned, ended), so writing seldom folds its steps into
fewer rewrites: a task that lives about a second (the load of ``hive bench throughput``) is written
about 2 times with 1 s between writes, 1.3 times with 5 s, and each write's commit and WAL
pages are shared by more rows. No answer changes: a read always waits for the write of everything
applied first (``flushed_to``); the first read after a quiet while waits for that larger write
(tens of milliseconds at a few hundred tasks per second)."""
READS_RECENT_S = 10.0
"""A read within this long keeps the short interval (a dashboard polling every few seconds)."""
WRITE_PAUSE_RATIO = 3.0
"""A pause lasts this many times the slice before it took (wall-clock: encoding, SQLite's thread,
and waiting for a core on a busy machine), at least ``WRITE_PAUSE_S``: a paced write keeps about a
quarter of a core. With a fixed 5 ms pause the 5-s write at 500 tasks/s kept the gateway at 20 to 30
ms of CPU per 50 ms for ~0.3 s (``hive bench assign --services all``)."""
WRITE_PAUSE_MAX_S = 0.05
"""The longest pause: a slice slowed by a busy machine does not stretch the write for long."""
ABSORB_ROUNDS = 3
"""A paced write takes what was noted while its slices went, paced again while more than a slice,
this many times at most; the last time at once (it ends the write)."""
WRITE_RETRY_S = 1.0
WRITE_PAUSE_S = 0.005
"""The shortest pause between two slices of a write nobody waits for (``_parts``: each slice encoded
after the pause before it; ``WRITE_PAUSE_RATIO``): the core goes to the router and nats-server.
2,500 tasks and their 2,500 decisions (5 s at 500 tasks/s) were ~60 ms of CPU at once; paced, 20
slices of a few ms each."""


class _Closed(Exception):
    """The model closed while a paced write was under way. The write is rolled back: the slices
    still to come would be encoded from the projection, which applies on while a closed model notes
    nothing more, under the sequence the model last noted (rows newer than the file's sequence:
    a resume would apply their events twice)."""


class QueryModel:
    def __init__(
        self,
        bus: EventBus,
        projection: ProjectionRunner[GatewayState],
        *,
        home: str,
        instance: str = "",
        retention_s: float = 0.0,
        flush_events: int | None = None,
        flush_interval_s: float | None = None,
        unread_flush_interval_s: float | None = None,
    ) -> None:
        self.bus = bus
        self.projection = projection
        self.home = home
        self.instance = instance
        self.retention_s = retention_s
        self.flush_events = flush_events or FLUSH_EVENTS
        self.flush_interval_s = flush_interval_s or FLUSH_INTERVAL_S
        self.unread_flush_interval_s = max(
            self.flush_interval_s, unread_flush_interval_s or UNREAD_FLUSH_INTERVAL_S
        )
        self._read_at = float("-inf")
        """When a read last waited for the file (monotonic seconds)."""
        self.purge_interval_s = min(60.0, max(1.0, retention_s / 10))
        self._own = QueryState()
        """What the model folds itself while catching up (the projection's once it follows)."""
        self.changes = Changes()
        self.specs: Specs = {}
        """Submissions encoded by earlier writes of their task (``task_row``)."""
        self.seq = 0
        """Last sequence applied in memory."""
        self.flushed = 0
        """Last sequence the file holds (written with its rows)."""
        self.purged_before_ts = 0.0
        self.attached = False
        self.caught_up = asyncio.Event()
        self.catch_up_events = 0
        self.catch_up_s = 0.0
        self._claim: ClaimedFile | None = None
        self._store: QueryStore | None = None
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._waiter_ids = 0
        self._kick = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._writing: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self.catch_up_flush_events = CATCH_UP_FLUSH_EVENTS
        self.write_pause_s = WRITE_PAUSE_S
        self.slice_rows = WRITE_SLICE_ROWS
        self._slice_began = 0.0
        """When the slice now written began (monotonic): the pause after it is in proportion."""
        self._stopping = False

    @property
    def store(self) -> QueryStore:
        if self._store is None:
            raise RuntimeError("query model is not open")
        return self._store

    @property
    def path(self) -> str:
        return str(self._claim.path) if self._claim is not None else ""

    # --- lifecycle ----------------------------------------------------------------------------------

    async def open(self) -> None:
        """Claim the file, resume from it (or start it afresh) and restore what can still change."""
        self._claim = claim(self.home, self.instance)
        try:
            self._store = await QueryStore(self._claim.path).open()
            bounds = await self.bus.log_bounds()
            meta = await self.store.meta()
            seq = int(meta.get("seq") or 0)
            reason = self.store.reset_reason
            if seq and meta.get("stream_created") != bounds.created:
                reason = "built from another event stream"
            elif seq > bounds.last_seq:
                reason = f"at sequence {seq}, beyond the end of the log ({bounds.last_seq})"
            if seq and reason:
                await self.store.reset()
                seq, meta = 0, {}
            if reason:
                log.info("query_model_rebuilding", file=self.path, reason=reason)
            await self.store.set_meta("stream_created", bounds.created)
            self.seq = self.flushed = seq
            self.purged_before_ts = float(meta.get("purged_before_ts") or 0.0)
            self._own = restored(*await self.store.live())
        except BaseException:
            await self.release()
            raise
        log.info("query_model_opened", file=self.path, seq=seq, live_tasks=len(self._own.fleet.tasks))

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._run(), name="query-model"))

    async def stop(self) -> None:
        """Write what is applied, then let the file go (a restart resumes from there)."""
        self._stopping = True  # the last write goes at once
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._writing is not None:
            await asyncio.gather(self._writing, return_exceptions=True)
        if self._store is not None and not self._closed:
            try:
                await self._flush()
            except Exception:  # the file keeps its last consistent batch: the next start resumes there
                log.exception("query_model_write_failed", file=self.path, seq=self.position)
        self._closed = True
        for _seq, _id, fut in self._waiters:
            if not fut.done():
                fut.cancel()
        self._waiters.clear()
        await self.release()

    async def release(self) -> None:
        """Close the file and drop its lock (again: nothing); ``stop`` writes first, this does not."""
        try:
            if self._store is not None:
                store, self._store = self._store, None
                await store.close()
        finally:
            if self._claim is not None:
                self._claim.release()

    async def _run(self) -> None:
        await self._catch_up()
        self._tasks.append(asyncio.create_task(self._flush_forever(), name="query-model-flush"))
        if self.retention_s > 0:
            self._tasks.append(asyncio.create_task(self._purge_forever(), name="query-model-purge"))

    # --- catching up, then following ----------------------------------------------------------------

    async def _catch_up(self) -> None:
        """Read the log from the file's sequence to where the projection stands, then listen to it.

        While a batch is written (in SQLite's thread) the next one is read and applied: at most
        one write in flight, so memory holds at most two batches.
        """
        started = time.monotonic()
        first = self.seq
        while True:
            target = self.projection.seq
            if self.seq >= target:
                self.projection.add_listener(self._on_event)  # no await since the check: no gap
                self.attached = True
                self._own = QueryState()  # the projection's fleet and workflows hold the same now
                break
            if (await self.bus.log_bounds()).first_seq > target:
                self.seq = target  # what is left to read is gone from the log (STREAM_MAX_AGE_S)
                continue
            await self._read_up_to(target)
        if self._writing is not None:
            await self._writing
            self._writing = None
        await self._write_until_done()
        self.catch_up_events = self.seq - first
        self.catch_up_s = time.monotonic() - started
        self.caught_up.set()
        log.info(
            "query_model_caught_up",
            file=self.path,
            seq=self.seq,
            events=self.catch_up_events,
            seconds=round(self.catch_up_s, 3),
            events_per_s=round(self.catch_up_events / self.catch_up_s) if self.catch_up_s > 0 else None,
        )

    async def _read_up_to(self, target: int) -> None:
        """Apply the log from the next sequence until `target` (or the end of what is stored)."""
        stopping = asyncio.Event()

        async def handle(msg: Msg) -> None:
            seq = event_msg_seq(msg)
            if seq <= self.seq or stopping.is_set():
                return
            item = decode_recorded(seq, msg.subject, msg.data)
            if isinstance(item, Recorded):
                self._apply(item)
            self.seq = seq
            if seq >= target or pending_after(msg) == 0:
                stopping.set()
            elif self.changes.events >= self.catch_up_flush_events:
                await self._write_behind()

        await self.bus.follow_raw(handle, stopping, start_seq=self.seq + 1, label="query model catch-up")

    async def _write_behind(self) -> None:
        """Start writing the buffer once the write before it is done (retried until it succeeds:
        the model must not skip a batch)."""
        if self._writing is not None:
            await self._writing
        self._writing = asyncio.create_task(self._write_until_done()) if self.changes.events else None

    async def _write_until_done(self) -> None:
        while True:
            try:
                await self._flush()
                return
            except Exception:
                log.exception("query_model_write_failed", file=self.path, seq=self.position)
                await asyncio.sleep(WRITE_RETRY_S)

    @property
    def state(self) -> QueryState:
        """The fleet and workflows the rows are written from: the model's own while it catches up,
        the gateway projection's once it follows."""
        if self.attached:
            view = self.projection.state
            return QueryState(fleet=view.fleet, workflows=view.workflows)
        return self._own

    def _apply(self, recorded: Recorded) -> None:
        try:
            apply_query(self._own, self.changes, recorded)
        except Exception:
            log.exception("query_model_apply_failed", seq=recorded.seq, subject=recorded.subject)

    def _on_event(self, recorded: Recorded) -> None:
        """Listener on the gateway's projection (called once it applied the event): note the rows
        the event changed, and ask for a write when one is due."""
        if self._closed or recorded.seq <= self.seq:
            return
        view = self.projection.state
        try:
            note_applied(view.fleet, view.workflows, self.changes, recorded)
        except Exception:
            log.exception("query_model_apply_failed", seq=recorded.seq, subject=recorded.subject)
        self.seq = recorded.seq
        if self.changes.events >= self.flush_events or (self._waiters and self._waiters[0][0] <= self.seq):
            self._kick.set()

    @property
    def position(self) -> int:
        """The sequence the memory reflects: with the projection's, messages it could not decode too,
        but only while it follows the projection: once closed it applies nothing more, and a write
        must not claim what the projection applied since (the file would skip those events)."""
        return max(self.seq, self.projection.seq) if self.attached and not self._closed else self.seq

    # --- writing ------------------------------------------------------------------------------------

    async def _flush_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.flush_wait_s(time.monotonic()))
            self._kick.clear()
            try:
                await self._flush()
            except _Closed:
                return  # nothing more is written
            except Exception:
                log.exception("query_model_write_failed", file=self.path, seq=self.position)
                await asyncio.sleep(WRITE_RETRY_S)

    async def _flush(self) -> None:
        """Write the buffer with the sequence it reflects, in one transaction; on failure the buffer
        is kept (merged with what came meanwhile), so nothing is skipped. Writes happen one at a
        time, in order: the file's sequence never goes back."""
        async with self._flush_lock:
            position = self.position
            if self._closed or (position <= self.flushed and not self.changes.events):
                return
            taken = [self.changes]
            self.changes = Changes()
            try:
                if self.attached and not self._stopping:
                    parts = self._parts(taken)
                    try:
                        position = await self.store.write_parts(parts)
                    finally:
                        await parts.aclose()
                else:  # catching up (reading on meanwhile into its own buffer) or stopping
                    # Encoded now: the objects change with the next events.
                    rows = rows_of(taken[0], position, self.specs)
                    await self.store.write(rows, between=self._between_slices)
            except BaseException:
                for older in reversed(taken):
                    self.changes = _merged(older, self.changes)
                raise
            self.flushed = max(self.flushed, position)
        waiters = self._waiters
        while waiters and waiters[0][0] <= self.flushed:
            _seq, _id, fut = heapq.heappop(waiters)
            if not fut.done():
                fut.set_result(None)

    async def _parts(self, taken: list[Changes]) -> AsyncGenerator[Rows]:
        """The rows of the buffer taken (``taken[0]``), encoded a slice at a time, each just before it
        is stored, with the core given away before every slice but the first (``_between_slices``):
        the encoding, not only SQLite's work, comes in pieces (2,500 tasks and their decisions were
        ~20 ms or more of the event loop at once).

        The objects change while the slices go, so a row encoded early may be stale by the last:
        every row noted since the write began (the live buffer, taken too, into `taken`) is
        encoded again in a later part, the last part taking at once, with the sequence the write
        stores, all that was noted up to it. So each row stored is its state at that sequence
        (``Rows``: consistent with its seq), as one write at once would have stored it. What came
        meanwhile is paced as well while it is more than a slice, for at most ``ABSORB_ROUNDS``."""
        size = self.slice_rows
        pending = taken[0]
        self._slice_began = time.monotonic()
        first = True
        for rounds in range(1, ABSORB_ROUNDS + 1):
            slices = rows_in_slices(pending, size, lambda: self.position, self.specs)
            while True:
                if not first:
                    await self._between_slices()  # before encoding: a slice is as fresh as it is stored
                first = False
                if self._closed:
                    raise _Closed
                part = next(slices, None)
                if part is None:
                    break
                yield part
            pending, self.changes = self.changes, Changes()
            taken.append(pending)
            if row_count(pending) <= size or rounds == ABSORB_ROUNDS:
                if self._closed:
                    raise _Closed
                yield rows_of(pending, self.position, self.specs)  # no await since the take
                return

    async def _between_slices(self) -> None:
        """Paced only while following and nobody waits: a read waiting for the file (it kicks the
        writer, which ends the pause and the pacing of the rest of this write), catching up at start
        and stopping want the write done at once."""
        if not self.attached or self._stopping or self._waiters or self.write_pause_s <= 0:
            return
        took = time.monotonic() - self._slice_began
        pause = min(WRITE_PAUSE_MAX_S, max(self.write_pause_s, took * WRITE_PAUSE_RATIO))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._kick.wait(), pause)
        self._slice_began = time.monotonic()

    def flush_wait_s(self, now: float) -> float:
        """How long the buffer waits for its next write (unless it fills or a read waits): short
        while reads come, longer while none did (``UNREAD_FLUSH_INTERVAL_S``)."""
        if now - self._read_at < READS_RECENT_S:
            return self.flush_interval_s
        return self.unread_flush_interval_s

    async def flushed_to(self, seq: int, timeout: float) -> None:
        """Return once the file holds everything up to `seq` (writing what is applied at once)."""
        self._read_at = time.monotonic()
        if self.flushed >= seq:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiter_ids += 1
        heapq.heappush(self._waiters, (seq, self._waiter_ids, fut))
        if self.attached and self.position >= seq:
            self._kick.set()
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        finally:
            if not fut.done():
                fut.cancel()

    # --- retention ----------------------------------------------------------------------------------

    async def _purge_forever(self) -> None:
        while True:
            try:
                await self.purge(time.time())
            except Exception:
                log.exception("query_model_purge_failed", file=self.path)
            await asyncio.sleep(self.purge_interval_s)

    async def purge(self, now: float) -> tuple[int, int]:
        before = now - self.retention_s
        tasks, workflows = await self.store.purge(before)
        self.purged_before_ts = before
        if tasks or workflows:
            log.info("query_model_purged", tasks=tasks, workflows=workflows, ended_before_ts=before)
        return tasks, workflows

    # --- health -------------------------------------------------------------------------------------

    def _live_tasks(self) -> int:
        """Tasks not ended in the memory the rows are written from (the projection's fleet keeps
        ended ones too, listed in its ``finished``)."""
        fleet = self.state.fleet
        return len(fleet.tasks) - len(fleet.finished) if self.attached else len(fleet.tasks)

    def details(self) -> dict[str, Any]:
        return {
            "file": self.path,
            "seq": self.position,
            "flushed_seq": self.flushed,
            "catching_up": not self.attached,
            "catch_up_events": self.catch_up_events,
            "catch_up_s": round(self.catch_up_s, 3),
            "live_tasks": self._live_tasks(),
            "retention_s": self.retention_s,
        }


def _merged(older: Changes, newer: Changes) -> Changes:
    return Changes(
        tasks={**older.tasks, **newer.tasks},
        assignments=older.assignments + newer.assignments,
        agents={**older.agents, **newer.agents},
        workflows={**older.workflows, **newer.workflows},
        events=older.events + newer.events,
    )
