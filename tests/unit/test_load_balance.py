"""Load-balancing efficiency: misplaced work against the most even placement whole tasks allow."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shared.domain.breakers import BreakersState, apply_breakers
from shared.domain.fleet import FleetState, apply_fleet
from shared.domain.load_balance import (
    LoadWindow,
    efficiency,
    fleet_efficiency,
    misplaced_work,
    sample_assignment,
)
from shared.events import AgentRegistered, AnyEvent, BreakerOpened, TaskAssigned, TaskSubmitted
from shared.recorded import Recorded


def test_ten_tasks_on_twenty_single_slot_agents_are_as_even_as_whole_tasks_allow() -> None:
    assert misplaced_work([(1, 1)] * 10 + [(0, 1)] * 10) == (10, 0)


def test_work_doubled_up_while_agents_idle_is_misplaced() -> None:
    # Five agents hold two tasks each while fifteen hold none: five tasks should move.
    assert misplaced_work([(2, 2)] * 5 + [(0, 2)] * 15) == (10, 5)
    assert efficiency([(2, 2)] * 5 + [(0, 2)] * 15) == 0.5


def test_fair_shares_follow_capacity() -> None:
    # Capacity 3 and 1, four tasks: 3 + 1 is even; 2 + 2 puts one task on the small agent too many.
    assert misplaced_work([(3, 3), (1, 1)]) == (4, 0)
    assert misplaced_work([(2, 3), (2, 1)]) == (4, 1)


def test_nothing_in_flight_has_no_efficiency() -> None:
    assert efficiency([(0, 2), (0, 3)]) is None
    assert efficiency([]) is None


def test_one_task_per_agent_too_many_is_counted_once_each() -> None:
    assert misplaced_work([(3, 4), (1, 4), (0, 4)]) == (4, 1)


loads = st.lists(
    st.tuples(st.integers(min_value=0, max_value=8), st.integers(min_value=1, max_value=8)), max_size=12
)


@given(loads)
def test_efficiency_is_between_zero_and_one_and_ignores_order(pairs: list[tuple[int, int]]) -> None:
    found = efficiency(pairs)
    if sum(load for load, _ in pairs) == 0:
        assert found is None
        return
    assert found is not None and 0.0 <= found <= 1.0
    assert efficiency(list(reversed(pairs))) == found


@given(st.integers(min_value=1, max_value=12), st.integers(min_value=1, max_value=5), st.data())
def test_spreading_work_as_evenly_as_possible_is_fully_efficient(
    agents: int, capacity: int, data: st.DataObject
) -> None:
    total = data.draw(st.integers(min_value=1, max_value=agents * capacity))
    even = [(total // agents + (1 if index < total % agents else 0), capacity) for index in range(agents)]
    assert efficiency(even) == 1.0


@given(st.lists(st.integers(min_value=0, max_value=6), min_size=2, max_size=10))
def test_misplaced_work_is_what_one_move_from_the_fullest_to_the_emptiest_reduces(counts: list[int]) -> None:
    pairs = [(count, 6) for count in counts]
    total, misplaced = misplaced_work(pairs)
    if misplaced == 0:
        return
    fullest = max(range(len(counts)), key=lambda i: counts[i])
    emptiest = min(range(len(counts)), key=lambda i: counts[i])
    moved = list(counts)
    moved[fullest] -= 1
    moved[emptiest] += 1
    assert misplaced_work([(count, 6) for count in moved]) == (total, misplaced - 1)


def fleet_of(*events: AnyEvent) -> tuple[FleetState, BreakersState, LoadWindow]:
    fleet, breakers, window = FleetState(), BreakersState(), LoadWindow()
    for seq, event in enumerate(events, start=1):
        recorded = Recorded(seq, event.subject, event)
        sample_assignment(window, fleet, breakers, recorded)
        apply_fleet(fleet, recorded)
        apply_breakers(breakers, recorded)
    return fleet, breakers, window


def test_a_sample_is_taken_among_the_agents_able_to_take_the_task() -> None:
    fleet, breakers, window = fleet_of(
        AgentRegistered(agent_id="a", capabilities={"x": 1.0}, capacity=2),
        AgentRegistered(agent_id="b", capabilities={"x": 1.0}, capacity=2),
        AgentRegistered(agent_id="other", capabilities={"y": 1.0}, capacity=2),
        TaskSubmitted(task_id="t1", task_type="x", ts=100.0),
        TaskAssigned(agent_id="a", task_id="t1", attempt=1, ts=100.1),
        TaskSubmitted(task_id="t2", task_type="x", ts=100.2),
        TaskAssigned(agent_id="a", task_id="t2", attempt=1, ts=100.3),
    )
    # First sample: 1 task among a, b: even. Second: both on a while b idles: one misplaced
    # (the idle agent offering only y is no alternative and does not count).
    assert window.efficiency(0.0) == (1.0 - 1 / 3, 3)
    assert fleet_efficiency(fleet, breakers) == 0.5


def test_an_agent_whose_breaker_is_open_is_no_alternative() -> None:
    _fleet, _breakers, window = fleet_of(
        AgentRegistered(agent_id="a", capabilities={"x": 1.0}, capacity=2),
        AgentRegistered(agent_id="b", capabilities={"x": 1.0}, capacity=2),
        BreakerOpened(agent_id="b"),
        TaskSubmitted(task_id="t1", task_type="x", ts=100.0),
        TaskAssigned(agent_id="a", task_id="t1", attempt=1, ts=100.1),
        TaskSubmitted(task_id="t2", task_type="x", ts=100.2),
        TaskAssigned(agent_id="a", task_id="t2", attempt=1, ts=100.3),
    )
    assert window.efficiency(0.0) == (1.0, 3)


def test_a_refused_assignment_and_a_burst_within_the_sampling_gap_take_no_sample() -> None:
    _fleet, _breakers, window = fleet_of(
        AgentRegistered(agent_id="a", capabilities={"x": 1.0}, capacity=2),
        TaskSubmitted(task_id="t1", task_type="x", ts=100.0),
        TaskAssigned(agent_id="a", task_id="t1", attempt=2, ts=100.1),  # not the current attempt
        TaskAssigned(agent_id="a", task_id="t1", attempt=1, ts=100.2),
        TaskSubmitted(task_id="t2", task_type="x", ts=100.2),
        TaskAssigned(agent_id="a", task_id="t2", attempt=1, ts=100.201),  # 1 ms after the last sample
    )
    assert window.efficiency(0.0) == (1.0, 1)
