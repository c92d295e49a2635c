"""Router shell: claim the work NATS delivers, decide many assignments at once, append them
concurrently, never wait to see its own.

Every instance keeps the full fleet view (its projection). The work is split by the shared durable
work consumers (``router`` for submissions, ``router-requeues`` for new attempts): the instance a
task's submission (or requeue) is delivered to *claims* it and holds
the message, unacknowledged, until the task is assigned, held or failed; a dead instance's claims
go to the others once their acknowledgement wait (``CLAIM_ACK_WAIT_S``) is over. Tasks held for
want of an agent are anyone's: every instance looks at them when a slot frees.

Decisions do not wait for the projection to show the assignments just made: ``decide.plan`` makes
them on the view plus this instance's assignments the view has not applied yet
(``overlay.py``), and each is appended at once, up to ``MAX_APPENDS`` at a time. A claim of keys
(a concurrency slot, rate tokens) is appended before its assignment and laid over the view in the
same way; while it is in flight, only the same key's next claim waits for it (it is appended
against the key's last sequence, which the claim in flight moves). Assignments to
different agents never conflict; to the same agent they are chained, each appended against the
sequence the previous one got. An assignment is appended against the last sequence of everything
about the agent (``hive.evt.*.<agent>.>``: the agent and its circuit breaker) as the decision saw
it, so racing instances cannot both win and nothing is assigned on a view that missed the breaker
opening: the loser catches up and decides again. One assignment per task attempt is enforced by the
message id ``assign:<task>:<attempt>``. A timer wakes the router at the deadline of the earliest
task held below its quality threshold, so that task ends even when nothing else happens, and at the
``not_before_ts`` of the earliest delayed task (kept in a heap as their submissions are applied, so
no task is looked at before its time). When the server requires credentials, the router also
opens each registered agent's inbox (``shared/agent/inbox.py``): agents may create no consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
from prometheus_client import Histogram

from services.router.decide import (
    Assign,
    Decision,
    Expire,
    Planned,
    Scan,
    all_skipped,
    assignment_event,
    ends_plan,
    next_expiry,
    plan,
)
from services.router.keyed import (
    LIMIT_EVENTS,
    CancelForKey,
    ClaimKeys,
    KeyHold,
    Parked,
    Weighed,
    limits_of,
    touched_keys,
)
from services.router.overlay import decided_in_view
from services.router.reads import Decodings
from shared.agent.inbox import open_inbox
from shared.background import cancel_and_wait
from shared.bus import AppendResult, ConcurrencyConflict
from shared.domain.cancellation import cancel_notice, cancellation
from shared.domain.fleet import WAITING, AgentView, correlation_of
from shared.domain.histogram import ASSIGNMENT_BUCKETS_S
from shared.domain.message_ids import (
    assign_msg_id,
    cancel_msg_id,
    failed_msg_id,
    key_claim_msg_id,
    key_hold_msg_id,
    notice_msg_id,
    queued_msg_id,
)
from shared.domain.routing.admission import RATE_LIMITED, rate_wake
from shared.domain.routing.eligibility import BELOW_THRESHOLD
from shared.domain.routing.keys import Limits, parse_concurrency_limits, parse_rate_limits
from shared.domain.routing.policy import RoutingConfig, signal_weights
from shared.domain.routing.view import ROUTER_VIEW
from shared.events import (
    AgentRecovered,
    AgentRegistered,
    BreakerClosed,
    BreakerHalfOpened,
    BreakerReset,
    Event,
    KeySlotClaimed,
    RateTokensTaken,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCancelled,
    TaskCancelRequested,
    TaskCompleted,
    TaskFailed,
    TaskQueued,
    TaskRequeued,
    TaskSubmitted,
    key_scope,
)
from shared.recorded import Recorded, Undecodable
from shared.service import Service
from shared.subjects import AGGREGATES, aggregate_subjects, entity_subjects, events_of_type
from shared.work import Ticket, WorkSpec

EXPIRY_POLL_S = 1.0
"""Longest sleep of the expiry timer: a held task that appears meanwhile is looked at by then."""

CLAIMS_CHECK_S = 0.2
"""How often claims are checked for tasks decided elsewhere (those decided here are settled as
their decision lands)."""
MAX_UNSURE = 10_000
"""Versions kept to ask the server, at most (forgetting them only costs another refusal)."""
MAX_APPENDS = 32
"""Appends of decisions in flight at once, per instance."""
CLAIM_ACK_WAIT_S = 1.0
"""A claimed submission held this long without a word from its instance goes to another one (the
instance says it is still working on it every third of that)."""
CROWDED_S = 0.5
"""How long an agent another router instance gave work to counts as theirs for this one's ties
(``RoutingConfig.crowded``): instances deciding from the same view keep to different agents."""

REQUEUES_DURABLE = "router-requeues"
"""New work comes through two durables of one filter each, claimed by the instance it is delivered
to: submissions (``router``) and new attempts (this one). Nothing about agents, breakers or limits:
every instance's projection already wakes its decisions on those (``_on_applied``). One filter
each, because a consumer with several filters and a backlog makes nats-server walk every subject of
a stream block for each message it delivers (``firstMatchingMulti`` intersects the block's subjects
with the filters once the block holds fewer subjects than messages left, as it does once each
agent's assignments share a subject): a single wildcard filter is matched message by message."""
INBOXES_DURABLE = "router-inboxes"
"""When the server requires credentials: the durable that gives each agent's registration to one
instance, which opens the agent's inbox (agents may create no consumer)."""

RELEASES = (TaskCompleted, TaskAttemptFailed, TaskFailed, TaskCancelled)
"""Events that free a slot. They are as frequent as tasks, and most of the time nothing waits: so
they are not work events; every instance's projection notices them, and only an instance whose
queue is not empty looks at it (racing instances are refereed by the agent's sequence)."""
CAPACITY = (AgentRegistered, AgentRecovered, BreakerClosed, BreakerHalfOpened, BreakerReset)
_FREES_KEYS = (*RELEASES, TaskRequeued)
_NEW_WORK = (TaskSubmitted, TaskRequeued, *CAPACITY, *LIMIT_EVENTS)
_TIMED_HOLDS = (BELOW_THRESHOLD, RATE_LIMITED)
"""Holds whose task the timer looks at in time (``next_expiry``, ``rate_wake``)."""


def is_current_session(agent: AgentView | None, registered_seq: int) -> bool:
    """Whether the registration stored at `registered_seq` is the agent's session now: only then is
    an inbox opened for it (not for one a later registration replaced, nor a deregistered agent's)."""
    return agent is not None and agent.registered_seq == registered_seq and agent.status != "deregistered"


@dataclass(slots=True)
class Claim:
    """A task's submission or requeue this instance holds until the attempt is decided."""

    ticket: Ticket
    attempt: int
    seq: int
    event_id: str


@dataclass(slots=True)
class InFlight:
    """A decision appended (or being appended) whose effect the view has not applied yet."""

    task_id: str
    attempt: int
    agent_id: str | None
    """The agent of an assignment (None: a hold or an expiry)."""
    never_held: bool = False
    """A first attempt never queued: its submission-to-assignment time is the routing latency."""
    seen: int = 0
    """The last sequence the view had applied when it was decided."""
    keys: ClaimKeys | None = None
    """A claim of keys (laid over the view with its assignment until the view applies them)."""
    decided_ts: float = 0.0
    blocks: bool = False
    """Nothing more is decided until the view applies it (``decide.ends_plan``)."""
    seq: int = 0
    """Where it was stored, once the server said so."""


@dataclass(slots=True)
class Prepared:
    """What a decision appends, built in the same step as the decision (the view moves on after)."""

    event: Event
    """Its event (with a claim of keys: the assignment appended after the claim)."""
    expected: int | None
    """The version it is appended against as the view saw it (None: ask the server)."""
    correlation: str
    causation: str
    notice: Event | None = None
    """A cancellation's request to the agent holding the task, appended after it."""
    key_versions: dict[str, int | None] = field(default_factory=dict)
    """For a claim of keys: each key scope's last sequence as the decision saw it (None: pruned,
    ask the server). Read with the decision: read at append time, it could already count another
    instance's claim the decision never saw, and two claims for the last slot would both pass."""


@dataclass(slots=True)
class Chain:
    """This instance's last assignment to an agent: the next one is appended against its sequence."""

    entry: InFlight
    stored: asyncio.Future[int]
    """The sequence it was stored at; 0: nothing stored on the agent (a duplicate); -1: refused."""


class RouterService(Service):
    name = "router"
    reads_in_bursts = False

    async def setup(self) -> None:
        self.view = self.projection(ROUTER_VIEW)
        self.decodings = Decodings()
        """What one of its readers decoded (or it appended), for the other (``reads.py``)."""
        self.view.decode = self.decodings.for_view
        self.bus.on_encoded = self.decodings.appending
        self.work(
            WorkSpec(
                durable="router",
                filters=[events_of_type(TaskSubmitted.AGGREGATE, TaskSubmitted.event_type())],
                handler=self.on_trigger,
                claim=self.claim,
                ack_wait_s=CLAIM_ACK_WAIT_S,
                decode=self._decode_work,
            )
        )
        self.work(  # rare (a failed or timed-out attempt): decoded by each reader, nothing shared
            WorkSpec(
                durable=REQUEUES_DURABLE,
                filters=[events_of_type(TaskRequeued.AGGREGATE, TaskRequeued.event_type())],
                handler=self.on_trigger,
                claim=self.claim,
                ack_wait_s=CLAIM_ACK_WAIT_S,
            )
        )
        if self.bus.user is not None:
            self.work(
                WorkSpec(
                    durable=INBOXES_DURABLE,
                    filters=[events_of_type(AgentRegistered.AGGREGATE, AgentRegistered.event_type())],
                    handler=self.on_registered,
                )
            )
        self.config = RoutingConfig(
            mode=self.settings.orchestration_mode,
            default_strategy=self.settings.default_routing_strategy,
            confidence=self.settings.routing_confidence,
            quality_wait_s=self.settings.quality_wait_s,
            concurrency_limits=parse_concurrency_limits(self.settings.concurrency_limits),
            rate_limits=parse_rate_limits(self.settings.rate_limits),
            instance=self.instance,
        )
        self.assignments = 0
        self.expired = 0
        self.conflicts = 0
        self.rounds = 0
        """Wake-ups of the decision loop that looked at the queue."""
        self.idle_rounds = 0
        """Of those, the ones that started no append."""
        self._claims: dict[str, Claim] = {}
        self._to_ack: list[Ticket] = []
        """Claims settled, waiting to be acknowledged (``_settle``)."""
        self._acking: asyncio.Task[None] | None = None
        self._in_flight: dict[str, InFlight] = {}
        """Task id -> its decision not yet applied by the view, in the order decided."""
        self._landing: list[int] = []
        """Heap of the sequences decisions in flight were stored at: once the view applies the
        smallest, decide again (it no longer holds a slot over the view). Looked at per applied event,
        so not a walk over every decision in flight."""
        self._chains: dict[str, Chain] = {}
        self._unsure: set[str] = set()
        self._claims_checked = 0.0
        """``<aggregate>.<id>`` whose version the server says next (a guess of the view was refused)."""
        self._appends: set[asyncio.Future[Any]] = set()
        """Each decision being appended: a future set when its append is over (a task only for a
        decision that appends more than one event or must ask the server a version first)."""
        self._wanted = asyncio.Event()
        self._decided = asyncio.Event()
        """Set after each round of decisions (the expiry timer waits for its own to land)."""
        self._catching_up: asyncio.Task[None] | None = None
        self._decider: asyncio.Task[None] | None = None
        self._expiry_task: asyncio.Task[None] | None = None
        self._starts: list[tuple[float, str]] = []
        """(not_before_ts, task id) of delayed tasks: when the timer must look at the queue."""
        self._timer_woken = asyncio.Event()
        self._timed_holds: object = None
        """The state whose queue a walk found holding no task the timer waits for (held below its
        quality threshold with a deadline or a wait, or by a rate limit), until the view applies
        such a hold again: ``_next_wake`` does not walk a long backlog each time for nothing."""
        self._limits: Limits | None = None
        self._parked = Parked()
        """Tasks of concurrency keys at their limit, left out of decisions until a slot may free."""
        self._weighed = Weighed()
        """How waiting keyed tasks stand for a fair turn, until their key changes."""
        self._rival_work: dict[str, float] = {}
        """Agent id -> when the view last applied an assignment to it this instance did not decide
        (monotonic; those older than ``CROWDED_S`` are dropped as plans read it)."""
        self.view.add_listener(self._on_applied)
        self.assignment_duration = Histogram(
            "orchestration_task_assignment_duration_seconds",
            "Time from a task's submission to its first assignment (tasks never held for lack of an agent)",
            registry=self.metrics.registry,
            buckets=ASSIGNMENT_BUCKETS_S,
        )

    async def on_started(self) -> None:
        now = time.time()
        for task in self.view.state.fleet.tasks.values():  # delayed before the snapshot was taken
            if task.status in WAITING and task.not_before_ts > now:
                heapq.heappush(self._starts, (task.not_before_ts, task.task_id))
        self._expiry_task = asyncio.create_task(self._expiry_timer(), name="router-expiry")
        self._decider = asyncio.create_task(self._decide_loop(), name="router-decide")
        self.dispatch()  # slots may have freed while this instance was starting

    async def on_stopping(self) -> None:
        self.log.info(
            "router_rounds", rounds=self.rounds, idle=self.idle_rounds, assignments=self.assignments
        )
        for task in (self._expiry_task, self._decider, self._catching_up):
            await cancel_and_wait(task)
        if self._appends:  # let the decisions in flight land: their claims are then acknowledged
            await asyncio.wait(self._appends, timeout=5.0)
        if self._acking is not None and not self._acking.done():
            await asyncio.wait({self._acking}, timeout=5.0)

    def _on_applied(self, recorded: Recorded) -> None:
        """Decide again when the view changed what can be decided: a new task or attempt, a freed
        slot while tasks wait, added capacity, our own decision landing. A delayed task: the timer
        looks at the queue at its time."""
        event = recorded.event
        if isinstance(event, TaskQueued) and event.reason in _TIMED_HOLDS:
            self._timed_holds = None
        touched = touched_keys(self.view.state, event)
        if touched != ():
            self._weighed.forget(touched)
        if isinstance(event, LIMIT_EVENTS):
            self._limits = None
            self._parked.release(None)
        elif self._parked.tasks and isinstance(event, _FREES_KEYS):
            if touched is None:
                self._parked.release(None)
            for key in touched or ():
                self._parked.release(key)  # one of the key's slots may have freed
        if isinstance(event, TaskSubmitted) and event.not_before_ts and event.not_before_ts > event.ts:
            earliest = self._starts[0][0] if self._starts else None
            heapq.heappush(self._starts, (event.not_before_ts, event.task_id))
            if earliest is None or event.not_before_ts < earliest:
                self._timer_woken.set()
            return
        if not self.ready.is_set():
            return
        if type(event) is TaskAssigned and event.task_id not in self._in_flight:
            # Another instance's (or one of ours whose answer was lost: it only steers ties a while).
            self._rival_work[event.agent_id] = time.monotonic()
        if (
            (isinstance(event, _NEW_WORK) and not _claimed_elsewhere(event, self._claims))
            or (isinstance(event, RELEASES) and self.view.state.fleet.queue)
            or (self._landing and self._landing[0] <= self.view.seq)
        ):
            self._wanted.set()

    def _decode_work(self, seq: int, subject: str, data: bytes) -> Recorded | Undecodable:
        return self.decodings.for_work(seq, subject, data, self.view.seq)

    def details(self) -> dict[str, Any]:
        state = self.view.state
        weights = signal_weights("adaptive", state.adaptive)
        return {
            "queue_depth": len(state.fleet.queue),
            "agents": len(state.fleet.agents),
            "assignments_made": self.assignments,
            "expired": self.expired,
            "conflicts": self.conflicts,
            "decide_rounds": self.rounds,
            "rounds_deciding_nothing": self.idle_rounds,
            "claims_held": len(self._claims),
            "appends_in_flight": len(self._appends),
            "decoded": self.decodings.decoded,
            "decodings_reused": self.decodings.reused,
            "work_given_again": self.decodings.work_again,
            "orchestration_mode": self.config.mode,
            "default_strategy": self.config.default_strategy,
            "outcomes_learned": state.performance.outcomes,
            "adaptive_weights": {name: round(value, 4) for name, value in weights.items()},
        }

    def _limits_in_force(self) -> Limits:
        """The limits of keys, built again only after the view applied a change of them (with a
        limit per key, building them for each plan would cost more than the plan)."""
        if self._limits is None:
            self._limits = limits_of(self.view.state, self.config)
        return self._limits

    def _next_wake(self) -> float | None:
        """The earliest deadline or end of quality wait of a held task, start of a delayed one, or
        refill of the bucket a rate-limited task waits for."""
        state = self.view.state
        deadline: float | None = None
        if self._timed_holds is not state:  # (a hold only starts to count with a TaskQueued)
            deadline = next_expiry(state, self.config)
            refill = rate_wake(state.keys, state.fleet, self._limits_in_force(), time.time())
            if refill is not None and (deadline is None or refill < deadline):
                deadline = refill
            if deadline is None:
                self._timed_holds = state
        if self._starts and (deadline is None or self._starts[0][0] < deadline):
            return self._starts[0][0]
        return deadline

    async def _expiry_timer(self) -> None:
        """Look at the queue when the earliest quality-held task reaches its deadline or the end of
        its quality wait, when the earliest delayed task may start, and every ``EXPIRY_POLL_S``
        while work waits."""
        while True:
            self._timer_woken.clear()
            deadline = self._next_wake()
            now = time.time()
            while self._starts and self._starts[0][0] <= now:
                heapq.heappop(self._starts)  # its time has come: the decisions below look at it
            if deadline is not None and deadline <= now:
                self.dispatch()
                await self._settled()
                deadline = self._next_wake()
                if deadline is not None and deadline <= time.time():
                    await asyncio.sleep(EXPIRY_POLL_S)  # being decided, or not ours to expire
                continue
            wait = EXPIRY_POLL_S if deadline is None else min(EXPIRY_POLL_S, deadline - now)
            try:
                await asyncio.wait_for(self._timer_woken.wait(), max(wait, 0.001))
            except TimeoutError:
                if self.view.state.fleet.queue:
                    # A net under the wake-ups of ``_on_applied``: should one be missed (a slot
                    # freed in a race with a decision landing), waiting work is looked at again
                    # within EXPIRY_POLL_S rather than at the next event. Decisions in flight do
                    # not stop it: a look forgets those the view shows, so one whose landing
                    # woke nothing cannot hold the queue up either.
                    self.dispatch()

    async def _settled(self, timeout: float = EXPIRY_POLL_S) -> None:
        """Until the decisions asked for are made and the view shows them (or `timeout`)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self._wanted.is_set() or self._appends or self._in_flight:
                    self._decided.clear()
                    await self._decided.wait()

    # --- work -----------------------------------------------------------------------------------

    async def claim(self, recorded: Recorded, ticket: Ticket) -> bool:
        """Keep a new task or attempt to decide (True); a delayed one is looked at in its time."""
        event = recorded.event
        if isinstance(event, TaskRequeued):
            wait = event.not_before_ts - time.time()
            if wait > 0:  # a backoff: delivered again, to any instance, when it is over
                await ticket.retry(wait)
                return True
            self._hold(event.task_id, Claim(ticket, event.attempt, recorded.seq, event.id))
            return True
        if isinstance(event, TaskSubmitted):
            if event.not_before_ts is not None and event.not_before_ts > time.time():
                return False  # acknowledged: the timer looks at the queue at its time
            self._hold(event.task_id, Claim(ticket, 1, recorded.seq, event.id))
            return True
        return False

    def _hold(self, task_id: str, claim: Claim) -> None:
        older = self._claims.get(task_id)
        if older is not None and older.seq != claim.seq:
            self._settle(older)  # an earlier attempt's: over (the same one delivered again: replaced)
        self._claims[task_id] = claim
        self._wanted.set()

    def _settle(self, claim: Claim) -> None:
        """Acknowledge a claim. Nobody waits on it: it leaves with the connection's next write (the
        next append, mostly: ``Ticket.ack_soon``), not in a write of its own. On another client than
        Hive's, soon: the claims settled meanwhile go out with it, from one task."""
        try:
            if claim.ticket.ack_soon():
                return
        except Exception as exc:
            self.log.warning("claim_ack_failed", error=repr(exc))
            return
        self._to_ack.append(claim.ticket)
        if self._acking is None or self._acking.done():
            self._acking = asyncio.create_task(self._ack_claims(), name="router-acks")

    async def _ack_claims(self) -> None:
        while self._to_ack:
            settled, self._to_ack = self._to_ack, []
            for ticket in settled:
                try:
                    await ticket.ack()
                except Exception as exc:
                    self.log.warning("claim_ack_failed", error=repr(exc))

    async def on_trigger(self, recorded: Recorded) -> None:
        self._wanted.set()

    async def on_registered(self, recorded: Recorded) -> None:
        """An agent registered: open its inbox once the view shows it (one instance does it), unless
        that session is over (a later registration, or the durable reading an older log afresh)."""
        event = recorded.event
        if not isinstance(event, AgentRegistered):
            return
        await self.view.wait_for(recorded.seq)
        if is_current_session(self.view.state.fleet.agents.get(event.agent_id), recorded.seq):
            await self._open_inbox(event, recorded.seq)

    async def _open_inbox(self, registration: AgentRegistered, seq: int) -> None:
        """The agent's durable, starting after this registration (agents may create no consumer)."""
        if await open_inbox(self.bus.js, registration.agent_id, seq, registration.capacity):
            self.log.info("agent_inbox_opened", agent_id=registration.agent_id, start_seq=seq + 1)

    # --- deciding -------------------------------------------------------------------------------

    def dispatch(self) -> None:
        """Look at the queue again soon (decisions are made by one loop, never concurrently)."""
        self._wanted.set()

    async def _decide_loop(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            self.rounds += 1
            try:
                if not self._decide():
                    self.idle_rounds += 1
            except Exception:
                self.log.exception("router_decision_failed")
            self._decided.set()
            await asyncio.sleep(0)  # let the appends just started go out before deciding more

    def _decide(self) -> int:
        """Plan on the view plus what is in flight, and start appending each decision (how many).
        Synchronous: the view cannot move while it runs."""
        if self._catching_up is not None and not self._catching_up.done():
            return 0
        view = self.view
        if time.monotonic() >= self._claims_checked + CLAIMS_CHECK_S:
            self._claims_checked = time.monotonic()
            self._settle_claims()
        tasks = view.state.fleet.tasks
        landing = self._landing
        while landing and landing[0] <= view.seq:
            heapq.heappop(landing)
        # One walk over the decisions in flight: those the view shows are forgotten, the rest are
        # laid over it (their agents and claims of keys, in the order decided).
        seen = view.seq
        gone: list[str] = []
        assumed: list[str] = []
        claims: list[tuple[ClaimKeys, float]] = []
        blocked = False
        for task_id, entry in self._in_flight.items():
            if 0 < entry.seq <= seen or decided_in_view(tasks.get(task_id), entry.attempt):
                gone.append(task_id)  # read back (maybe before the server's answer): count it once
                continue
            blocked = blocked or entry.blocks
            if entry.agent_id:
                assumed.append(entry.agent_id)
            if entry.keys is not None:
                claims.append((entry.keys, entry.decided_ts))
        for task_id in gone:
            del self._in_flight[task_id]
        room = MAX_APPENDS - len(self._appends)
        if room <= 0 or blocked:
            return 0  # a cancellation for a key is not laid over the view: wait until it is applied
        now = time.time()
        if not self._parked.owed and all_skipped(
            view.state.fleet.queue,
            self._in_flight,
            self._parked.tasks,
            tasks=tasks,
            claimed=self._claims,
            now=now,
        ):
            # Nothing waits but what is being decided, parked, not due or not claimed yet (a
            # landing, or a submission applied before its claim, woke this round): a plan would
            # skip every task and change nothing.
            return 0
        config = self._deciding_config()
        scan = Scan(view.state, config, self._limits_in_force(), self._weighed, self._parked.owed)
        planned = plan(
            view.state,
            now,
            config,
            assumed=assumed,
            claims=claims,
            after_seq=view.seq,
            skip=self._in_flight.keys() | self._parked.tasks,
            claimed=self._claims.keys(),
            limit=room,
            scan=scan,
        )
        self._parked.add(scan.blocked.parked)
        self._parked.owe(scan.holds, view.state.fleet.tasks)
        for step in planned:
            self._start_append(step, view.seq, now)
        return len(planned)

    def _deciding_config(self) -> RoutingConfig:
        """The routing configuration with the agents other instances gave work to just now."""
        if not self._rival_work:
            return self.config
        since = time.monotonic() - CROWDED_S
        for agent_id in [agent_id for agent_id, at in self._rival_work.items() if at < since]:
            del self._rival_work[agent_id]
        if not self._rival_work:
            return self.config
        return msgspec.structs.replace(self.config, crowded=frozenset(self._rival_work))

    def _settle_claims(self) -> None:
        """Acknowledge the claims whose attempt the view shows decided (by anyone) or gone."""
        fleet = self.view.state.fleet
        for task_id, claim in list(self._claims.items()):
            task = fleet.tasks.get(task_id)
            if task is None:
                done = self.view.seq >= claim.seq  # applied, and not kept: finished long ago
            else:
                done = task.attempt > claim.attempt or (
                    task.attempt == claim.attempt and task.status not in WAITING
                )
            if done:
                del self._claims[task_id]
                self._settle(claim)

    def _start_append(self, step: Planned, seen: int, now: float) -> None:
        decision = step.decision
        assign = _assignment(decision)
        agent_id = assign.agent_id if assign is not None else None
        task = self.view.state.fleet.tasks[decision.task_id]
        never_held = decision.attempt == 1 and task.status == "pending" and not task.assignments
        entry = InFlight(
            decision.task_id,
            decision.attempt,
            agent_id,
            never_held=never_held,
            seen=seen,
            keys=decision if isinstance(decision, ClaimKeys) else None,
            decided_ts=now,
            blocks=ends_plan(decision),
        )
        prepared = self._prepare(step, seen, now)
        after: asyncio.Future[int] | None = None
        chain: Chain | None = None
        if agent_id is not None:
            previous = self._chains.get(agent_id)
            if previous is not None and self._in_flight.get(previous.entry.task_id) is previous.entry:
                after = previous.stored  # not applied by the view yet: appended after it
            chain = Chain(entry, asyncio.get_running_loop().create_future())
            self._chains[agent_id] = chain
        self._in_flight[decision.task_id] = entry
        if prepared.expected is None or _one_append(decision) is None:
            append = asyncio.create_task(self._append(step, entry, prepared, after, chain))
            self._appends.add(append)
            append.add_done_callback(self._over_task)
            return
        # One event against a version the decision read: appended from callbacks, with no task
        # (at a moderate rate each wake-up decides about one task, and a task per append cost as
        # much as the append's own work). After a previous assignment to the agent still in
        # flight: once it is stored, against its sequence.
        over = asyncio.get_running_loop().create_future()
        self._appends.add(over)
        if after is None:
            self._append_soon(decision, entry, prepared, None, chain, over)
        elif after.done():
            self._append_soon(decision, entry, prepared, after.result(), chain, over)
        else:
            after.add_done_callback(
                lambda stored: self._append_soon(decision, entry, prepared, stored.result(), chain, over)
            )

    def _prepare(self, step: Planned, seen: int, now: float) -> Prepared:
        """The event a decision appends and the version it is appended against, read now, in the
        same step as the decision (the view moves on while it is appended)."""
        decision = step.decision
        fleet = self.view.state.fleet
        task = fleet.tasks[decision.task_id]
        correlation = correlation_of(fleet, decision.task_id)
        claim = self._claims.get(decision.task_id)
        causation = claim.event_id if claim is not None else ""
        task_version = self._version("task", decision.task_id)
        if isinstance(decision, ClaimKeys):
            inner = self._prepare(Planned(decision=decision.assign, assumed=step.assumed), seen, now)
            scopes = []
            if decision.claim is not None:
                scopes.append(key_scope("concurrency", decision.claim.key))
            if decision.take is not None:
                scopes.append(key_scope("rate", decision.take.key))
            versions = {scope: self.view.version("system", scope) for scope in scopes}
            return Prepared(inner.event, inner.expected, correlation, causation, key_versions=versions)
        if isinstance(decision, CancelForKey):
            return Prepared(
                cancellation(task, decision.reason, causation),
                task_version,
                correlation,
                causation,
                notice=cancel_notice(task, decision.reason, causation),
            )
        if isinstance(decision, KeyHold):
            held = TaskQueued(
                task_id=decision.task_id,
                attempt=decision.attempt,
                reason=decision.reason,
                detail=decision.detail,
                eligible_ts=decision.eligible_ts,
                correlation_id=correlation,
                causation_id=causation,
            )
            return Prepared(held, task_version, correlation, causation)
        if isinstance(decision, Assign):
            event: Event = assignment_event(
                decision,
                task,
                task_seq=task_version or 0,
                seen=seen,
                now=now,
                mode=self.config.mode,
                assumed=step.assumed,
                correlation=correlation,
                causation=causation,
                decided_by=self.instance,
            )
            return Prepared(event, self._entity_version(decision.agent_id), correlation, causation)
        if isinstance(decision, Expire):
            event = TaskFailed(
                task_id=decision.task_id,
                attempt=decision.attempt,
                error=decision.error,
                failure_type="deadline_exceeded",
                correlation_id=correlation,
                causation_id=causation,
            )
            return Prepared(event, task_version, correlation, causation)
        event = TaskQueued(
            task_id=decision.task_id,
            attempt=decision.attempt,
            reason=decision.reason,
            detail=decision.detail,
            correlation_id=correlation,
            causation_id=causation,
        )
        return Prepared(event, task_version, correlation, causation)

    def _version(self, aggregate: str, aggregate_id: str) -> int | None:
        """The aggregate's last sequence as the view saw it (it does not read task reports it has no
        use for: ``ROUTER_VIEW.reads``); None, for the server to say, once a guess was refused."""
        if self._unsure and f"{aggregate}.{aggregate_id}" in self._unsure:
            return None
        return self.view.seen_version(aggregate, aggregate_id)

    def _entity_version(self, agent_id: str) -> int | None:
        """The last sequence of everything about the agent as the view saw it (None: ask the server)."""
        latest = 0
        for aggregate in AGGREGATES:
            version = self._version(aggregate, agent_id)
            if version is None:
                return None
            if version > latest:
                latest = version
        return latest

    async def _append(
        self,
        step: Planned,
        entry: InFlight,
        prepared: Prepared,
        after: asyncio.Future[int] | None,
        chain: Chain | None,
    ) -> None:
        """Append one decision; on a refusal, catch up before deciding again."""
        decision = step.decision
        stored = -1
        try:
            previous = await after if after is not None else None
            expected = _chained(entry, prepared.expected, previous)
            result = await self._store(decision, prepared, expected, entry.seen)
            stored = self._stored(decision, entry, prepared, result)
        except Exception as exc:
            self._refused(decision, exc)
        finally:
            self._appended(chain, stored)

    def _append_soon(
        self,
        decision: Decision,
        entry: InFlight,
        prepared: Prepared,
        previous: int | None,
        chain: Chain | None,
        over: asyncio.Future[None],
    ) -> None:
        """``_append`` of a decision that appends one event against a version it read
        (``_one_append``), started now: its answer comes to ``_append_answered``."""
        appended = _one_append(decision)
        assert appended is not None
        msg_id, expected_filter = appended
        try:
            expected = _chained(entry, prepared.expected, previous)
            answer = self.bus.append_soon(
                prepared.event, expected=expected, msg_id=msg_id, expected_filter=expected_filter
            )
        except Exception as exc:
            self._refused(decision, exc)
            self._appended(chain, -1)
            self._over(over)
            return
        answer.add_done_callback(
            lambda answered: self._append_answered(decision, entry, prepared, answered, chain, over)
        )

    def _append_answered(
        self,
        decision: Decision,
        entry: InFlight,
        prepared: Prepared,
        answered: asyncio.Future[AppendResult],
        chain: Chain | None,
        over: asyncio.Future[None],
    ) -> None:
        stored = -1
        try:
            stored = self._stored(decision, entry, prepared, answered.result())
        except Exception as exc:
            self._refused(decision, exc)
        finally:
            self._appended(chain, stored)
            self._over(over)

    def _over_task(self, append: asyncio.Future[Any]) -> None:
        """An append is no longer in flight; the last one tells ``_settled``, which waits for them."""
        self._appends.discard(append)
        if not self._appends:
            self._decided.set()

    def _over(self, over: asyncio.Future[None]) -> None:
        over.set_result(None)
        self._over_task(over)

    def _stored(self, decision: Decision, entry: InFlight, prepared: Prepared, result: AppendResult) -> int:
        """A decision is stored: what its next chained assignment is appended against."""
        self._unsure.discard(_guarded_key(decision))
        entry.seq = result.seq
        if result.seq > 0:
            heapq.heappush(self._landing, result.seq)
        self._landed(decision, entry, prepared.event, result)
        return 0 if result.duplicate else result.seq

    def _refused(self, decision: Decision, exc: Exception) -> None:
        """A decision was not stored: on a refusal, catch up before deciding again."""
        task_id = decision.task_id
        if isinstance(exc, ConcurrencyConflict):
            self.conflicts += 1
            self._in_flight.pop(task_id, None)
            self._parked.release(None)  # a slot it was counted to take is free again
            self._weighed.forget(None)
            if _assignment(decision) is None:
                self._doubt(decision)  # (the view reads everything about an agent: see ``_doubt``)
            self._catch_up()
            return
        self.log.error("router_append_failed", task_id=task_id, exc_info=exc)
        self._in_flight.pop(task_id, None)
        self._parked.release(None)
        self._weighed.forget(None)
        self._catch_up()

    def _appended(self, chain: Chain | None, stored: int) -> None:
        """An append is over. Only a plan that ran out of room (``MAX_APPENDS``) can decide more for
        it: a decision stored is laid over the view until its landing wakes the loop, one refused
        catches up first (``_refused``). About every other round at a moderate rate was an answer's,
        deciding nothing."""
        if chain is not None and not chain.stored.done():
            chain.stored.set_result(stored)
        if len(self._appends) >= MAX_APPENDS:
            self._wanted.set()

    async def _store(
        self, decision: Decision, prepared: Prepared, expected: int | None, seen: int
    ) -> AppendResult:
        """Append a decision's events; for a claim of keys, the claim first and then, unless another
        instance claimed for this attempt already, the assignment decided with it."""
        event = prepared.event
        if isinstance(decision, ClaimKeys):
            claimed = await self._claim_keys(decision, prepared, seen)
            if claimed.duplicate:
                return claimed  # claimed by another instance for this attempt: decided again on its view
            decision = decision.assign  # the claim touched no agent: the assignment's guard holds
        if expected is None:  # a version the view cannot vouch for: asked of the server
            assign = _assignment(decision)
            guarded = (
                entity_subjects(assign.agent_id)
                if assign is not None
                else aggregate_subjects("task", decision.task_id)
            )
            expected = await self.bus.last_sequence_of(guarded)
            if expected > seen:  # something the decision did not see: decide again on it
                raise ConcurrencyConflict(guarded, expected, "newer than the decision's view")
        if isinstance(decision, CancelForKey):
            result = await self.bus.append(event, expected=expected, msg_id=cancel_msg_id(decision.task_id))
            if not result.duplicate:
                self.log.info("task_cancelled_for_key", task_id=decision.task_id, reason=decision.reason)
                notice = prepared.notice
                if isinstance(notice, TaskCancelRequested):
                    await self.bus.append(
                        notice, expected=None, msg_id=notice_msg_id(decision.task_id, notice.attempt)
                    )
            return result
        appended = _one_append(decision)
        assert appended is not None  # every other decision appends one event
        msg_id, expected_filter = appended
        return await self.bus.append(event, expected=expected, msg_id=msg_id, expected_filter=expected_filter)

    async def _claim_keys(self, decision: ClaimKeys, prepared: Prepared, seen: int) -> AppendResult:
        """Claim the task's concurrency slot and/or take its rate tokens, each against the key's
        last sequence the decision saw (racing instances cannot both take the last one)."""
        result: AppendResult | None = None
        if decision.claim is not None:
            scope = key_scope("concurrency", decision.claim.key)
            result = await self.bus.append(
                KeySlotClaimed(
                    scope=scope,
                    key=decision.claim.key,
                    task_id=decision.task_id,
                    attempt=decision.attempt,
                    max_running=decision.claim.max_running,
                    running=decision.claim.running,
                    correlation_id=prepared.correlation,
                    causation_id=prepared.causation,
                ),
                expected=await self._key_version(scope, prepared, seen),
                msg_id=key_claim_msg_id("claim", decision.task_id, decision.attempt),
            )
            self.log.debug("key_slot_claimed", task_id=decision.task_id, key=decision.claim.key)
        if decision.take is not None:
            take = decision.take
            scope = key_scope("rate", take.key)
            result = await self.bus.append(
                RateTokensTaken(
                    scope=scope,
                    key=take.key,
                    task_id=decision.task_id,
                    attempt=decision.attempt,
                    units=take.units,
                    tokens_left=take.tokens_left,
                    limit=take.limit.limit,
                    period_s=take.limit.period_s,
                    burst=take.limit.capacity,
                    correlation_id=prepared.correlation,
                    causation_id=prepared.causation,
                ),
                expected=await self._key_version(scope, prepared, seen),
                msg_id=key_claim_msg_id("tokens", decision.task_id, decision.attempt),
            )
        assert result is not None  # a ClaimKeys claims or takes
        return result

    async def _key_version(self, scope: str, prepared: Prepared, seen: int) -> int:
        """The key's last sequence the decision saw. When the view no longer remembers it (pruned),
        the server's, unless the server holds a claim the decision did not see: then a conflict
        (catch up and decide again), never a claim counted against a stale view."""
        known = prepared.key_versions.get(scope)
        if known is not None:
            return known
        latest = await self.bus.aggregate_version("system", scope)
        if latest > seen:
            raise ConcurrencyConflict(f"hive.evt.system.{scope}.*", seen, "the view is behind the key")
        return latest

    def _landed(self, decision: Decision, entry: InFlight, event: Event, result: AppendResult) -> None:
        """A decision is stored (or was already): its claim is done; count it. (A claim of keys that
        another instance made first decides nothing yet: the task is decided again.)"""
        if isinstance(decision, ClaimKeys) and result.duplicate:
            return
        claim = self._claims.get(decision.task_id)
        if claim is not None and claim.attempt == decision.attempt:
            del self._claims[decision.task_id]
            self._settle(claim)
        if result.duplicate:
            return
        assign = _assignment(decision)
        if assign is not None:
            self.assignments += 1
            task = self.view.state.fleet.tasks.get(decision.task_id)
            if entry.never_held and task is not None:
                routable = max(task.submitted_ts, task.not_before_ts)  # a delayed task: its time
                self.assignment_duration.observe(max(0.0, event.ts - routable))
            self.log.debug("task_assigned", task_id=decision.task_id, agent_id=assign.agent_id)
        elif isinstance(decision, Expire):
            self.expired += 1
            self.log.info("task_expired", task_id=decision.task_id, error=decision.error)

    def _doubt(self, decision: Decision) -> None:
        """A decision guarded by its task was refused: the task's version is asked of the server
        next time (what the view does not read, a start or a progress report, may have moved it).
        Not one guarded by its agent: the view reads everything about an agent and its breaker, so
        once caught up (``_catch_up``) its version is the server's; asking it again at every later
        decision for that agent (the server's being newer than the decision's view as long as
        another instance keeps giving the agent work) refused them all without trying."""
        if len(self._unsure) >= MAX_UNSURE:
            self._unsure.clear()
        self._unsure.add(_guarded_key(decision))

    def _catch_up(self) -> None:
        """After a refusal: decide nothing more until the view has applied what the stream holds."""
        if self._catching_up is None or self._catching_up.done():
            self._catching_up = asyncio.create_task(self._catching_up_now(), name="router-catch-up")

    async def _catching_up_now(self) -> None:
        try:
            await self.view.catch_up()
        except Exception:
            self.log.exception("router_catch_up_failed")
            await asyncio.sleep(EXPIRY_POLL_S)
        finally:
            self._wanted.set()


def _chained(entry: InFlight, expected: int | None, previous: int | None) -> int | None:
    """The version a decision is appended against, after our previous assignment to its agent
    (None: none in flight) was stored at `previous` (0: a duplicate, nothing stored; -1: refused)."""
    if previous is None:
        return expected
    if previous < 0:  # the agent changed under it: so it did under this one
        raise ConcurrencyConflict(entity_subjects(entry.agent_id or ""), 0, "chained on a refusal")
    return max(previous, expected or 0) if previous else expected


def _claimed_elsewhere(event: Event, claims: Mapping[str, Claim]) -> bool:
    """A submission this instance holds no claim of: the instance it was delivered to decides it
    (``decide.plan``), so seeing it applied gives this one nothing to decide. (Its own claim wakes
    it as it arrives, before or after the view applies the submission; with two routers, half the
    submissions woke each one for a round that decided nothing.)"""
    return type(event) is TaskSubmitted and event.task_id not in claims


def _one_append(decision: Decision) -> tuple[str, str | None] | None:
    """The message id and guarded filter of a decision that appends one event (None: a claim of
    keys or a cancellation for a key, which append more)."""
    if isinstance(decision, Assign):
        # Against everything about the agent, its breaker included: an assignment decided before
        # the router saw the breaker open (or the agent go silent) is refused, not stored.
        return assign_msg_id(decision.task_id, decision.attempt), entity_subjects(decision.agent_id)
    if isinstance(decision, KeyHold):
        return key_hold_msg_id(decision.task_id, decision.attempt, decision.reason), None
    if isinstance(decision, Expire):
        return failed_msg_id(decision.task_id), None
    if isinstance(decision, ClaimKeys | CancelForKey):
        return None
    return queued_msg_id(decision.task_id, decision.attempt), None


def _guarded_key(decision: Decision) -> str:
    """What a decision is appended against: the agent for an assignment, else the task."""
    assign = _assignment(decision)
    return f"agent.{assign.agent_id}" if assign is not None else f"task.{decision.task_id}"


def _assignment(decision: Decision) -> Assign | None:
    """The assignment a decision makes (with a claim of keys: the one decided with it), if any."""
    if isinstance(decision, ClaimKeys):
        return decision.assign
    return decision if isinstance(decision, Assign) else None
