"""Rebalancing decisions without NATS: what waits unstarted moves, where to, and what stays and why."""

from __future__ import annotations

import math

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from services.balancer.decide import Plan, RebalancePolicy, plan_moves, waiting_attempts
from services.balancer.view import BalancerState, apply_balancer
from services.router.decide import Assign, route_task
from shared.domain.starts import START_REPORT_AFTER_S, START_REPORT_LATE_S, START_REPORTED_WITHIN_S
from shared.events import (
    AgentDraining,
    AgentRegistered,
    AnyEvent,
    BreakerHalfOpened,
    BreakerOpened,
    Persona,
    TaskAssigned,
    TaskCompleted,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
)
from shared.projection import Snapshot
from shared.recorded import Recorded
from tests.unit.test_balancer_apply import histories, recorded_log

POLICY = RebalancePolicy(unstarted_after_s=2.0, quality_tolerance=0.05)


def state_of(*events: AnyEvent) -> BalancerState:
    state = BalancerState()
    for seq, event in enumerate(events, start=1):
        apply_balancer(state, Recorded(seq, event.subject, event))
    return state


def agent(agent_id: str, capacity: int = 2, proficiency: float = 0.9, **caps: float) -> AgentRegistered:
    return AgentRegistered(
        agent_id=agent_id,
        capabilities={"review": proficiency, **caps},
        capacity=capacity,
        persona=Persona(cognitive_style="analytical"),
        ts=1.0,
    )


def stuck_on(holder: str, task_id: str = "t", at: float = 100.0, **spec: object) -> list[AnyEvent]:
    return [
        TaskSubmitted(task_id=task_id, task_type="review", ts=at, **spec),  # type: ignore[arg-type]
        TaskAssigned(agent_id=holder, task_id=task_id, attempt=1, ts=at),
    ]


def only_move(plan: Plan) -> tuple[str, str, str]:
    assert len(plan.moves) == 1, plan
    move = plan.moves[0]
    return move.task_id, move.from_agent_id, move.to_agent_id


def test_an_attempt_unstarted_past_the_limit_moves_to_an_idle_capable_agent() -> None:
    state = state_of(agent("slow"), agent("idle"), *stuck_on("slow"))
    plan = plan_moves(state, now=102.5, policy=POLICY)
    assert only_move(plan) == ("t", "slow", "idle")
    assert plan.moves[0].attempt == 2 and plan.moves[0].waited_s == 2.5
    assert plan.waiting == 1


def test_nothing_moves_before_the_limit_nor_once_started() -> None:
    waiting = state_of(agent("slow"), agent("idle"), *stuck_on("slow"))
    assert plan_moves(waiting, now=101.0, policy=POLICY).moves == []
    started = state_of(
        agent("slow"), agent("idle"), *stuck_on("slow"), TaskStarted(task_id="t", agent_id="slow", attempt=1)
    )
    assert plan_moves(started, now=200.0, policy=POLICY).moves == []


def test_the_least_utilised_target_wins() -> None:
    state = state_of(
        agent("slow"),
        agent("half", capacity=2),
        agent("empty", capacity=4),
        TaskSubmitted(task_id="other", task_type="review", ts=100.0),
        TaskAssigned(agent_id="half", task_id="other", attempt=1, ts=100.0),
        TaskStarted(task_id="other", agent_id="half", attempt=1),
        *stuck_on("slow"),
    )
    assert only_move(plan_moves(state, now=103.0, policy=POLICY))[2] == "empty"


def test_work_never_moves_to_an_agent_predicted_worse_beyond_the_tolerance() -> None:
    state = state_of(agent("slow", proficiency=0.95), agent("weak", proficiency=0.3), *stuck_on("slow"))
    plan = plan_moves(state, now=103.0, policy=POLICY)
    assert plan.moves == []
    assert "weak" in plan.notes[0] and "below" in plan.notes[0]
    tolerant = plan_moves(state, now=103.0, policy=RebalancePolicy(quality_tolerance=0.9))
    assert only_move(tolerant)[2] == "weak"


def track_record(agent_id: str, quality: float, count: int = 30) -> list[AnyEvent]:
    """`count` review tasks `agent_id` completed at `quality`."""
    events: list[AnyEvent] = []
    for index in range(count):
        task_id = f"{agent_id}-done-{index}"
        events += [
            TaskSubmitted(task_id=task_id, task_type="review", ts=50.0),
            TaskAssigned(agent_id=agent_id, task_id=task_id, attempt=1, ts=50.0),
            TaskStarted(task_id=task_id, agent_id=agent_id, attempt=1, ts=50.0),
            TaskCompleted(task_id=task_id, agent_id=agent_id, attempt=1, quality=quality, ts=51.0),
        ]
    return events


def test_a_proven_holder_is_not_traded_for_an_unknown_agent_but_an_unproven_one_is() -> None:
    proven_holder = state_of(
        agent("proven"), agent("newcomer"), *track_record("proven", 0.9), *stuck_on("proven")
    )
    plan = plan_moves(proven_holder, now=103.0, policy=POLICY)
    assert plan.moves == [] and "newcomer" in plan.notes[0]
    unproven_holder = state_of(
        agent("newcomer"), agent("proven"), *track_record("proven", 0.8), *stuck_on("newcomer")
    )
    assert only_move(plan_moves(unproven_holder, now=103.0, policy=POLICY)) == ("t", "newcomer", "proven")


def test_the_target_must_reach_the_tasks_quality_threshold() -> None:
    state = state_of(
        agent("slow", proficiency=0.9),
        agent("ok", proficiency=0.85),
        *stuck_on("slow", expected_quality_threshold=0.95),
    )
    assert plan_moves(state, now=103.0, policy=RebalancePolicy(quality_tolerance=1.0)).moves == []


def test_targets_must_be_capable_free_closed_and_not_stuck_themselves() -> None:
    state = state_of(
        agent("slow"),
        agent("other-skill", capacity=2, proficiency=0.9),
        AgentRegistered(agent_id="no-review", capabilities={"python": 1.0}, capacity=2, ts=1.0),
        agent("full", capacity=1),
        agent("probing"),
        BreakerHalfOpened(agent_id="probing", probes_allowed=3),
        agent("draining"),
        AgentDraining(agent_id="draining"),
        agent("also-slow"),
        TaskSubmitted(task_id="busy", task_type="review", ts=100.0),
        TaskAssigned(agent_id="full", task_id="busy", attempt=1, ts=100.0),
        TaskStarted(task_id="busy", agent_id="full", attempt=1),
        *stuck_on("also-slow", task_id="t0", at=99.0),
        *stuck_on("slow", required_capabilities=["python"]),
    )
    plan = plan_moves(state, now=103.0, policy=POLICY)
    # t needs python: only "no-review" offers it, but not review. t0 may go to other-skill only.
    assert [(m.task_id, m.to_agent_id) for m in plan.moves] == [("t0", "other-skill")]
    assert any(note.startswith("task t on slow") and "no other capable agent" in note for note in plan.notes)


def test_moves_in_one_plan_never_fill_a_target_beyond_its_capacity() -> None:
    events: list[AnyEvent] = [agent("slow", capacity=5), agent("small", capacity=2)]
    for index in range(5):
        events += stuck_on("slow", task_id=f"t{index}", at=100.0 + index / 10)
    plan = plan_moves(state_of(*events), now=110.0, policy=POLICY)
    assert [m.task_id for m in plan.moves] == ["t0", "t1"]  # longest waiting first, two slots
    assert len(plan.notes) == 3 and all("free slot" in note for note in plan.notes)


def test_a_task_whose_move_was_refused_stays_and_its_targets_slot_goes_to_the_next_waiting() -> None:
    """After a refused move the plan is made again on the same view (no catch-up): the refused task
    is left where it is, and the slot it had taken moves the next waiting attempt."""
    events: list[AnyEvent] = [agent("slow", capacity=3), agent("small", capacity=1)]
    for index in range(3):
        events += stuck_on("slow", task_id=f"t{index}", at=100.0 + index / 10)
    state = state_of(*events)
    assert [m.task_id for m in plan_moves(state, now=110.0, policy=POLICY).moves] == ["t0"]
    again = plan_moves(state, now=110.0, policy=POLICY, settled={"t0"})
    assert [(m.task_id, m.to_agent_id) for m in again.moves] == [("t1", "small")]
    assert not any("t0" in note for note in again.notes) and again.waiting == 3
    assert plan_moves(state, now=110.0, policy=POLICY, settled={"t0", "t1", "t2"}).moves == []


def test_a_probe_of_a_half_open_breaker_stays_but_work_at_an_open_breaker_moves_once_surely_unstarted() -> (
    None
):
    probing = state_of(
        agent("flaky"),
        agent("idle"),
        BreakerHalfOpened(agent_id="flaky", probes_allowed=1),
        *stuck_on("flaky"),
    )
    plan = plan_moves(probing, now=110.0, policy=POLICY)
    assert plan.moves == [] and "probe" in plan.notes[0]
    tripped = state_of(agent("flaky"), agent("idle"), *stuck_on("flaky"), BreakerOpened(agent_id="flaky"))
    # Younger than START_REPORTED_WITHIN_S, it may be running with its start report deferred.
    assert plan_moves(tripped, now=100.1, policy=POLICY).moves == []
    assert only_move(plan_moves(tripped, now=100.0 + START_REPORTED_WITHIN_S, policy=POLICY)) == (
        "t",
        "flaky",
        "idle",
    )


def test_an_attempt_that_may_run_with_its_start_report_deferred_never_moves_whatever_the_limit() -> None:
    """The SDK reports task.started of work still running START_REPORT_AFTER_S after it began, by
    START_REPORT_LATE_S after its assignment: before START_REPORTED_WITHIN_S, "assigned" may mean
    running, whatever limit an optimize request names."""
    assert START_REPORT_LATE_S * 2 <= START_REPORTED_WITHIN_S <= RebalancePolicy().unstarted_after_s / 2
    eager = RebalancePolicy(unstarted_after_s=0.0)
    state = state_of(agent("busy"), agent("idle"), *stuck_on("busy"))
    for now in (100.0, 100.0 + START_REPORT_AFTER_S, 100.0 + START_REPORTED_WITHIN_S - 0.01):
        plan = plan_moves(state, now=now, policy=eager)
        assert plan.moves == [] and plan.waiting == 0
    assert only_move(plan_moves(state, now=100.0 + START_REPORTED_WITHIN_S, policy=eager)) == (
        "t",
        "busy",
        "idle",
    )


def test_a_task_is_moved_at_most_max_moves_per_task_times() -> None:
    state = state_of(
        agent("a"),
        agent("b"),
        agent("c"),
        *stuck_on("a"),
        TaskRequeued(task_id="t", attempt=2, reason="rebalanced", preferred_agent_id="b", ts=103.0),
        TaskAssigned(agent_id="b", task_id="t", attempt=2, ts=103.0),
        TaskRequeued(task_id="t", attempt=3, reason="rebalanced", preferred_agent_id="c", ts=106.0),
        TaskAssigned(agent_id="c", task_id="t", attempt=3, ts=106.0),
    )
    plan = plan_moves(state, now=120.0, policy=POLICY)
    assert plan.moves == [] and "already moved 2" in plan.notes[0]
    finished = state_of(
        agent("a"),
        *stuck_on("a"),
        TaskRequeued(task_id="t", attempt=2, reason="rebalanced", ts=103.0),
        TaskAssigned(agent_id="a", task_id="t", attempt=2, ts=103.0),
        TaskCompleted(task_id="t", agent_id="a", attempt=2),
    )
    assert finished.moved == {}, "a finished task is forgotten"


def test_work_never_moves_to_an_agent_emptied_of_work_it_did_not_start_until_it_reads_its_work() -> None:
    """Two stalled agents: "a"'s task went to "b", which did not start it either. "a", emptied of
    its work, looks idle, but moving the task back would leave it waiting again (then, its moves
    spent, until its attempt's timeout); it goes to "c", and "a" is a target again once it starts
    or ends an attempt, or registers anew."""
    moved_once = [
        agent("a"),
        agent("b"),
        *stuck_on("a"),
        TaskRequeued(task_id="t", attempt=2, reason="rebalanced", preferred_agent_id="b", ts=103.0),
        TaskAssigned(agent_id="b", task_id="t", attempt=2, ts=103.0),
    ]
    stalled = state_of(*moved_once)
    assert set(stalled.unstarting) == {"a"}
    plan = plan_moves(stalled, now=106.0, policy=POLICY)
    assert plan.moves == [] and "have not started or ended an attempt" in plan.notes[0]
    assert "such as a" in plan.notes[0]
    assert only_move(plan_moves(state_of(*moved_once, agent("c")), now=106.0, policy=POLICY)) == (
        "t",
        "b",
        "c",
    )
    for shows_it_reads in (
        [*stuck_on("a", task_id="u", at=104.0), TaskStarted(task_id="u", agent_id="a", attempt=1, ts=104.1)],
        [
            *stuck_on("a", task_id="u", at=104.0),
            TaskCompleted(task_id="u", agent_id="a", attempt=1, ts=104.1),
        ],
        [agent("a")],
    ):
        state = state_of(*moved_once, *shows_it_reads)
        assert state.unstarting == {}
        assert only_move(plan_moves(state, now=106.0, policy=POLICY)) == ("t", "b", "a")
    stale = state_of(*moved_once, TaskStarted(task_id="t", agent_id="a", attempt=1, ts=104.0))
    assert set(stale.unstarting) == {"a"}, "the superseded attempt's start is refused: proves nothing"


def test_moves_spread_over_idle_agents_and_efficiency_before_and_after_follows_them() -> None:
    state = state_of(
        agent("slow"), agent("idle-1"), agent("idle-2"), *stuck_on("slow", "t1"), *stuck_on("slow", "t2")
    )
    plan = plan_moves(state, now=103.0, policy=POLICY)
    assert sorted(m.to_agent_id for m in plan.moves) == ["idle-1", "idle-2"]
    assert plan.efficiency_before == 0.5 and plan.efficiency_after == 1.0


def test_the_router_honours_the_preferred_agent_when_eligible_and_free() -> None:
    state = state_of(
        agent("best", proficiency=1.0),
        agent("preferred", proficiency=0.6),
        *stuck_on("best"),
        TaskRequeued(task_id="t", attempt=2, reason="rebalanced", preferred_agent_id="preferred", ts=103.0),
    )
    decision = route_task(state.router, state.router.fleet.tasks["t"], now=103.0)
    assert isinstance(decision, Assign) and decision.agent_id == "preferred"
    busy = state_of(
        agent("best", proficiency=1.0),
        agent("preferred", capacity=1, proficiency=0.6),
        TaskSubmitted(task_id="other", task_type="review", ts=100.0),
        TaskAssigned(agent_id="preferred", task_id="other", attempt=1, ts=100.0),
        *stuck_on("best"),
        TaskRequeued(task_id="t", attempt=2, reason="rebalanced", preferred_agent_id="preferred", ts=103.0),
    )
    decision = route_task(busy.router, busy.router.fleet.tasks["t"], now=103.0)
    assert isinstance(decision, Assign) and decision.agent_id == "best"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=3), min_size=2, max_size=6),
    st.lists(st.tuples(st.integers(min_value=0, max_value=5), st.floats(0.0, 10.0)), max_size=12),
)
def test_a_plan_moves_only_unstarted_work_to_agents_with_room(
    capacities: list[int], stuck: list[tuple[int, float]]
) -> None:
    events: list[AnyEvent] = [agent(f"a{i}", capacity=c) for i, c in enumerate(capacities)]
    loads = dict.fromkeys(range(len(capacities)), 0)
    for index, (holder, age) in enumerate(stuck):
        holder %= len(capacities)
        if loads[holder] >= capacities[holder]:
            continue
        loads[holder] += 1
        events += stuck_on(f"a{holder}", task_id=f"t{index}", at=100.0 - age)
    state = state_of(*events)
    plan = plan_moves(state, now=100.0, policy=POLICY)
    fleet = state.router.fleet
    incoming: dict[str, int] = {}
    for move in plan.moves:
        task = fleet.tasks[move.task_id]
        assert task.status == "assigned" and task.agent_id == move.from_agent_id
        assert 100.0 - (task.assigned_ts or 0.0) >= POLICY.unstarted_after_s
        incoming[move.to_agent_id] = incoming.get(move.to_agent_id, 0) + 1
    for agent_id, count in incoming.items():
        target = fleet.agents[agent_id]
        assert target.load + count <= target.capacity
        assert all(m.from_agent_id != agent_id for m in plan.moves)


def test_the_balancer_state_survives_a_snapshot_round_trip() -> None:
    state = state_of(
        agent("slow"),
        agent("idle"),
        *track_record("idle", 0.8, count=3),
        *stuck_on("slow"),
        TaskRequeued(task_id="t", attempt=2, reason="rebalanced", preferred_agent_id="idle", ts=103.0),
        TaskAssigned(agent_id="slow", task_id="t", attempt=2, ts=103.5),
    )
    blob = msgspec.msgpack.encode(Snapshot(seq=1, state=state, versions={}))
    restored = msgspec.msgpack.decode(blob, type=Snapshot[BalancerState]).state
    assert restored == state and restored.moved == {"t": 1}
    assert plan_moves(restored, now=110.0, policy=POLICY) == plan_moves(state, now=110.0, policy=POLICY)


def test_a_move_costs_the_task_no_retry_budget_and_teaches_the_router_nothing_about_the_holder() -> None:
    state = state_of(
        agent("slow"),
        agent("idle"),
        *stuck_on("slow"),
        TaskRequeued(task_id="t", attempt=2, reason="rebalanced", previous_agent_id="slow", ts=103.0),
    )
    task = state.router.fleet.tasks["t"]
    assert task.attempt == 2 and task.task_failures == 0 and task.status == "pending"
    assert state.router.fleet.agents["slow"].in_flight == {}
    assert "slow" not in state.router.performance.agents


# --- a view behind the log ------------------------------------------------------------------------


def test_an_attempt_has_waited_only_as_long_as_the_view_has_seen() -> None:
    """3 s after the assignment by the clock, but the view has read the log only 1.5 s past it: the
    start or the end may be stored already, so nothing moves; once it has read 2.5 s past, it does."""
    state = state_of(agent("slow"), agent("idle"), *stuck_on("slow"))
    behind = plan_moves(state, now=103.0, policy=POLICY, seen_until=101.5)
    assert behind.moves == [] and behind.waiting == 0
    plan = plan_moves(state, now=103.0, policy=POLICY, seen_until=102.5)
    assert only_move(plan) == ("t", "slow", "idle") and plan.moves[0].waited_s == 2.5
    assert waiting_attempts(state.router, 103.0, POLICY, seen_until=101.5) == []


def test_a_view_behind_counts_the_start_report_bound_up_to_what_it_has_seen_too() -> None:
    """At an open breaker the wait does not matter, but an attempt younger than
    START_REPORTED_WITHIN_S by what the view has seen may have reported its start since."""
    tripped = state_of(agent("flaky"), agent("idle"), *stuck_on("flaky"), BreakerOpened(agent_id="flaky"))
    now = 100.0 + START_REPORTED_WITHIN_S + 1.0
    assert plan_moves(tripped, now=now, policy=POLICY, seen_until=100.5).moves == []
    assert only_move(plan_moves(tripped, now=now, policy=POLICY, seen_until=now - 1.0))[2] == "idle"


def test_a_view_that_never_caught_up_moves_nothing() -> None:
    state = state_of(agent("slow"), agent("idle"), *stuck_on("slow"))
    assert plan_moves(state, now=200.0, policy=POLICY, seen_until=-math.inf).moves == []


@settings(max_examples=150, deadline=None)
@given(
    histories(),
    st.sampled_from([0.0, 1.5, 4.0, 30.0]),
    st.floats(0.0, 40.0),
    st.sampled_from([0.0, 2.0]),
)
def test_a_view_behind_decides_what_the_old_computation_decided_at_its_horizon(
    events: list[AnyEvent], now: float, lag: float, unstarted_after_s: float
) -> None:
    """The attempts found waiting are those the old computation found at `now - lag`; a current
    view (no horizon, or one at or past `now`) plans exactly what it planned before."""
    state = BalancerState()
    for recorded in recorded_log(events):
        apply_balancer(state, recorded)
    policy = RebalancePolicy(unstarted_after_s=unstarted_after_s)
    assert waiting_attempts(state.router, now, policy, now - lag) == waiting_attempts(
        state.router, now - lag, policy
    )
    old = plan_moves(state, now, policy)
    assert plan_moves(state, now, policy, None, now) == old
    assert plan_moves(state, now, policy, None, now + lag) == old
