"""Routing decisions: pure functions of (router state, task, now, config). No NATS, no clock of their own.

``route_task`` filters the agents that may take a task (active, breaker admitting, capable, not
excluded), scores them with the task's strategy in the configured mode (the routing model in
``shared/domain/routing``), drops those predicted below the task's quality threshold, and picks the
best one with room; ``explain`` words why. With a strategy that spreads ties (``adaptive``), "best"
is decided statistically (``ties``): the candidates the posterior cannot rank at the configured
confidence are equals, and the least loaded of them gets the task.

``next_decision`` walks the queue most-urgent-first and returns the first thing to do: an
``Assign`` for a task an agent can take now; a ``Hold`` for a task seen for the first time that no
agent can take (recorded as queued, with the reason); an ``Expire`` for a task held below its
quality threshold whose deadline has passed (it fails: no agent was predicted good enough in time).

``plan`` makes many decisions at once without waiting to see any of them stored: each is made on
the view with the assignments decided before it assumed (``overlay.py``), and says which.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Collection, Mapping, Sequence

import msgspec

from services.router import keyed
from services.router.explain import breakdown, explanation, tie_rival_reason, why_not
from services.router.keyed import CancelForKey, ClaimKeys, KeyHold
from services.router.overlay import assuming
from services.router.ties import Tie, spread_ties
from shared.domain.breakers import admits
from shared.domain.fleet import AgentView, TaskView
from shared.domain.routing.admission import Go
from shared.domain.routing.affinity import (
    AFFINITY_BUSY,
    bound_agent,
    placement_preference,
    preference_note,
)
from shared.domain.routing.eligibility import (
    BELOW_THRESHOLD,
    Eligibility,
    held_below_threshold,
    quality_wait_end,
)
from shared.domain.routing.keys import Limits
from shared.domain.routing.labels import describe
from shared.domain.routing.performance import reference_duration
from shared.domain.routing.policy import RoutingConfig, Weights, effective_weights, strategy_of
from shared.domain.routing.scoring import Scored, TaskScorer
from shared.domain.routing.view import RouterState
from shared.events import RejectedCandidate, TaskAssigned

MAX_REJECTED_SHOWN = 5
SKIP_LOOK = 64
"""Tasks neither in flight nor parked that ``all_skipped`` looks at before leaving it to a plan."""


class _Alike:
    """``placement_preference`` of every agent for a task without preferred labels or affinity key."""

    def __getitem__(self, agent_id: str) -> tuple[float, bool]:
        return (-0.0, True)


_NO_PLACEMENT = _Alike()

ALL_BUSY = "all_capable_agents_busy"
NO_CAPABLE = "no_capable_agent"


class Assign(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An assignment decided. ``omit_defaults``: one decided without rivals encodes as before, so
    the digests of decisions compared across versions (``bench/route_cost.py``) stay comparable."""

    task_id: str
    attempt: int
    agent_id: str
    session: str
    strategy: str
    score: float
    breakdown: dict[str, float]
    rejected: list[RejectedCandidate]
    explanation: str
    passed_over: list[str] = []
    """Contenders passed over because other router instances had just given them work
    (``Tie.passed_over``)."""


def assignment_event(
    decision: Assign,
    task: TaskView,
    *,
    task_seq: int,
    seen: int,
    now: float,
    mode: str,
    assumed: list[str],
    correlation: str,
    causation: str,
    decided_by: str = "",
) -> TaskAssigned:
    """The event an assignment appends: the decision, what it was decided on, and what the agent
    needs to run the task."""
    return TaskAssigned(
        agent_id=decision.agent_id,
        task_id=decision.task_id,
        attempt=decision.attempt,
        task_seq=task_seq,
        session=decision.session,
        task_type=task.spec.task_type,
        payload=task.spec.payload,
        timeout_s=task.spec.timeout_s,
        strategy=decision.strategy,
        score=decision.score,
        breakdown=decision.breakdown,
        rejected=decision.rejected,
        explanation=decision.explanation,
        decided_at_seq=seen,
        decided_at_ts=now,
        mode=mode,
        assumed=assumed,
        decided_by=decided_by,
        passed_over=decision.passed_over,
        correlation_id=correlation,
        causation_id=causation,
    )


class Hold(msgspec.Struct, frozen=True, kw_only=True):
    task_id: str
    attempt: int
    reason: str
    detail: str


class Expire(msgspec.Struct, frozen=True, kw_only=True):
    """Fail a task held below its quality threshold once its deadline has passed."""

    task_id: str
    attempt: int
    error: str


Decision = Assign | Hold | Expire | ClaimKeys | CancelForKey | KeyHold


def _rank_key(
    strategy: str, task: TaskView, agent: AgentView, scored: Scored, placement: tuple[float, bool]
) -> tuple[object, ...]:
    """Sort key, best first: the preferred agent of a retry, the task's preferred labels and its
    affinity key's agent (`placement`: ``placement_preference``), then the strategy's order."""
    preferred = (agent.agent_id != task.preferred_agent_id, *placement)
    if strategy == "round_robin":
        return (*preferred, agent.last_assigned_seq, agent.agent_id)
    return (*preferred, -scored.score, agent.load, agent.last_assigned_seq, agent.agent_id)


def route_task(
    state: RouterState, task: TaskView, now: float = 0.0, config: RoutingConfig | None = None
) -> Assign | Hold:
    """The best agent with room for `task`, or why it must wait."""
    config = config or RoutingConfig()
    strategy = strategy_of(task, config)
    weights = effective_weights(strategy, config.mode, task.spec, state.adaptive)
    threshold = task.spec.expected_quality_threshold
    reference = reference_duration(state.performance, task)
    ineligible: list[RejectedCandidate] = []
    below_threshold: list[RejectedCandidate] = []
    free: list[tuple[AgentView, Scored]] = []
    full: list[tuple[AgentView, Scored]] = []
    below: list[Scored] = []
    eligibility = Eligibility(state, task)
    eligible: list[AgentView] = []
    room = False  # whether an eligible agent has a free slot (``AgentView.free > 0``)
    for agent in state.fleet.agents.values():
        reason = eligibility.why_not(agent)
        if reason is not None:
            if agent.status != "deregistered":
                ineligible.append(RejectedCandidate(agent_id=agent.agent_id, score=0.0, reason=reason))
            continue
        eligible.append(agent)
        room = room or agent.capacity > len(agent.in_flight)
    if threshold <= 0.0 and not room:
        # Every eligible agent qualifies (no prediction is below 0) and none has room: the task
        # waits whatever the scores, which are not worked out (a backlog holds every new task).
        return _held(state, task, len(eligible), [], threshold)
    scorer = TaskScorer(state.performance, state.breakers, task, weights, now, reference)
    for agent, scored in zip(eligible, scorer.score_many(eligible), strict=True):
        if scored.prediction.quality < threshold:
            below.append(scored)
            below_threshold.append(
                RejectedCandidate(
                    agent_id=agent.agent_id,
                    score=round(scored.score, 4),
                    reason=f"predicted quality {scored.prediction.quality:.2f} below the task's "
                    f"threshold {threshold:.2f}",
                )
            )
            continue
        # Qualified: with room (the candidates) or without (shown among the rivals).
        (free if agent.capacity > len(agent.in_flight) else full).append((agent, scored))
    if not free:
        return _held(state, task, len(full), below, threshold)
    placements = (
        {agent.agent_id: placement_preference(state, task, agent) for agent, _s in free}
        if task.spec.label_rules or task.spec.affinity_key
        else _NO_PLACEMENT  # nothing to prefer: every agent alike (what placement_preference says)
    )
    if placements is _NO_PLACEMENT and strategy != "round_robin":
        # ``_rank_key`` without the placement every agent shares (it orders nothing), in one pass:
        # the same order, for fewer calls (agent ids are unique: AgentViews are never compared).
        preferred = task.preferred_agent_id
        ranked = sorted(
            [
                ((a.agent_id != preferred, -s.score, len(a.in_flight), a.last_assigned_seq, a.agent_id), a, s)
                for a, s in free
            ]
        )
        free = [(a, s) for _key, a, s in ranked]
        alike = len(free)
    else:
        free.sort(key=lambda pair: _rank_key(strategy, task, pair[0], pair[1], placements[pair[0].agent_id]))
        # Ties spread only among the agents the task's labels and affinity like as much as the leader.
        placed = placements[free[0][0].agent_id]
        alike = next(
            (i for i, (agent, _s) in enumerate(free) if placements[agent.agent_id] != placed),
            len(free),
        )
    head = free[:alike]
    tie = spread_ties(strategy, task, head, weights, config, merits=scorer.merits)
    free[:alike] = head
    chosen, best = free[0]
    # Reasons are worded only for the runner-up and the rivals shown (the decision itself needs
    # none of them), each once: the runner-up is usually among the rivals shown.
    reasons: dict[str, str] = {}

    def lost_because(agent: AgentView, scored: Scored) -> str:
        said = reasons.get(agent.agent_id)
        if said is None:
            said = reasons[agent.agent_id] = _why_not_chosen(
                strategy, task, chosen, best, agent, scored, weights, tie
            )
        return said

    runner_up: tuple[Scored, str] | None = None
    if len(free) > 1:
        agent, scored = free[1]
        runner_up = (scored, lost_because(agent, scored))
    scored_rejections = [
        RejectedCandidate(
            agent_id=agent_id,
            score=round(scored.score, 4),
            reason=lost_because(agent, scored)
            if agent.capacity > len(agent.in_flight)  # ``agent.free > 0``
            else f"at capacity ({len(agent.in_flight)}/{agent.capacity})",
        )
        for _score, agent_id, agent, scored in rivals_shown(free, full)
    ]
    shown = (
        scored_rejections
        + sorted(below_threshold, key=lambda r: (-r.score, r.agent_id))
        + sorted(ineligible, key=lambda r: r.agent_id)
    )
    return Assign(
        task_id=task.task_id,
        attempt=task.attempt,
        agent_id=chosen.agent_id,
        session=chosen.session,
        strategy=strategy,
        score=round(best.score, 4),
        breakdown=breakdown(best, weights, tie),
        rejected=shown[:MAX_REJECTED_SHOWN],
        passed_over=tie.passed_over() if tie is not None else [],
        explanation=_with_note(
            explanation(strategy, config.mode, chosen, best, task, runner_up, tie),
            # Without labels, label rules or an affinity key there is nothing to note: "".
            preference_note(state, task, chosen)
            if task.spec.label_rules or task.spec.labels or task.spec.affinity_key is not None
            else "",
        ),
    )


def rivals_shown(
    free: list[tuple[AgentView, Scored]], full: list[tuple[AgentView, Scored]]
) -> list[tuple[float, str, AgentView, Scored]]:
    """The rivals of ``free[0]`` shown, best first by (score, agent id), each with that key:
    ``sorted(free[1:] + full, key=...)[:MAX_REJECTED_SHOWN]`` without ordering the rivals not shown
    nor calling a key function per rival (agent ids are unique: agents are never compared)."""
    return heapq.nsmallest(
        MAX_REJECTED_SHOWN, [(-s.score, a.agent_id, a, s) for part in (free[1:], full) for a, s in part]
    )


def _with_note(text: str, note: str) -> str:
    return f"{text} Placement: {note}." if note else text


def _why_not_chosen(
    strategy: str,
    task: TaskView,
    chosen: AgentView,
    best: Scored,
    agent: AgentView,
    scored: Scored,
    weights: Weights,
    tie: Tie | None = None,
) -> str:
    if chosen.agent_id == task.preferred_agent_id:
        return f"score {scored.score:.3f}; the retry prefers {chosen.agent_id}"
    if strategy == "round_robin":
        return f"given work more recently than {chosen.agent_id} (round robin)"
    if tie is not None:
        reason = tie_rival_reason(tie, chosen, best, agent, scored)
        if reason is not None:
            return reason
    if scored.score >= best.score:
        return f"same score {scored.score:.3f}; ties go to the less loaded, then the longest idle"
    return why_not(best, scored, agent, weights, chosen)


def _held(state: RouterState, task: TaskView, qualified: int, below: list[Scored], threshold: float) -> Hold:
    """Why the task waits: `qualified` agents could take it but have no room, `below` are predicted
    below its threshold."""
    hold = _hold(task, qualified, below, threshold)
    bound = bound_agent(state, task)
    if bound is not None and hold.reason == ALL_BUSY:
        hold = Hold(
            task_id=task.task_id,
            attempt=task.attempt,
            reason=AFFINITY_BUSY,
            detail=f"affinity key {task.spec.affinity_key!r} is bound to {bound} (hard), "
            "which is at capacity",
        )
    return hold


def _hold(task: TaskView, qualified: int, below: list[Scored], threshold: float) -> Hold:
    if qualified:
        return Hold(
            task_id=task.task_id,
            attempt=task.attempt,
            reason=ALL_BUSY,
            detail=f"{qualified} capable agent(s), all at capacity",
        )
    if below:
        best = max(below, key=lambda s: (s.prediction.quality, s.agent_id))
        return Hold(
            task_id=task.task_id,
            attempt=task.attempt,
            reason=BELOW_THRESHOLD,
            detail=f"best predicted quality {best.prediction.quality:.2f} ({best.agent_id}) is below the "
            f"required {threshold:.2f}; waiting for an agent predicted to reach it"
            + (" until the deadline" if task.spec.deadline_ts is not None else ""),
        )
    return Hold(
        task_id=task.task_id,
        attempt=task.attempt,
        reason=NO_CAPABLE,
        detail=f"no active agent offers {task.spec.task_type} with {sorted(task.spec.required_capabilities)}"
        + (f" and metadata {task.spec.resource_constraints}" if task.spec.resource_constraints else ""),
    )


def _expired(task: TaskView, now: float) -> bool:
    """Held below its quality threshold and past its deadline."""
    deadline = task.spec.deadline_ts
    return held_below_threshold(task) and deadline is not None and deadline <= now


def next_expiry(state: RouterState, config: RoutingConfig | None = None) -> float | None:
    """The earliest deadline among tasks held below their quality threshold (when to look again);
    with `config`, also the earliest end of such a task's quality wait (``quality_wait_end``)."""
    deadlines: list[float] = []
    tasks = state.fleet.tasks
    for _rank, _seq, task_id in state.fleet.queue:  # one pass: a backlog can be long
        task = tasks.get(task_id)
        if task is None or not held_below_threshold(task):
            continue  # (quality_wait_end is None for it too)
        if task.spec.deadline_ts is not None:
            deadlines.append(task.spec.deadline_ts)
        end = quality_wait_end(task, config.quality_wait_s) if config is not None else None
        if end is not None:
            deadlines.append(end)
    return min(deadlines, default=None)


def _settle(task: TaskView, now: float, config: RoutingConfig | None) -> bool:
    """The task waited its quality wait out: it goes to the best available agent instead."""
    end = quality_wait_end(task, config.quality_wait_s) if config is not None else None
    return end is not None and end <= now


def _settled(decision: Assign, task: TaskView, now: float) -> Assign:
    """The assignment of a task whose quality wait is over, saying so."""
    waited = now - max(task.submitted_ts, task.spec.not_before_ts or 0.0)
    why = (
        f"no agent was predicted to reach quality {task.spec.expected_quality_threshold:.2f} within "
        f"{waited:.0f}s (its quality wait): given to the best available agent. "
    )
    return msgspec.structs.replace(decision, explanation=why + decision.explanation)


class Scan:
    """What a look at the queue learns that stays true for the rest of a plan, whose decisions only
    take capacity, slots and tokens: the limits in force, the keys found closed, the placements
    found impossible. (Without it, each decision of a plan would weigh again every closed key and
    every hopeless task ahead in the queue.)"""

    def __init__(
        self,
        state: RouterState,
        config: RoutingConfig | None,
        limits: Limits | None = None,
        weighed: keyed.Weighed | None = None,
        owed: Mapping[str, KeyHold] | None = None,
    ) -> None:
        self.limits = limits if limits is not None else keyed.limits_of(state, config)
        self.blocked = keyed.Blocked(weighed)
        self.unplaceable: set[tuple[object, ...]] = set()
        self.holds: dict[str, KeyHold] = dict(owed or {})
        """Tasks found waiting for their keys (first those an earlier plan found: ``Parked.owed``),
        their holds recorded after every task that can start (a burst of keyed work fills the free
        slots first)."""
        self.start = 0
        """Where the next look at the queue begins: every task before it was passed over for a
        reason the plan's decisions cannot undo (so a plan walks the queue once, not once per
        decision)."""


def next_decision(
    state: RouterState,
    now: float,
    skip: Collection[str] = (),
    config: RoutingConfig | None = None,
    claimed: Collection[str] | None = None,
    busy: keyed.Busy = (),
    scan: Scan | None = None,
) -> Decision | None:
    """The next thing the router should append, or None when the queue needs nothing now.

    With `claimed` (router instances sharing the work), a task never decided yet is left to the
    instance its submission or requeue was delivered to, unless it is claimed here or it waited
    for a start time or a backoff (then whoever looks first); a queued task is anyone's. A task
    needing a claim of a `busy` key (this router's claim of it is in flight) waits for it. A plan
    passes one `scan` to all its decisions: what one decision found stays true for the next.
    """
    fleet = state.fleet
    if not fleet.queue:
        return None
    any_room: bool | None = None  # whether any agent has room: looked at once a queued task asks
    scan = scan or Scan(state, config)
    unplaceable = scan.unplaceable
    limits = scan.limits  # --- keys hook (services/router/keyed.py) ---
    blocked = scan.blocked
    holds = scan.holds
    tasks = fleet.tasks
    start = scan.start
    for index, (_rank, _seq, task_id) in enumerate(itertools.islice(fleet.queue, start, None), start):
        if task_id in skip or task_id in holds:
            continue
        task = tasks.get(task_id)
        if task is None or task.not_before_ts > now:
            continue
        if claimed is not None and not _mine(task, task_id, claimed):
            continue
        scan.start = index  # a decision about this task (or its fair turn) is returned from here
        if keyed.keyed(task) and (  # a key found closed, or claimed in flight: nothing to record
            keyed.passed_over(state, task, blocked) or keyed.waits_for_own_claim(state, task, busy)
        ):
            continue
        expired = _expired(task, now)
        if task.status == "queued" and not expired:
            if any_room is None:
                any_room = _any_room(state)
            if not any_room:
                continue
        settle = _settle(task, now, config)
        if (
            task.status == "queued"
            and unplaceable
            and not expired
            and not settle
            and _placement_signature(task) in unplaceable
        ):
            continue
        # --- keys hook: concurrency keys and rate limits (services/router/keyed.py) ---
        admitted = keyed.admission(state, task, now, limits, blocked)
        if admitted is None:
            continue
        if isinstance(admitted, keyed.KeyHold):
            holds[task_id] = admitted  # recorded once nothing more can start
            continue
        if not isinstance(admitted, Go):
            return admitted
        if not settle and not expired:
            turn = keyed.fair_turn(state, index, task, now, limits, skip, busy, blocked)
            if turn is not task:
                fair = route_task(state, turn, now, config)
                if isinstance(fair, Assign):
                    go = keyed.admission(state, turn, now, limits, keyed.Blocked())
                    if isinstance(go, Go):
                        return keyed.before_assign(fair, turn, go)
        # --- end of the keys hook ---
        if settle:
            lenient = msgspec.structs.replace(task.spec, expected_quality_threshold=0.0)
            decision = route_task(state, msgspec.structs.replace(task, spec=lenient), now, config)
            if isinstance(decision, Assign):
                return keyed.before_assign(_settled(decision, task, now), task, admitted)
            continue
        decision = route_task(state, task, now, config)
        if isinstance(decision, Assign):
            return keyed.before_assign(decision, task, admitted)
        if expired and decision.reason == BELOW_THRESHOLD:
            return Expire(
                task_id=task.task_id,
                attempt=task.attempt,
                error=f"deadline passed with no agent predicted to reach quality "
                f"{task.spec.expected_quality_threshold:.2f}: {decision.detail.split(';')[0]}",
            )
        unplaceable.add(_placement_signature(task))
        if task.status == "pending":
            return decision
    scan.start = len(fleet.queue)
    for task_id in list(holds):  # nothing more can start: a task waiting for its keys says why
        if task_id in skip:
            continue
        hold = holds.pop(task_id)
        task = tasks.get(task_id)
        if task is not None and task.attempt == hold.attempt and _still_owed(task, hold):
            return hold
    return None


def all_skipped(
    queue: Sequence[tuple[object, object, str]],
    in_flight: Collection[str],
    parked: Collection[str],
    *,
    tasks: Mapping[str, TaskView] | None = None,
    claimed: Collection[str] | None = None,
    now: float = 0.0,
    look: int = SKIP_LOOK,
) -> bool:
    """Whether every task in `queue` is in `in_flight` or `parked`: a plan skipping both (and owing
    no hold) decides nothing then, whatever the view (``next_decision`` passes each over first).

    With `tasks` and `claimed` (a plan's own), also a task not due at `now` or left to the instance
    its submission was delivered to (``_mine``): the router's projection often applies a submission
    before its work consumer claims it, and that wake-up made a whole plan for nothing. Such tasks
    are looked at only while few (`look` beyond those in flight or parked): past that, the plan
    walks them anyway."""
    skippable = len(in_flight) + len(parked)
    if tasks is None or claimed is None:
        if len(queue) > skippable:
            return False
        return all(task_id in in_flight or task_id in parked for _rank, _seq, task_id in queue)
    if len(queue) > skippable + look:
        return False
    for _rank, _seq, task_id in queue:
        if task_id in in_flight or task_id in parked:
            continue
        task = tasks.get(task_id)
        if task is None or task.not_before_ts > now or not _mine(task, task_id, claimed):
            continue
        return False
    return True


def _any_room(state: RouterState) -> bool:
    """Some active agent has a free slot its breaker lets a task through."""
    return any(
        a.status == "active" and a.free > 0 and admits(state.breakers, a.agent_id) is None
        for a in state.fleet.agents.values()
    )


def _still_owed(task: TaskView, hold: KeyHold) -> bool:
    """A hold found by an earlier plan is still to record: its task waits, its wait not recorded."""
    return task.status == "pending" or (task.status == "queued" and task.queued_reason != hold.reason)


def _mine(task: TaskView, task_id: str, claimed: Collection[str]) -> bool:
    """Whether an instance holding `claimed` decides `task` (see ``next_decision``)."""
    if task.status != "pending" or task_id in claimed:
        return True
    return task.not_before_ts > task.submitted_ts  # its time came: no delivery says whose it is


class Planned(msgspec.Struct, frozen=True, kw_only=True):
    """A decision of a plan and the agents it assumed given work before it (in order)."""

    decision: Decision
    assumed: list[str]


def plan(
    state: RouterState,
    now: float,
    config: RoutingConfig | None = None,
    *,
    assumed: Sequence[str] = (),
    claims: Sequence[tuple[ClaimKeys, float]] = (),
    after_seq: int = 0,
    skip: Collection[str] = (),
    claimed: Collection[str] | None = None,
    limit: int = 32,
    scan: Scan | None = None,
) -> list[Planned]:
    """Up to `limit` decisions in queue order, each made as ``next_decision`` would on the view with
    `assumed` (assignments of this router the view has not applied yet, in order, as if applied
    after `after_seq`), `claims` (its claims of keys in flight, each with the time it was decided)
    and the plan's earlier decisions assumed made. The state is left as it was. `scan`: made by
    the caller to keep the limits in force between plans and learn which tasks the plan parked.

    A claim of keys is laid over the view like an assignment; a task needing a claim of a key
    claimed in flight waits for the next plan. A cancellation for a key ends the plan: what it
    frees is not laid over the view, so nothing is decided after it until it is applied.
    """
    planned: list[Planned] = []
    decided = set(skip)
    with assuming(state, assumed, after_seq, claims) as assumptions:
        scan = scan or Scan(state, config)
        while len(planned) < limit:
            decision = next_decision(state, now, decided, config, claimed, assumptions.busy, scan)
            if decision is None:
                break
            planned.append(Planned(decision=decision, assumed=list(assumptions.agents)))
            decided.add(decision.task_id)
            if isinstance(decision, Assign):
                assumptions.assume(decision.agent_id)
            elif isinstance(decision, ClaimKeys):
                assumptions.assume(decision.assign.agent_id)
                assumptions.claim_keys(decision, now)
            elif ends_plan(decision):
                break
    return planned


def ends_plan(decision: Decision) -> bool:
    """A cancellation for a key (``keyed.py``): nothing more is decided until it is applied."""
    return isinstance(decision, CancelForKey)


def _placement_signature(task: TaskView) -> tuple[object, ...]:
    """Tasks with the same signature fit the same agents: one miss stands for all of them."""
    spec = task.spec
    quality = (spec.expected_quality_threshold, spec.profile) if spec.expected_quality_threshold > 0 else None
    return (
        spec.task_type,
        tuple(sorted(spec.required_capabilities)),
        tuple(sorted(task.excluded_agent_ids)),
        task.preferred_agent_id,
        quality,
        tuple(sorted(spec.labels.items())),
        tuple(describe(rule) for rule in spec.label_rules if rule.mode == "require"),
        spec.affinity_key if spec.affinity == "hard" else None,
    )
