"""Agent SDK: register, heartbeat, receive assignments from the log, report, drain.

An agent is a process with a handler. It registers (capabilities, persona, capacity) under a new
session, heartbeats on ``hive.hb.<agent_id>``, and reads its assignments from a durable consumer
``agent-<agent_id>`` on its own aggregate ``hive.evt.agent.<agent_id>.*`` that starts right after
its registration: work is never lost in a socket, it waits in the log. Every report (started,
progress, completed, failed) is appended against the last sequence of the task the agent knows, so
a report on an attempt that was superseded (timed out, requeued, cancelled) is refused by the
server; the agent then reads the task's history and gives up the attempt (``AttemptSuperseded``)
unless the conflict was harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from shared.bus import EventBus, EventTooDeep, EventTooLarge, connection_key, event_msg_seq
from shared.command import KeepsChanging, retry_on_conflict
from shared.domain.fencing import attempt_verdict
from shared.domain.heartbeats import Heartbeat
from shared.domain.message_ids import report_msg_id
from shared.errors import HiveError
from shared.events import (
    AgentDeregistered,
    AgentDraining,
    AgentRegistered,
    AgentRestartRequested,
    Event,
    Persona,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCancelRequested,
    TaskCompleted,
    TaskProgress,
    TaskStarted,
)
from shared.ids import check_id, new_id
from shared.logging import get_logger
from shared.permissions import agent_durable, agent_reader
from shared.pull import consume_forever
from shared.recorded import Recorded, decode_recorded
from shared.subjects import EVENTS_STREAM, aggregate_subjects, heartbeat_subject

log = get_logger("hive.agent")

T = TypeVar("T")

REGISTER_RETRY_FIRST_S = 0.1
REGISTER_RETRY_MAX_S = 2.0
"""Registering before Hive created its stream: retry after 0.1 s, doubling up to 2 s."""


class AttemptSuperseded(HiveError):
    """This agent may no longer report on the attempt (fencing); the reason says why."""


class NonRetryableError(HiveError):
    """Raise from a handler when retrying cannot help (bad input): the task fails for good."""


__all__ = ["Agent", "AttemptSuperseded", "Heartbeat", "NonRetryableError", "TaskContext", "TaskOutcome"]


@dataclass
class TaskContext:
    """What a handler gets: the assignment and a way to report progress or notice cancellation."""

    assignment: TaskAssigned
    agent: Agent
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    last_seq: int = 0

    @property
    def task_id(self) -> str:
        return self.assignment.task_id

    @property
    def attempt(self) -> int:
        return self.assignment.attempt

    @property
    def payload(self) -> dict[str, Any]:
        return self.assignment.payload

    async def progress(self, percent: float, message: str = "") -> None:
        event = TaskProgress(
            task_id=self.task_id,
            agent_id=self.agent.agent_id,
            attempt=self.attempt,
            percent=max(0.0, min(100.0, percent)),
            message=message,
        )
        await self.agent.report(self, event)


@dataclass
class TaskOutcome:
    """A handler may return this to attach a quality score to its result."""

    result: Any = None
    quality: float | None = None


Handler = Callable[[TaskContext], Awaitable[Any]]
RestartHook = Callable[[str], Coroutine[Any, Any, None]]


@dataclass
class AgentStats:
    started: int = 0
    completed: int = 0
    failed: int = 0
    fenced: int = 0
    max_concurrent: int = 0
    restarts: int = 0


class Agent:
    """One agent identity. ``start`` registers and begins taking work; ``drain`` leaves cleanly."""

    def __init__(
        self,
        agent_id: str,
        handler: Handler,
        *,
        capabilities: dict[str, float] | list[str],
        persona: Persona | None = None,
        capacity: int = 1,
        name: str = "",
        heartbeat_interval_s: float = 0.5,
        metadata: dict[str, str] | None = None,
        on_restart_requested: RestartHook | None = None,
    ) -> None:
        """`on_restart_requested(reason)` replaces the default soft restart (e.g. to exit the process
        and let a supervisor start it again)."""
        self.agent_id = check_id(agent_id, "agent_id")
        self.handler = handler
        self.capabilities = (
            {c: 1.0 for c in capabilities} if isinstance(capabilities, list) else dict(capabilities)
        )
        self.persona = persona or Persona()
        self.capacity = capacity
        self.name = name or agent_id
        self.heartbeat_interval_s = heartbeat_interval_s
        self.metadata = metadata or {}
        self.session = new_id()
        self.on_restart_requested = on_restart_requested
        self.stats = AgentStats()
        self.bus: EventBus | None = None
        self._owns_bus = False
        self._running: dict[str, asyncio.Task[None]] = {}
        self._contexts: dict[str, TaskContext] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._heartbeats_paused = False
        self._beat_seq = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._reading = asyncio.Lock()
        self.log = log.bind(agent_id=agent_id)

    @property
    def durable(self) -> str:
        return agent_durable(self.agent_id)

    @property
    def reader(self) -> str:
        """The consumer that reads a task's history (one name, so permissions can allow it)."""
        return agent_reader(self.agent_id)

    @property
    def in_flight(self) -> int:
        return len(self._running)

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(
        self,
        bus: EventBus | None = None,
        *,
        nats_url: str = "nats://127.0.0.1:4222",
        user: str | None = None,
        password: str | None = None,
    ) -> None:
        """Register under a new session and start heartbeats and the assignment reader.

        Without `bus`, the agent opens its own connection, as `user` (``agent-<agent_id>`` when the
        server requires credentials: see ``hive auth agent``).
        """
        if bus is None:
            bus = await EventBus.connect(nats_url, self.durable, user=user, password=password)
            self._owns_bus = True
        self.bus = bus
        await self._register()
        self._tasks.append(asyncio.create_task(self._heartbeat_loop(), name=f"hb-{self.agent_id}"))
        self._tasks.append(asyncio.create_task(self._assignment_loop(), name=f"assign-{self.agent_id}"))

    async def _register(self) -> None:
        """Append ``agent.registered`` for the current session and read assignments made after it."""
        assert self.bus is not None
        registration = AgentRegistered(
            agent_id=self.agent_id,
            name=self.name,
            capabilities=self.capabilities,
            persona=self.persona,
            capacity=self.capacity,
            session=self.session,
            metadata=self.metadata,
        )
        pause = REGISTER_RETRY_FIRST_S
        while True:
            try:
                registered = await self.bus.append(registration, expected=None)
                break
            except nats.js.errors.NoStreamResponseError:
                # The server is up but Hive's stream is not yet (Hive is starting): wait for it,
                # as a worker waits for its broker, instead of dying.
                if pause == REGISTER_RETRY_FIRST_S:
                    self.log.warning("waiting_for_hive", reason=f"no {EVENTS_STREAM} stream yet")
                await asyncio.sleep(pause)
                pause = min(pause * 2, REGISTER_RETRY_MAX_S)
        await self._fresh_consumer(registered.seq + 1)
        self.log.info("agent_registered", session=self.session, capacity=self.capacity, seq=registered.seq)

    async def restart(self, reason: str = "") -> None:
        """Start over under a new session: drop the work in hand (recovery reassigned it), register.

        What an ``agent.restart_requested`` does by default: the process stays, its state does not.
        """
        for task_id, task in list(self._running.items()):
            context = self._contexts.get(task_id)
            if context is not None:
                context.cancelled.set()
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)
        self.session = new_id()
        self._beat_seq = 0
        self.stats.restarts += 1
        self.log.warning("agent_restarting", reason=reason, session=self.session)
        await self._register()

    async def drain(self, timeout: float = 30.0) -> None:
        """Take nothing new, finish what is held, deregister, stop (what SIGTERM does)."""
        assert self.bus is not None
        await self._announce(AgentDraining(agent_id=self.agent_id, session=self.session))
        try:
            await self.wait_idle(timeout)
        except TimeoutError:
            self.log.warning("drain_timeout", in_flight=self.in_flight)
        await self._announce(
            AgentDeregistered(agent_id=self.agent_id, session=self.session, reason="drained")
        )
        await self.stop()

    async def _announce(self, event: Event) -> None:
        """Best effort while leaving: if NATS is gone, heartbeats stop and recovery takes over."""
        assert self.bus is not None
        try:
            await self.bus.append(event, expected=None)
        except (TimeoutError, nats.errors.Error) as exc:
            self.log.warning("announce_failed", event=event.type_name(), error=repr(exc))

    async def stop(self) -> None:
        """Stop at once: in-flight handlers are cancelled (their attempts will time out elsewhere)."""
        self._stopping.set()
        for task in list(self._running.values()) + self._tasks:
            task.cancel()
        await asyncio.gather(*self._running.values(), *self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._owns_bus and self.bus is not None:
            await self.bus.close()

    async def run_until_signal(self) -> None:
        """Run until SIGTERM or SIGINT, then drain."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await self.drain()

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """Return once no task is in hand (handlers done and their reports settled)."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    def pause_heartbeats(self, paused: bool = True) -> None:
        """Stop sending heartbeats while staying alive (to simulate a hung agent in tests)."""
        self._heartbeats_paused = paused

    # --- heartbeats -----------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        assert self.bus is not None
        subject = heartbeat_subject(self.agent_id)
        encoder = msgspec.json.Encoder()
        while not self._stopping.is_set() and not self.bus.nc.is_closed:
            if not self._heartbeats_paused:
                self._beat_seq += 1
                beat = Heartbeat(
                    agent_id=self.agent_id,
                    session=self.session,
                    ts=time.time(),
                    in_flight=self.in_flight,
                    capacity=self.capacity,
                    seq=self._beat_seq,
                    interval_s=self.heartbeat_interval_s,
                    connection=connection_key(self.bus.nc),
                )
                try:
                    await self.bus.nc.publish(subject, encoder.encode(beat))
                except nats.errors.Error as exc:
                    self.log.warning("heartbeat_failed", error=repr(exc))
            await asyncio.sleep(self.heartbeat_interval_s)

    # --- assignments ----------------------------------------------------------------------------

    async def _fresh_consumer(self, start_seq: int) -> None:
        """A session reads only assignments made after its registration."""
        assert self.bus is not None
        js = self.bus.js
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_consumer(EVENTS_STREAM, self.durable)
        await js.add_consumer(
            EVENTS_STREAM,
            ConsumerConfig(
                name=self.durable,
                durable_name=self.durable,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=start_seq,
                ack_wait=30.0,
                max_ack_pending=self.capacity + 64,
                inactive_threshold=600.0,
                # Its own aggregate (assignments, cancellations, restart requests; the rest is
                # acked and skipped): one filter, part of the API subject that permissions check.
                filter_subject=aggregate_subjects("agent", self.agent_id),
            ),
        )

    async def _assignment_loop(self) -> None:
        assert self.bus is not None

        def on_lost(exc: Exception) -> None:
            self.log.warning("assignment_consumer_lost", error=repr(exc))

        await consume_forever(
            self.bus.nc,
            EVENTS_STREAM,
            self.durable,
            self._on_message,
            self._stopping,
            on_lost=on_lost,
            batch=self.capacity + 16,
        )

    async def _on_message(self, msg: Msg) -> None:
        item = decode_recorded(event_msg_seq(msg), msg.subject, msg.data)
        event = getattr(item, "event", None)
        if isinstance(event, AgentRestartRequested):
            await msg.ack()
            if event.session in ("", self.session):
                hook = self.on_restart_requested or self.restart
                self._tasks.append(asyncio.create_task(hook(event.reason), name=f"restart-{self.agent_id}"))
            return
        if isinstance(event, TaskCancelRequested):
            context = self._contexts.get(event.task_id)
            if context is not None and context.attempt == event.attempt:
                context.cancelled.set()
                self._running[event.task_id].cancel()
            await msg.ack()
            return
        if not isinstance(event, TaskAssigned) or (event.session and event.session != self.session):
            await msg.ack()
            return
        if event.task_id in self._running:
            await msg.ack()
            return
        context = TaskContext(assignment=event, agent=self, last_seq=event.task_seq)
        try:
            await self.report(
                context,
                TaskStarted(
                    task_id=event.task_id, agent_id=self.agent_id, attempt=event.attempt, session=self.session
                ),
            )
        except AttemptSuperseded as exc:
            self.stats.fenced += 1
            self.log.info("assignment_refused", task_id=event.task_id, attempt=event.attempt, reason=str(exc))
            await msg.ack()
            return
        await msg.ack()
        self.stats.started += 1
        self._contexts[event.task_id] = context
        self._idle.clear()
        self._running[event.task_id] = asyncio.create_task(
            self._execute(context), name=f"task-{event.task_id}"
        )
        self.stats.max_concurrent = max(self.stats.max_concurrent, len(self._running))

    async def _execute(self, context: TaskContext) -> None:
        assignment = context.assignment
        started = time.monotonic()
        try:
            try:
                value = await asyncio.wait_for(self.handler(context), assignment.timeout_s)
            except asyncio.CancelledError:
                if context.cancelled.is_set():
                    self.log.info("task_cancelled", task_id=context.task_id)
                    return
                raise
            except Exception as exc:
                timed_out = isinstance(exc, asyncio.TimeoutError)
                self.stats.failed += 1
                await self._report_quietly(
                    context,
                    TaskAttemptFailed(
                        task_id=context.task_id,
                        agent_id=self.agent_id,
                        attempt=context.attempt,
                        error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
                        failure_type="task_timeout" if timed_out else "agent_error",
                        retryable=not isinstance(exc, NonRetryableError),
                        duration_s=time.monotonic() - started,
                    ),
                )
                return
            outcome = value if isinstance(value, TaskOutcome) else TaskOutcome(result=value)
            completed = TaskCompleted(
                task_id=context.task_id,
                agent_id=self.agent_id,
                attempt=context.attempt,
                result=outcome.result,
                quality=outcome.quality,
                duration_s=time.monotonic() - started,
            )
            self.stats.completed += 1
            try:
                await self._report_quietly(context, completed)
            except (EventTooLarge, EventTooDeep) as exc:
                # No reader could take this result: say so as a failure a retry cannot fix.
                self.stats.completed -= 1
                self.stats.failed += 1
                await self._report_quietly(
                    context,
                    TaskAttemptFailed(
                        task_id=context.task_id,
                        agent_id=self.agent_id,
                        attempt=context.attempt,
                        error=f"result refused: {exc}",
                        failure_type="agent_error",
                        retryable=False,
                        duration_s=completed.duration_s,
                    ),
                )
                return
        finally:
            self._running.pop(context.task_id, None)
            self._contexts.pop(context.task_id, None)
            if not self._running:
                self._idle.set()

    async def _report_quietly(self, context: TaskContext, event: Event) -> None:
        try:
            await self.report(context, event)
        except AttemptSuperseded as exc:
            self.stats.fenced += 1
            self.log.info("result_refused", task_id=context.task_id, attempt=context.attempt, reason=str(exc))

    async def report(self, context: TaskContext, event: Event) -> None:
        """Append a report on the attempt; raise AttemptSuperseded if fencing refuses it.

        While NATS is unreachable the report is retried (same message id, so a report that did
        land is not stored twice) until it lands or the agent stops: a result is never dropped.
        """
        assert self.bus is not None
        bus = self.bus
        msg_id = report_msg_id(event.type_name(), context.task_id, context.attempt)
        if isinstance(event, TaskProgress):
            msg_id = event.id

        async def once() -> None:
            result = await self._through_outages(
                lambda: bus.append(event, expected=context.last_seq, msg_id=msg_id), context.task_id
            )
            context.last_seq = max(context.last_seq, result.seq)

        async def catch_up() -> None:
            """Read what changed the task: a superseded attempt ends here, anything else is harmless."""
            history, last_seq = await self._through_outages(
                lambda: self._task_history(context.task_id), context.task_id
            )
            verdict = attempt_verdict(history, self.agent_id, context.attempt)
            if verdict is not None:
                raise AttemptSuperseded(verdict)
            context.last_seq = last_seq

        try:
            await retry_on_conflict(once, catch_up, what=f"task {context.task_id!r}")
        except KeepsChanging as exc:
            raise AttemptSuperseded(str(exc)) from None

    async def _task_history(self, task_id: str) -> tuple[list[Recorded], int]:
        """The task's events, read by this agent's one reader consumer (one read at a time)."""
        assert self.bus is not None
        async with self._reading:
            return await self.bus.read_aggregate("task", task_id, consumer=self.reader)

    async def _through_outages(self, call: Callable[[], Awaitable[T]], task_id: str) -> T:
        """Retry `call` with backoff while NATS is unreachable, until it answers or we stop."""
        delay = 0.1
        while True:
            try:
                return await call()
            except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
                if self._stopping.is_set():
                    raise
                self.log.warning("nats_retry", task_id=task_id, error=repr(exc), delay_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
