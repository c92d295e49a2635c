"""Agent SDK: register, heartbeat, receive assignments from the log, report, drain.

Users import it from ``shared.agent`` (the public surface). An agent is a process with handlers,
one per task type (``@agent.handles``) or one for all. It registers (capabilities, persona,
capacity) under a new session, heartbeats on ``hive.hb.<agent_id>``, and reads its assignments
from a durable consumer ``agent-<agent_id>`` on its own aggregate ``hive.evt.agent.<agent_id>.>``
that starts right after its registration (``shared/agent/inbox.py``: opened by the router when the
server requires credentials, by the agent itself otherwise): work is never lost in a socket, it
waits in the log. Every report (started, progress, completed, failed) is appended on the agent's
own report subject (``hive.evt.task.<task_id>.<type>.<agent_id>``) against the last sequence of the
task the agent knows, so a report on an attempt that was superseded (timed out, requeued,
cancelled) is refused by the server; the agent then reads the last events of the task that matter
and gives up the attempt (``AttemptSuperseded``) unless the conflict was harmless.

``task.started`` is lazy (``shared/agent/lazy_start.py``, ``shared/domain/starts.py``): the work
runs at once and its start is reported only if it still runs ``START_REPORT_AFTER_S`` later (by
``START_REPORT_LATE_S`` after the assignment) or before its first progress; a quick task's
completion implies it. An assignment received later than that is reported started before it runs,
so the append fences it as before; a deferred start that is refused stops the handler.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg

from shared.agent.acks import AckBatch, ack_batch
from shared.agent.assignment import Assignment, is_assignment_subject, read_assignment
from shared.agent.connection import connection_for
from shared.agent.context import TaskContext, TaskOutcome
from shared.agent.deadline import Deadline
from shared.agent.errors import AgentSetupError, AttemptSuperseded, NonRetryableError
from shared.agent.handlers import Handler, Handlers
from shared.agent.inbox import InboxPlace, inbox_ready, open_inbox, open_own_inbox, pull_batch, wait_for_inbox
from shared.agent.lazy_start import StartReport
from shared.agent.settle import Failure, failure_of, missing_handler, settle, timed_out
from shared.bus import (
    ConcurrencyConflict,
    EventBus,
    EventTooDeep,
    EventTooLarge,
    connection_key,
)
from shared.command import KeepsChanging, retry_on_conflict
from shared.domain.fencing import attempt_verdict
from shared.domain.heartbeats import Heartbeat
from shared.domain.starts import start_report_delay
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
from shared.logging import configure_logging, get_logger
from shared.natsclient import ack_tokens
from shared.permissions import agent_durable
from shared.pull import consume_forever
from shared.recorded import Recorded, decode_recorded
from shared.subjects import (
    EVENTS_STREAM,
    aggregate_subjects,
    heartbeat_subject,
    reports_by,
    reports_of_type,
    task_decisions,
)

log = get_logger("hive.agent")

T = TypeVar("T")

REGISTER_RETRY_FIRST_S = 0.1
REGISTER_RETRY_MAX_S = 2.0
"""Registering before Hive created its stream: retry after 0.1 s, doubling up to 2 s."""


__all__ = [
    "Agent",
    "AttemptSuperseded",
    "Handler",
    "Heartbeat",
    "NonRetryableError",
    "TaskContext",
    "TaskOutcome",
]

H = TypeVar("H", bound=Handler)

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
    """One agent identity: its handlers, how it registers, and its life on the bus.

    Build it, give it handlers, run it::

        agent = Agent("reviewer-1", capacity=2)

        @agent.handles("code_review", proficiency=0.9)
        async def review(task: TaskContext) -> TaskOutcome: ...

        agent.run()  # connect (NATS_URL...), register, take tasks until SIGTERM, then drain

    ``start`` registers and begins taking work; ``drain`` leaves cleanly; ``stop`` leaves at once.
    """

    def __init__(
        self,
        agent_id: str,
        handler: Handler | None = None,
        *,
        capabilities: Mapping[str, float] | Sequence[str] | None = None,
        persona: Persona | None = None,
        capacity: int = 1,
        name: str = "",
        heartbeat_interval_s: float = 0.5,
        metadata: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        on_restart_requested: RestartHook | None = None,
    ) -> None:
        """
        Args:
            agent_id: The agent's id (1-64 letters, digits, '_' or '-'); its NATS user, when the
                server requires credentials, is ``agent-<agent_id>`` (``hive auth agent``).
            handler: One async function for every task type the agent is given; per-type handlers
                (``handles``) take precedence over it.
            capabilities: What the agent registers: ``{capability: proficiency 0..1}`` or a list
                (proficiency 1.0). Default: the types of its ``handles`` handlers. Routing gives a
                task only to agents having its ``task_type`` and every ``required_capabilities``.
            persona: Cognitive profile the router matches against tasks' profiles.
            capacity: Tasks it runs at once (1-10,000); Hive never assigns more.
            name: Shown in listings; default: the id.
            heartbeat_interval_s: Period of its heartbeats; recovery judges it by this period.
            metadata: Free strings stored with the registration (version, host...).
            labels: What tasks' ``labels`` and ``label_rules`` match (``{"gpu": "h100"}``).
            on_restart_requested: ``async (reason) -> None`` run when recovery asks for a restart,
                instead of the default soft restart (e.g. exit and let a supervisor start again).
        """
        self.agent_id = check_id(agent_id, "agent_id")
        if not 1 <= capacity <= 10_000:
            raise AgentSetupError(f"capacity must be from 1 to 10000, not {capacity}")
        self._handlers = Handlers(handler, capabilities)
        self.persona = persona or Persona()
        self.capacity = capacity
        self.name = name or agent_id
        self.heartbeat_interval_s = heartbeat_interval_s
        self.metadata = metadata or {}
        self.labels = labels or {}
        self.session = new_id()
        self.on_restart_requested = on_restart_requested
        self.stats = AgentStats()
        self.bus: EventBus | None = None
        self._owns_bus = False
        self._acks: AckBatch | None = None
        """Where handled inbox messages wait to be acknowledged with others (``shared/agent/acks.py``)."""
        self._running: dict[str, asyncio.Task[None]] = {}
        self._contexts: dict[str, TaskContext] = {}
        self._starts: dict[str, StartReport] = {}
        self._reporting: set[str] = set()
        """Tasks whose outcome (completed, failed) is being appended."""
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._heartbeats_paused = False
        self._reader_stop = asyncio.Event()
        """Stops the current assignment reader (``stop``, ``pause_assignments``); each reader has
        its own, so one resumed while the paused one still hands messages back is never doubled."""
        self._beat_seq = 0
        self._place = InboxPlace()
        """Where the inbox stands: the last message taken, and where to open it again if the
        server forgets it (``shared/agent/inbox.py``)."""
        self._idle = asyncio.Event()
        self._idle.set()
        self._registered_seq = 0

    @property
    def log(self) -> Any:
        """The agent's logger, bound at each use (logging may be configured after the agent is built)."""
        return log.bind(agent_id=self.agent_id)

    # --- handlers -------------------------------------------------------------------------------

    def handles(self, task_type: str, *, proficiency: float = 1.0) -> Callable[[H], H]:
        """Decorator: the async function handles tasks of `task_type`.

        Args:
            task_type: A task type (1-64 of a-z 0-9 _ . : -); registered as a capability unless
                the agent was given ``capabilities``, which must then include it.
            proficiency: How good the agent is at it, 0..1: the router's prior before it has
                learned from outcomes.
        """

        def register(handler: H) -> H:
            if self.bus is not None:
                raise AgentSetupError(f"agent {self.agent_id!r} already started: add handlers before start")
            self._handlers.add(task_type, handler, proficiency)
            return handler

        return register

    @property
    def handler(self) -> Handler | None:
        """The handler of every task type without one of its own (the `handler` argument)."""
        return self._handlers.default

    @property
    def capabilities(self) -> dict[str, float]:
        """What the agent registers: the capabilities given, else its handled task types."""
        return self._handlers.capabilities()

    def handler_for(self, task_type: str) -> Handler | None:
        """The handler a task of `task_type` runs on, or None (the attempt then fails for good)."""
        return self._handlers.for_type(task_type)

    @property
    def durable(self) -> str:
        return agent_durable(self.agent_id)

    @property
    def inbox_provided(self) -> bool:
        """Whether the router opens this agent's inbox: it runs under a NATS user of its own, and
        agents may create no consumer."""
        return self.bus is not None and self.bus.user is not None

    @property
    def _received_seq(self) -> int:
        """Stream sequence of the last inbox message taken (the registration's before the first):
        every heartbeat says it, so recovery can tell an agent that stopped reading (stalled)."""
        return self._place.handled

    @property
    def in_flight(self) -> int:
        """Tasks in hand whose outcome is not yet being reported: once it is, Hive may count the
        slot free (the router can assign the next task before this agent reads the append's ack)."""
        return len(self._running) - len(self._reporting)

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(
        self,
        bus: EventBus | None = None,
        *,
        nats_url: str | None = None,
        user: str | None = None,
        password: str | None = None,
    ) -> None:
        """Register under a new session and start heartbeats and the assignment reader.

        Args:
            bus: A connection to share (tests, many agents in one process); default: the agent
                opens its own and closes it when it stops.
            nats_url: NATS server(s), comma-separated; default: ``NATS_URL``, else
                ``nats://127.0.0.1:4222``.
            user: NATS user; default: ``agent-<id>`` with its password from the
                ``HIVE_AGENT_CREDENTIALS`` file, else ``NATS_USER``, else none.
            password: Password of `user` (default: with the user, from the environment).

        Raises:
            AgentSetupError: no handler or no capability.
            CredentialsError: HIVE_AGENT_CREDENTIALS has no password for this agent.
            NatsAuthError: the server refused the credentials.
        """
        self._handlers.check(self.agent_id)
        if bus is None:
            connection = connection_for(self.agent_id, url=nats_url, user=user, password=password)
            bus = await EventBus.connect(
                connection.url, self.durable, user=connection.user, password=connection.password
            )
            self._owns_bus = True
        self.bus = bus
        self._acks = ack_batch(bus.nc)
        await self._register()
        self._tasks.append(asyncio.create_task(self._heartbeat_loop(), name=f"hb-{self.agent_id}"))
        self._start_reading()

    def _start_reading(self) -> None:
        self._reader_stop = asyncio.Event()
        reader = self._assignment_loop(self._reader_stop)
        self._tasks.append(asyncio.create_task(reader, name=f"assign-{self.agent_id}"))

    async def serve(self) -> None:
        """Start (connection from the environment), take tasks until SIGTERM or SIGINT, then drain."""
        await self.start()
        await self.run_until_signal()

    def run(self) -> None:
        """Blocking ``serve`` for a script's ``__main__``, with JSON logs on stderr (LOG_LEVEL)."""
        configure_logging(os.environ.get("LOG_LEVEL", "info"), agent_id=self.agent_id)
        asyncio.run(self.serve())

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
            labels=self.labels,
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
        self._registered_seq = registered.seq
        self._place.reset(registered.seq)
        if not self.inbox_provided:
            await open_inbox(self.bus.js, self.agent_id, registered.seq, self.capacity, in_memory=True)
        self.log.info("agent_registered", session=self.session, capacity=self.capacity, seq=registered.seq)

    async def restart(self, reason: str = "") -> None:
        """Start over under a new session: drop the work in hand (recovery reassigned it), register.

        What an ``agent.restart_requested`` does by default: the process stays, its state does not.
        """
        for task_id, task in list(self._running.items()):
            context = self._contexts.get(task_id)
            if context is not None:
                context._cancel()
            self._cancel_handler(task_id, task)
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
        self._reader_stop.set()
        for task in list(self._running.values()) + self._tasks:
            task.cancel()
        await asyncio.gather(*self._running.values(), *self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._acks is not None:
            await self._acks.flush()  # what was handled is acknowledged before the connection goes
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

    def pause_assignments(self, paused: bool = True) -> None:
        """Stop reading the inbox while heartbeats go on, or read it again (to simulate a stalled
        assignment consumer in tests: a "zombie" that beats but takes no work). Messages already
        delivered and not yet handled are handed back to the consumer, and come again on resume."""
        if paused == self._reader_stop.is_set() or self._stopping.is_set():
            return
        if paused:
            self._reader_stop.set()
        else:
            self._start_reading()

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
                    received_seq=self._received_seq,
                )
                try:
                    await self.bus.nc.publish(subject, encoder.encode(beat))
                except nats.errors.Error as exc:
                    self.log.warning("heartbeat_failed", error=repr(exc))
            await asyncio.sleep(self.heartbeat_interval_s)

    # --- assignments ----------------------------------------------------------------------------

    async def _await_inbox(self, stop: asyncio.Event) -> None:
        """Wait until the router opened the inbox of the current session (credentials required),
        or until `stop` is set."""
        assert self.bus is not None
        if await inbox_ready(self.bus.js, self.agent_id, self._registered_seq):
            return
        self.log.info("waiting_for_inbox", durable=self.durable, detail="the router opens it")
        await wait_for_inbox(self.bus.js, self.agent_id, self._registered_seq, stop)

    async def _assignment_loop(self, stop: asyncio.Event) -> None:
        assert self.bus is not None

        def on_lost(exc: Exception) -> None:
            self.log.warning("assignment_consumer_lost", error=repr(exc))

        async def inbox() -> str:
            assert self.bus is not None
            if self.inbox_provided:
                await self._await_inbox(stop)
            else:
                await open_own_inbox(
                    self.bus.js, self.agent_id, self._registered_seq, self.capacity, self._place
                )
            return self.durable

        place = self._place

        def take(reply: str, subject: str, data: bytes) -> Awaitable[None] | None:
            tokens = ack_tokens(reply)
            seq = int(tokens[5])
            place.delivered(int(tokens[6]))
            outcome = self._on_message(subject, data, seq, reply)
            if outcome is not None:
                return handled_after(outcome, seq)
            handled(seq)
            return None

        def handled(seq: int) -> None:
            # Handled (its acknowledgement on its way): what the heartbeats now say the agent received.
            if seq > place.handled:
                place.handled = seq

        async def handled_after(outcome: Awaitable[None], seq: int) -> None:
            await outcome
            handled(seq)

        async def take_object(msg: Msg) -> None:
            """A delivery that came as a message object (on another client than Hive's)."""
            outcome = take(msg.reply, msg.subject, msg.data)
            if outcome is not None:
                await outcome

        await consume_forever(
            self.bus.nc,
            EVENTS_STREAM,
            inbox,
            take_object,
            stop,
            on_lost=on_lost,
            batch=pull_batch(self.capacity),
            handle_delivered=take,
        )

    def _ack(self, reply: str) -> None:
        """Acknowledge a handled inbox message (its reply subject), with the others due on this
        connection."""
        assert self._acks is not None and self.bus is not None
        self._acks.add(self.bus.nc, reply)

    def _on_message(self, subject: str, data: bytes, seq: int, reply: str) -> Awaitable[None] | None:
        """Take an inbox message, in the connection's read loop (Hive's client): None once done,
        or what to await before the next one (an old assignment's start, appended first)."""
        event: Assignment | TaskAssigned | None = None
        if is_assignment_subject(subject):
            # The usual message: only the fields the agent uses are decoded (``assignment.py``).
            event = read_assignment(subject, data)
        if event is None:
            decoded = getattr(decode_recorded(seq, subject, data), "event", None)
            if isinstance(decoded, AgentRestartRequested):
                self._ack(reply)
                if decoded.session in ("", self.session):
                    hook = self.on_restart_requested or self.restart
                    self._tasks.append(
                        asyncio.create_task(hook(decoded.reason), name=f"restart-{self.agent_id}")
                    )
                return None
            if isinstance(decoded, TaskCancelRequested):
                context = self._contexts.get(decoded.task_id)
                if context is not None and context.attempt == decoded.attempt:
                    context._cancel()
                    self._cancel_handler(decoded.task_id, self._running[decoded.task_id])
                self._ack(reply)
                return None
            if not isinstance(decoded, TaskAssigned):
                self._ack(reply)
                return None
            event = decoded
        if event.session and event.session != self.session:
            self._ack(reply)
            return None
        if event.task_id in self._running:
            self._ack(reply)
            return None
        now = time.time()
        context = TaskContext(event, self._report_progress, started_at=now)
        delay = start_report_delay(event.ts, now)
        if delay <= 0:
            return self._start_late(context, now, reply)
        self._run(context, now, delay, reply)
        return None

    async def _start_late(self, context: TaskContext, now: float, reply: str) -> None:
        """An old assignment (the agent lagged): others may act on it as unstarted, so the start is
        appended before the handler runs, which also refuses an attempt superseded meanwhile."""
        try:
            await self.report(context, self._started(context, now))
        except AttemptSuperseded as exc:
            self.stats.fenced += 1
            self.log.info(
                "assignment_refused", task_id=context.task_id, attempt=context.attempt, reason=str(exc)
            )
            self._ack(reply)
            return
        self._run(context, now, 0.0, reply)

    def _run(self, context: TaskContext, now: float, delay: float, reply: str) -> None:
        """Run the attempt's handler; its start is reported in `delay` s (0: reported already)."""
        self._ack(reply)
        self.stats.started += 1
        start = StartReport(lambda: self._report_start(context, now), reported=delay <= 0)
        task_id = context.task_id
        self._contexts[task_id] = context
        self._starts[task_id] = start
        self._idle.clear()
        self._running[task_id] = asyncio.create_task(self._execute(context, start), name=f"task-{task_id}")
        if delay > 0:
            start.after(delay, lambda: self._stop_superseded(context, start))
        self.stats.max_concurrent = max(self.stats.max_concurrent, self.in_flight)

    def _started(self, context: TaskContext, began: float) -> TaskStarted:
        return TaskStarted(
            task_id=context.task_id,
            agent_id=self.agent_id,
            attempt=context.attempt,
            session=self.session,
            ts=began,
        )

    async def _report_start(self, context: TaskContext, began: float) -> bool:
        """Append the deferred ``task.started`` (its time: when the work began); False if refused."""
        try:
            await self.report(context, self._started(context, began))
        except AttemptSuperseded as exc:
            self.stats.fenced += 1
            self.log.info("start_refused", task_id=context.task_id, attempt=context.attempt, reason=str(exc))
            return False
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
            # Only while stopping (reports are retried through outages until then).
            self.log.warning("start_report_failed", task_id=context.task_id, error=repr(exc))
        return True

    def _cancel_handler(self, task_id: str, task: asyncio.Task[None]) -> None:
        """Cancel an attempt's handler. A task cancelled before its first step never runs its
        coroutine, nor ``_execute``'s cleanup (a cancellation read right behind its assignment):
        the attempt is then forgotten once the task is done."""
        task.cancel()
        task.add_done_callback(functools.partial(self._forget, task_id))

    def _forget(self, task_id: str, task: asyncio.Task[None]) -> None:
        """``_execute``'s cleanup, for an attempt whose task is done and still listed."""
        if self._running.get(task_id) is not task:
            return  # cleaned up by ``_execute`` (and perhaps assigned again since)
        self._clear(task_id, self._starts.get(task_id))

    def _clear(self, task_id: str, start: StartReport | None) -> None:
        """Forget an attempt that ended (its deferred start dropped); idle when it was the last."""
        if start is not None:
            start.cancel()
        self._running.pop(task_id, None)
        self._contexts.pop(task_id, None)
        self._starts.pop(task_id, None)
        self._reporting.discard(task_id)
        if not self._running:
            self._idle.set()

    def _stop_superseded(self, context: TaskContext, start: StartReport) -> None:
        """The deferred start was refused: the attempt is no longer ours, stop its handler."""
        running = self._running.get(context.task_id)
        if running is not None and self._contexts.get(context.task_id) is context and not start.finishing:
            context._cancel()
            running.cancel()

    async def _execute(self, context: TaskContext, start: StartReport) -> None:
        started = time.monotonic()
        try:
            handler = self.handler_for(context.task_type)
            if handler is None:
                failure = missing_handler(self.agent_id, context.task_type, self._handlers.by_type)
                self.log.error("no_handler", task_id=context.task_id, task_type=context.task_type)
                await self._fail(context, failure, started, start)
                return
            limit = Deadline(context.timeout_s)  # asyncio.timeout's behaviour, for less
            try:
                value = await handler(context)
            except BaseException as exc:
                # The deadline's own cancellation is a timeout (asyncio.timeout's TimeoutError);
                # any other cancellation or BaseException goes on as before.
                if not limit.close(exc):
                    if isinstance(exc, asyncio.CancelledError):
                        if context.is_cancelled:
                            self.log.info("task_cancelled", task_id=context.task_id)
                            return
                        raise
                    if not isinstance(exc, Exception):
                        raise
                start.finishing = True
                failure = timed_out(context.timeout_s) if limit.expired else failure_of(exc)
                await self._fail(context, failure, started, start)
                return
            limit.close(None)
            start.finishing = True
            if not start.never_sent() and not await start.settle():
                return  # the start was refused: the attempt is superseded, its result would be too
            outcome = settle(value)
            if isinstance(outcome, Failure):
                self.log.error("result_unstorable", task_id=context.task_id, error=outcome.error)
                await self._fail(context, outcome, started, start)
                return
            completed = TaskCompleted(
                task_id=context.task_id,
                agent_id=self.agent_id,
                attempt=context.attempt,
                result=outcome.result,
                quality=outcome.quality,
                duration_s=time.monotonic() - started,
            )
            try:
                await self._report_quietly(context, completed)
            except (EventTooLarge, EventTooDeep) as exc:
                # Past `settle`'s checks and still no reader could take it (the server's own limit
                # counts the whole event): a failure a retry cannot fix.
                self.log.error("result_unstorable", task_id=context.task_id, error=str(exc))
                await self._fail(
                    context, Failure(error=f"result refused: {exc}", retryable=False), started, start
                )
                return
            self.stats.completed += 1
        finally:
            self._clear(context.task_id, start)

    async def _fail(self, context: TaskContext, failure: Failure, started: float, start: StartReport) -> None:
        if not start.never_sent() and not await start.settle():
            return  # the start was refused: the attempt is superseded
        self.stats.failed += 1
        await self._report_quietly(
            context,
            TaskAttemptFailed(
                task_id=context.task_id,
                agent_id=self.agent_id,
                attempt=context.attempt,
                error=failure.error,
                failure_type=failure.failure_type,
                retryable=failure.retryable,
                duration_s=time.monotonic() - started,
            ),
        )

    async def _report_progress(self, context: TaskContext, percent: float, message: str) -> None:
        start = self._starts.get(context.task_id)
        if start is not None and not await asyncio.shield(start.now()):
            raise AttemptSuperseded(f"task {context.task_id!r} attempt {context.attempt}: start refused")
        await self.report(
            context,
            TaskProgress(
                task_id=context.task_id,
                agent_id=self.agent_id,
                attempt=context.attempt,
                percent=percent,
                message=message,
            ),
        )

    async def _report_quietly(self, context: TaskContext, event: Event) -> None:
        """Append the attempt's outcome; a refusal (superseded attempt) is only counted."""
        self._reporting.add(context.task_id)
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
        try:
            # The usual case, without the layers of the retries below: stored at the first try,
            # answered from the read loop (no coroutine nor message object per append).
            stored = await self.bus.append_soon(event, expected=context._last_seq)
        except ConcurrencyConflict:
            await self._report_retrying(context, event, refused=True)
            return
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError):
            await self._report_retrying(context, event, refused=False)
            return
        context._last_seq = max(context._last_seq, stored.seq)

    async def _report_retrying(self, context: TaskContext, event: Event, *, refused: bool) -> None:
        """``report`` once its first try was `refused` (the task changed: catch up first) or met an
        outage: again, under the same message id, until stored, or AttemptSuperseded."""
        assert self.bus is not None
        bus = self.bus

        async def once() -> None:
            # Keyed by the event's own id, the same on every retry of this report: a report that
            # did land is not stored twice, and nobody can guess the key to store something else
            # under it first (the server de-duplicates keys across the whole stream).
            result = await self._through_outages(
                lambda: bus.append(event, expected=context._last_seq), context.task_id
            )
            context._last_seq = max(context._last_seq, result.seq)

        async def catch_up() -> None:
            """Read what changed the task: a superseded attempt ends here, anything else is harmless."""
            known, last_seq = await self._through_outages(
                lambda: self._task_state(context.task_id), context.task_id
            )
            verdict = attempt_verdict(known, self.agent_id, context.attempt)
            if verdict is not None:
                raise AttemptSuperseded(verdict)
            context._last_seq = last_seq

        try:
            if refused:
                await catch_up()
            await retry_on_conflict(once, catch_up, what=f"task {context.task_id!r}")
        except KeepsChanging as exc:
            raise AttemptSuperseded(str(exc)) from None

    async def _task_state(self, task_id: str) -> tuple[list[Recorded], int]:
        """What decides a report's fate, by direct gets: the last event services appended to the
        task, the last report naming this agent (others' reports change nothing), the last
        completion (to say why, when a later attempt ended it) and the task's last sequence (to
        append against)."""
        assert self.bus is not None
        bus = self.bus
        last, decided, own, completion = await asyncio.gather(
            bus.last_on(aggregate_subjects("task", task_id)),
            bus.last_on(task_decisions(task_id)),
            bus.last_on(reports_by(task_id, self.agent_id)),
            bus.last_on(reports_of_type(task_id, TaskCompleted.event_type())),
        )
        found = (decided, own, completion)
        known = sorted((r for r in found if isinstance(r, Recorded)), key=lambda r: r.seq)
        return known, last.seq if last is not None else 0

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
