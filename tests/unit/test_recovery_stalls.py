"""Stalled agents without NATS: beating but not taking assignments (stalled), full (busy, not
judged), caught up, agents that do not say what they received (never judged), and what a stall does
to the fleet, routing and the incident's plan."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.recovery.incidents import Incident, plan_incident
from services.recovery.liveness import MarkRecovered
from services.recovery.stalls import MarkStalled, StallPolicy, StallWatch, agent_stalls
from shared.domain.fleet import FleetState, apply_fleet
from shared.domain.heartbeats import Heartbeat, HeartbeatTable, decode_heartbeat
from shared.domain.outcomes import OutcomesState, apply_outcomes
from shared.domain.routing.eligibility import ineligibility
from shared.domain.routing.view import RouterState
from shared.domain.strategies import choose_strategy, unresponsive_severity
from shared.events import (
    AgentQuarantined,
    AgentRecovered,
    AgentRegistered,
    AgentStalled,
    AnyEvent,
    TaskAssigned,
    TaskStarted,
    TaskSubmitted,
)
from shared.recorded import Recorded
from shared.settings import SettingsError, load_settings

POLICY = StallPolicy(after_s=3.0)


def fleet(*events: AnyEvent) -> FleetState:
    """The events applied at sequences 1, 2, ..."""
    state = FleetState()
    for seq, event in enumerate(events, start=1):
        apply_fleet(state, Recorded(seq, event.subject, event))
    return state


def registered(session: str = "s") -> AgentRegistered:
    return AgentRegistered(agent_id="a", capabilities={"x": 1.0}, session=session, capacity=2, ts=100.0)


def assigned(task_id: str, session: str = "s") -> list[AnyEvent]:
    return [
        TaskSubmitted(task_id=task_id, task_type="x"),
        TaskAssigned(agent_id="a", task_id=task_id, attempt=1, session=session, ts=100.0),
    ]


def beat(
    received_seq: int | None, in_flight: int = 0, capacity: int = 2, session: str = "s", seq: int = 1
) -> Heartbeat:
    return Heartbeat(
        agent_id="a",
        session=session,
        ts=0.0,
        in_flight=in_flight,
        capacity=capacity,
        seq=seq,
        received_seq=received_seq,
    )


def judge(
    state: FleetState, table: HeartbeatTable, watches: dict[str, StallWatch], now: float
) -> list[MarkStalled | MarkRecovered]:
    return agent_stalls(state, table, watches, now, POLICY)


# registered at 1, t1 submitted at 2 and assigned at 3
ONE_ASSIGNMENT = (registered(), *assigned("t1"))


def test_an_agent_beating_without_taking_its_assignment_is_stalled_after_the_bound_and_not_before() -> None:
    state = fleet(*ONE_ASSIGNMENT)
    table = HeartbeatTable(started_at=100.0)
    watches: dict[str, StallWatch] = {}
    table.record(beat(received_seq=1), now=101.0)  # it took nothing since its registration
    assert judge(state, table, watches, 101.0) == [], "the watch begins: seq 3 seen pending at 101"
    assert watches["a"].pending_seq == 3
    table.record(beat(received_seq=1, seq=2), now=103.9)
    assert judge(state, table, watches, 103.95) == []
    table.record(beat(received_seq=1, seq=3), now=104.0)
    [stall] = judge(state, table, watches, 104.05)
    assert isinstance(stall, MarkStalled)
    assert (stall.received_seq, stall.pending_seq, stall.behind_since_ts) == (1, 3, 101.0)
    assert stall.unreceived == {"t1": 1} and stall.waited_s == 3.05
    assert "assignment at seq 3 not received after 3.05s while it kept beating" in stall.reason


def test_a_busy_agent_is_never_stalled_however_long_its_slots_stay_full() -> None:
    state = fleet(*ONE_ASSIGNMENT)
    table = HeartbeatTable(started_at=100.0)
    watches: dict[str, StallWatch] = {}
    for second in range(101, 200):
        # Full by its own count: it may rightly not pull while it has no slot.
        table.record(beat(received_seq=1, in_flight=2, capacity=2, seq=second), now=float(second))
        assert judge(state, table, watches, float(second)) == []
    assert watches == {}


def test_an_agent_that_took_its_assignment_is_not_watched() -> None:
    state = fleet(*ONE_ASSIGNMENT)
    table = HeartbeatTable(started_at=100.0)
    watches: dict[str, StallWatch] = {}
    table.record(beat(received_seq=3), now=101.0)
    assert judge(state, table, watches, 500.0) == [] and watches == {}


def test_an_agent_that_does_not_say_what_it_received_is_never_judged() -> None:
    state = fleet(*ONE_ASSIGNMENT)
    old_beat = b'{"agent_id": "a", "session": "s", "ts": 1.0, "in_flight": 0, "capacity": 2, "seq": 4}'
    decoded = decode_heartbeat("hive.hb.a", old_beat)
    assert decoded.received_seq is None, "a beat of the older protocol still decodes"
    table = HeartbeatTable(started_at=100.0)
    watches: dict[str, StallWatch] = {}
    for second in range(101, 120):
        table.record(decoded, now=float(second))
        assert judge(state, table, watches, float(second)) == []


def test_a_beat_of_another_session_says_nothing_about_the_current_one() -> None:
    state = fleet(*ONE_ASSIGNMENT)
    table = HeartbeatTable(started_at=100.0)
    watches: dict[str, StallWatch] = {}
    for second in range(101, 120):
        table.record(beat(received_seq=0, session="newer", seq=second), now=float(second))
        assert judge(state, table, watches, float(second)) == []


def test_an_assignment_of_an_earlier_session_is_not_waited_for() -> None:
    # Assigned to session s at 3; the agent registered again (session s2) at 4: its inbox starts after.
    state = fleet(*ONE_ASSIGNMENT, registered("s2"))
    table = HeartbeatTable(started_at=100.0)
    watches: dict[str, StallWatch] = {}
    for second in range(101, 120):
        table.record(beat(received_seq=4, session="s2", seq=second), now=float(second))
        assert judge(state, table, watches, float(second)) == []


def test_silence_is_not_a_stall_it_takes_a_beat_after_the_bound() -> None:
    state = fleet(*ONE_ASSIGNMENT)
    table = HeartbeatTable(started_at=100.0)
    watches: dict[str, StallWatch] = {}
    table.record(beat(received_seq=1), now=101.0)
    assert judge(state, table, watches, 101.0) == []
    assert judge(state, table, watches, 110.0) == [], "no beat since: recovery's silence check decides"


def test_a_paused_observer_counts_again_from_when_it_resumed() -> None:
    state = fleet(*ONE_ASSIGNMENT)
    table = HeartbeatTable(started_at=100.0)
    watches: dict[str, StallWatch] = {}
    table.record(beat(received_seq=1), now=101.0)
    assert judge(state, table, watches, 101.0) == []
    table.tick(101.0, stall_s=0.5)
    assert table.tick(110.0, stall_s=0.5) is True  # the observer was paused: beats may be stale
    table.record(beat(received_seq=1, seq=2), now=110.0)
    assert judge(state, table, watches, 110.0) == []
    table.record(beat(received_seq=1, seq=3), now=113.0)
    assert len(judge(state, table, watches, 113.0)) == 1


def test_the_watch_moves_on_when_the_agent_passes_it() -> None:
    # Assigned at 3 (seen at 101), then at 5 (seen later); the agent took seq 3 late but within
    # the bound, and not yet seq 5: a new watch, counted from when it passed the first.
    table = HeartbeatTable(started_at=100.0)
    watches: dict[str, StallWatch] = {}
    table.record(beat(received_seq=1), now=101.0)
    judge(fleet(*ONE_ASSIGNMENT), table, watches, 101.0)
    assert (watches["a"].pending_seq, watches["a"].since) == (3, 101.0)
    state = fleet(*ONE_ASSIGNMENT, *assigned("t2"))
    table.record(beat(received_seq=3, seq=2), now=103.0)
    assert judge(state, table, watches, 103.0) == []
    assert (watches["a"].pending_seq, watches["a"].since) == (5, 103.0)
    table.record(beat(received_seq=3, seq=3), now=105.5)
    assert judge(state, table, watches, 105.5) == [], "seq 5 has been pending 2.5 s, not 3"
    table.record(beat(received_seq=3, seq=4), now=106.0)
    [stall] = judge(state, table, watches, 106.0)
    assert isinstance(stall, MarkStalled) and stall.unreceived == {"t2": 1}, "t1 was received"


@given(
    delays=st.lists(st.floats(min_value=0.0, max_value=2.9), min_size=1, max_size=30),
)
def test_an_agent_that_takes_each_assignment_within_the_bound_is_never_stalled(delays: list[float]) -> None:
    """However fast work arrives, each assignment received within the bound keeps the agent clear."""
    events: list[AnyEvent] = [registered()]
    state = fleet(*events)
    table = HeartbeatTable(started_at=0.0)
    watches: dict[str, StallWatch] = {}
    now = 1.0
    received = 1
    for index, delay in enumerate(delays):
        events += assigned(f"t{index}")
        state = fleet(*events)
        assigned_seq = len(events)
        # Beats while the agent has not yet taken it, then the beat that says it did.
        for step in (0.0, delay / 2, delay):
            table.record(beat(received_seq=received, seq=index * 3 + 1), now=now + step)
            assert judge(state, table, watches, now + step) == []
        received = assigned_seq
        table.record(beat(received_seq=received, seq=index * 3 + 2), now=now + delay)
        assert judge(state, table, watches, now + delay) == []
        now += delay + 0.01


def test_started_attempts_are_not_among_the_unreceived() -> None:
    state = fleet(
        *ONE_ASSIGNMENT,
        *assigned("t2"),
        TaskStarted(task_id="t2", agent_id="a", attempt=1, session="s"),
    )
    table = HeartbeatTable(started_at=100.0)
    watches: dict[str, StallWatch] = {}
    table.record(beat(received_seq=1), now=101.0)
    judge(state, table, watches, 101.0)
    table.record(beat(received_seq=1, seq=2), now=104.0)
    [stall] = judge(state, table, watches, 104.0)
    assert isinstance(stall, MarkStalled) and stall.unreceived == {"t1": 1}


def test_a_stalled_agent_takes_no_work_and_comes_back_when_its_beat_shows_it_caught_up() -> None:
    stalled = AgentStalled(agent_id="a", session="s", received_seq=1, pending_seq=3, reason="r", ts=104.0)
    state = fleet(*ONE_ASSIGNMENT, stalled)  # agent.stalled at seq 4
    agent = state.agents["a"]
    assert agent.status == "stalled" and agent.stall is not None
    assert (agent.stall.seq, agent.stall.pending_seq, agent.stall.reason) == (4, 3, "r")
    task = fleet(*ONE_ASSIGNMENT, stalled, TaskSubmitted(task_id="new", task_type="x")).tasks["new"]
    assert ineligibility(RouterState(fleet=state), agent, task) == "agent is stalled"
    table = HeartbeatTable(started_at=100.0)
    watches: dict[str, StallWatch] = {}
    table.record(beat(received_seq=3), now=105.0)
    assert judge(state, table, watches, 105.0) == [], "it read its assignment, not yet the stall"
    table.record(beat(received_seq=4, seq=2), now=105.5)
    [back] = judge(state, table, watches, 105.5)
    assert isinstance(back, MarkRecovered) and "caught up" in back.reason
    after = fleet(*ONE_ASSIGNMENT, stalled, AgentRecovered(agent_id="a", session="s", ts=105.6))
    assert after.agents["a"].status == "active" and after.agents["a"].stall is None


def test_a_stall_judged_on_another_session_or_a_non_active_agent_changes_nothing() -> None:
    stale = AgentStalled(agent_id="a", session="old", received_seq=1, pending_seq=3)
    assert fleet(*ONE_ASSIGNMENT, stale).agents["a"].status == "active"
    benched = AgentQuarantined(agent_id="a", until_ts=500.0, ts=101.0)
    stalled = AgentStalled(agent_id="a", session="s", received_seq=1, pending_seq=3)
    assert fleet(*ONE_ASSIGNMENT, benched, stalled).agents["a"].status == "quarantined"
    again = fleet(*ONE_ASSIGNMENT, stalled, registered("s2")).agents["a"]
    assert again.status == "active" and again.stall is None, "a new session starts clean"


def test_a_stall_incident_moves_only_what_is_still_unstarted() -> None:
    state = fleet(
        *ONE_ASSIGNMENT,
        *assigned("t2"),
        TaskStarted(task_id="t2", agent_id="a", attempt=1, session="s"),  # started meanwhile
    )
    incident = Incident(
        incident_id="stalled-9",
        failure_type="agent_stalled",
        severity="medium",
        ts=104.0,
        agent_id="a",
        attempts={"t1": 1, "t2": 1},
        unstarted_only=True,
        session="s",
    )
    steps = plan_incident(state, incident, choose_strategy("agent_stalled", "medium"), 300.0)
    assert steps.plan.strategy == "reassign"
    assert [(s.task_id, getattr(s, "attempt", None), getattr(s, "reason", "")) for s in steps.task_steps] == [
        ("t1", 2, "agent_stalled")
    ]
    assert [(s.agent_id, s.task_id) for s in steps.stops] == [("a", "t1")]
    assert "task t2 was started meanwhile: left with its agent" in steps.notes


def test_an_agent_that_keeps_stalling_is_quarantined() -> None:
    outcomes = OutcomesState()
    for seq, ts in enumerate((100.0, 200.0, 300.0), start=1):
        event = AgentStalled(agent_id="a", session="s", ts=ts)
        apply_outcomes(outcomes, Recorded(seq, event.subject, event))
    episodes = outcomes.agents["a"].stalled_ts
    assert unresponsive_severity(episodes[:1], 100.0) == "medium"
    assert unresponsive_severity(episodes, 300.0) == "high"
    assert choose_strategy("agent_stalled", "high").strategy == "quarantine_agent"


def test_the_bound_is_set_by_the_environment_and_inf_never_judges() -> None:
    assert load_settings({}).stall_after_s == 3.0
    assert load_settings({"STALL_AFTER_S": "0.75"}).stall_after_s == 0.75
    with pytest.raises(SettingsError, match="STALL_AFTER_S"):
        load_settings({"STALL_AFTER_S": "0"})
    never = StallPolicy(after_s=load_settings({"STALL_AFTER_S": "inf"}).stall_after_s)
    state = fleet(*ONE_ASSIGNMENT)
    table = HeartbeatTable(started_at=100.0)
    watches: dict[str, StallWatch] = {}
    for second in range(101, 10_000, 100):
        table.record(beat(received_seq=1, seq=second), now=float(second))
        assert agent_stalls(state, table, watches, float(second), never) == []
