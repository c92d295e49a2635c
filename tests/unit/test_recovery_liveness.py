"""Liveness decisions without NATS: heartbeats, disconnects, observer stalls, timeouts, quarantine."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.recovery.liveness import (
    LivenessPolicy,
    MarkRecovered,
    MarkUnresponsive,
    agent_liveness,
    overdue_attempts,
    quarantines_over,
)
from shared.domain.fleet import FleetState, apply_fleet
from shared.domain.heartbeats import Heartbeat, HeartbeatTable, decode_heartbeat, parse_disconnect
from shared.events import (
    AgentDeregistered,
    AgentQuarantined,
    AgentRecovered,
    AgentRegistered,
    AgentUnresponsive,
    AnyEvent,
    TaskAssigned,
    TaskStarted,
    TaskSubmitted,
)
from shared.recorded import Recorded

POLICY = LivenessPolicy(interval_s=0.5, missed_limit=3, disconnect_grace_s=0.5, timeout_grace_s=0.5)


def fleet(*events: AnyEvent) -> FleetState:
    state = FleetState()
    for seq, event in enumerate(events, start=1):
        apply_fleet(state, Recorded(seq, event.subject, event))
    return state


def beat(agent_id: str = "a", seq: int = 1, connection: str = "srv/1", interval_s: float = 0.0) -> Heartbeat:
    return Heartbeat(
        agent_id=agent_id,
        session="s",
        ts=0.0,
        in_flight=0,
        capacity=1,
        seq=seq,
        connection=connection,
        interval_s=interval_s,
    )


def registered(agent_id: str = "a", ts: float = 100.0) -> AgentRegistered:
    return AgentRegistered(agent_id=agent_id, capabilities={"x": 1.0}, session="s", ts=ts, capacity=2)


def test_an_agent_is_unresponsive_after_the_missed_limit_of_silence_and_not_before() -> None:
    state = fleet(
        registered(),
        TaskSubmitted(task_id="t", task_type="x"),
        TaskAssigned(agent_id="a", task_id="t", attempt=1, session="s"),
    )
    table = HeartbeatTable(started_at=100.0)
    table.record(beat(), now=101.0)
    assert agent_liveness(state, table, 102.49, POLICY) == []
    [change] = agent_liveness(state, table, 102.5, POLICY)
    assert isinstance(change, MarkUnresponsive)
    assert change.in_flight == {"t": 1} and change.missed_heartbeats == 3
    assert "no heartbeat for 1.50s" in change.reason


def test_silence_counts_from_registration_or_from_when_the_observer_started() -> None:
    table = HeartbeatTable(started_at=200.0)
    state = fleet(registered(ts=100.0))
    assert agent_liveness(state, table, 201.0, POLICY) == [], "the observer only listens since 200"
    assert len(agent_liveness(state, table, 201.5, POLICY)) == 1
    late = fleet(registered(ts=300.0))
    assert agent_liveness(late, table, 301.0, POLICY) == [], (
        "registered at 300, never heard: 1 s is not enough"
    )


def test_a_closed_connection_makes_the_agent_unresponsive_after_the_grace_unless_it_beats_again() -> None:
    state = fleet(registered())
    table = HeartbeatTable(started_at=100.0)
    table.record(beat(connection="srv/7"), now=101.0)
    assert table.connection_closed("srv/8", "Client Closed", now=101.1) == []
    assert table.connection_closed("srv/7", "Client Closed", now=101.1) == ["a"]
    assert agent_liveness(state, table, 101.5, POLICY) == []
    [change] = agent_liveness(state, table, 101.6, POLICY)
    assert isinstance(change, MarkUnresponsive) and "connection closed (Client Closed)" in change.reason
    table.record(beat(seq=2, connection="srv/9"), now=101.4)  # reconnected in time
    assert agent_liveness(state, table, 101.6, POLICY) == []


def test_an_unresponsive_agent_recovers_once_its_beats_come_back() -> None:
    state = fleet(registered(), AgentUnresponsive(agent_id="a", ts=105.0))
    table = HeartbeatTable(started_at=100.0)
    table.record(beat(), now=103.0)
    assert agent_liveness(state, table, 105.5, POLICY) == [], "a beat from before the silence proves nothing"
    table.record(beat(seq=2), now=106.0)
    [change] = agent_liveness(state, table, 106.1, POLICY)
    assert isinstance(change, MarkRecovered) and change.reason == "heartbeats resumed"
    state = fleet(
        registered(), AgentUnresponsive(agent_id="a", ts=105.0), AgentRecovered(agent_id="a", ts=106.2)
    )
    assert state.agents["a"].status == "active"


def test_a_stalled_observer_counts_silence_again_from_when_it_resumed() -> None:
    state = fleet(registered())
    table = HeartbeatTable(started_at=100.0)
    table.record(beat(), now=100.0)
    assert table.tick(100.1, stall_s=0.5) is False
    assert table.tick(103.0, stall_s=0.5) is True  # the observer itself was paused for 2.9 s
    assert agent_liveness(state, table, 103.0, POLICY) == []
    assert len(agent_liveness(state, table, 104.5, POLICY)) == 1


def test_deregistered_agents_are_not_watched_and_quarantined_ones_are() -> None:
    table = HeartbeatTable(started_at=0.0)
    gone = fleet(registered(), AgentDeregistered(agent_id="a", ts=101.0))
    assert agent_liveness(gone, table, 500.0, POLICY) == []
    benched = fleet(registered(), AgentQuarantined(agent_id="a", until_ts=1000.0, ts=101.0))
    assert len(agent_liveness(benched, table, 500.0, POLICY)) == 1


def test_an_agent_announcing_a_longer_interval_is_judged_by_it() -> None:
    state = fleet(registered())
    table = HeartbeatTable(started_at=100.0)
    table.record(beat(interval_s=2.0), now=101.0)
    assert agent_liveness(state, table, 106.9, POLICY) == []
    assert len(agent_liveness(state, table, 107.0, POLICY)) == 1


@given(
    last_beat=st.floats(min_value=0.0, max_value=50.0),
    later=st.floats(min_value=0.0, max_value=10.0),
)
def test_without_disconnects_an_agent_is_unresponsive_exactly_when_silent_for_the_limit(
    last_beat: float, later: float
) -> None:
    state = fleet(registered(ts=0.0))
    table = HeartbeatTable(started_at=0.0)
    table.record(beat(), now=last_beat)
    now = last_beat + later
    silent_for = now - last_beat  # what the clock difference really is, after float rounding
    changes = agent_liveness(state, table, now, POLICY)
    assert bool(changes) == (silent_for >= POLICY.interval_s * POLICY.missed_limit)


def test_attempts_past_their_timeout_and_grace_are_overdue_except_a_silent_agent_s() -> None:
    events: list[AnyEvent] = [
        registered("a"),
        registered("b"),
        TaskSubmitted(task_id="slow", task_type="x", timeout_s=10.0),
        TaskAssigned(agent_id="a", task_id="slow", attempt=1, session="s", ts=100.0),
        TaskStarted(task_id="slow", agent_id="a", attempt=1, ts=101.0),
        TaskSubmitted(task_id="never_started", task_type="x", timeout_s=10.0),
        TaskAssigned(agent_id="b", task_id="never_started", attempt=1, session="s", ts=100.0),
    ]
    state = fleet(*events)
    # Measured from the start when the agent reported one, else from the assignment.
    assert [o.task_id for o in overdue_attempts(state, 111.5, grace_s=0.5)] == ["never_started"]
    overdue = overdue_attempts(state, 111.51, grace_s=0.5)
    assert [(o.task_id, o.attempt, o.agent_id) for o in overdue] == [
        ("slow", 1, "a"),
        ("never_started", 1, "b"),
    ]
    silent = fleet(*events, AgentUnresponsive(agent_id="a"))
    assert [o.task_id for o in overdue_attempts(silent, 200.0, 0.5)] == ["never_started"]


def test_a_quarantine_ends_when_its_time_is_over_and_survives_a_re_registration() -> None:
    state = fleet(
        registered(), AgentQuarantined(agent_id="a", until_ts=150.0, ts=101.0), registered(ts=120.0)
    )
    assert state.agents["a"].status == "quarantined"
    assert quarantines_over(state, 149.0) == []
    [over] = quarantines_over(state, 150.0)
    assert over.reason == "quarantine over"
    fleet_after = fleet(
        registered(),
        AgentQuarantined(agent_id="a", until_ts=150.0, ts=101.0),
        AgentRecovered(agent_id="a", ts=150.0),
    )
    assert fleet_after.agents["a"].status == "active"


def test_heartbeats_and_disconnect_advisories_are_decoded_or_refused() -> None:
    data = b'{"agent_id": "a", "session": "s", "ts": 1.0, "in_flight": 0, "capacity": 1}'
    assert decode_heartbeat("hive.hb.a", data).seq == 0, "old beats without seq still decode"
    for subject, body in [("hive.hb.b", data), ("hive.hb.a", b"[]"), ("hive.hb.a", b"{")]:
        try:
            decode_heartbeat(subject, body)
        except ValueError:
            continue
        raise AssertionError(f"{body!r} on {subject} was accepted")
    advisory = (
        b'{"server": {"id": "NSRV"}, "client": {"id": 12, "name": "agents"}, "reason": "Client Closed"}'
    )
    assert parse_disconnect(advisory) == ("NSRV/12", "Client Closed")
    assert parse_disconnect(b"garbage") is None
    assert parse_disconnect(b'{"server": {}, "client": {}}') is None


def test_jitter_is_the_spread_of_the_gaps_between_beats() -> None:
    table = HeartbeatTable(started_at=0.0)
    for seq, at in enumerate([0.0, 0.5, 1.0, 1.7, 2.0], start=1):
        table.record(beat(seq=seq), now=at)
    stats = table.jitter("a", now=2.5)
    assert stats is not None and stats.samples == 4
    assert abs(stats.mean_interval_s - 0.5) < 1e-9 and stats.stdev_s > 0.1
    assert stats.since_last_s == 0.5
    assert table.jitter("nobody", now=2.5) is None
