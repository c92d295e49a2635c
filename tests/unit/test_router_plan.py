"""Planning many decisions ahead of the view (``decide.plan`` over ``overlay.py``), without NATS:
the same decisions as deciding one at a time on the log with each stored, no capacity exceeded
under assignments still in flight, the view left as it was, and each decision reproducible from
what it records."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from services.router.decide import Assign, Hold, is_keyed, next_decision, plan, route_task
from services.router.keyed import ClaimKeys
from services.router.overlay import assuming
from shared.domain.routing.keys import parse_concurrency_limits
from shared.domain.routing.policy import RoutingConfig
from shared.domain.routing.view import RouterState, apply_router
from shared.events import (
    AgentRegistered,
    AnyEvent,
    BreakerHalfOpened,
    TaskAssigned,
    TaskQueued,
    TaskSubmitted,
)
from shared.recorded import Recorded


class Log:
    def __init__(self) -> None:
        self.state = RouterState()
        self.seq = 0

    def add(self, *events: AnyEvent) -> None:
        for event in events:
            self.seq += 1
            apply_router(self.state, Recorded(self.seq, event.subject, event))


def fleet(capacities: list[int], kinds: list[int], tasks: list[int]) -> Log:
    """Agents offering task types 0..2 (agent i offers type kinds[i] and type 0), then the tasks."""
    log = Log()
    for index, capacity in enumerate(capacities):
        kind = kinds[index % len(kinds)]
        log.add(
            AgentRegistered(
                agent_id=f"a{index}",
                capabilities={"type0": 1.0, f"type{kind}": 0.5 + 0.1 * index},
                capacity=capacity,
            )
        )
    for index, kind in enumerate(tasks):
        log.add(TaskSubmitted(task_id=f"t{index}", task_type=f"type{kind}"))
    return log


def encoded(state: RouterState) -> bytes:
    return msgspec.json.encode(state)


@settings(max_examples=60, deadline=None)
@given(
    capacities=st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=5),
    kinds=st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=5),
    tasks=st.lists(st.integers(min_value=0, max_value=3), max_size=30),
)
def test_a_plan_decides_as_one_decision_at_a_time_with_each_stored(
    capacities: list[int], kinds: list[int], tasks: list[int]
) -> None:
    planned_log = fleet(capacities, kinds, tasks)
    before = encoded(planned_log.state)
    planned = plan(planned_log.state, 0.0, after_seq=planned_log.seq, limit=1000)
    assert encoded(planned_log.state) == before, "planning changed the view"

    stepped = fleet(capacities, kinds, tasks)
    one_at_a_time = []
    while (decision := next_decision(stepped.state, now=0.0)) is not None:
        one_at_a_time.append(decision)
        if isinstance(decision, Assign):
            stepped.add(TaskAssigned(agent_id=decision.agent_id, task_id=decision.task_id, attempt=1))
        else:
            stepped.add(TaskQueued(task_id=decision.task_id, attempt=1, reason=decision.reason))
    assert [(step.decision.task_id, getattr(step.decision, "agent_id", None)) for step in planned] == [
        (decision.task_id, getattr(decision, "agent_id", None)) for decision in one_at_a_time
    ]


@settings(max_examples=60, deadline=None)
@given(
    capacities=st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=4),
    in_flight=st.lists(st.integers(min_value=0, max_value=3), max_size=8),
    tasks=st.integers(min_value=0, max_value=20),
)
def test_assignments_in_flight_take_their_slots(
    capacities: list[int], in_flight: list[int], tasks: int
) -> None:
    log = fleet(capacities, [0], [0] * tasks)
    room = {f"a{i}": c for i, c in enumerate(capacities)}
    assumed = []
    for index in in_flight:
        agent_id = f"a{index}"
        if room.get(agent_id, 0) > 0:
            assumed.append(agent_id)
            room[agent_id] -= 1
    planned = plan(log.state, 0.0, assumed=assumed, after_seq=log.seq, limit=1000)
    given_work: dict[str, int] = {}
    for step in planned:
        if isinstance(step.decision, Assign):
            given_work[step.decision.agent_id] = given_work.get(step.decision.agent_id, 0) + 1
    assert all(given_work.get(agent_id, 0) <= free for agent_id, free in room.items())
    assert sum(given_work.values()) == min(tasks, sum(room.values()))


def test_a_half_open_breaker_lets_only_its_probes_through_a_plan() -> None:
    log = fleet([5], [0], [0, 0, 0])
    log.add(BreakerHalfOpened(agent_id="a0", probes_allowed=1))
    planned = plan(log.state, 0.0, after_seq=log.seq)
    assert [type(step.decision) for step in planned] == [Assign, Hold, Hold]
    again = plan(log.state, 0.0, assumed=["a0"], after_seq=log.seq, skip={"t0"})
    assert all(not isinstance(step.decision, Assign) for step in again), "a probe in flight is a probe"


def test_each_planned_assignment_records_what_it_assumed_and_is_reproduced_from_it() -> None:
    log = fleet([1, 1, 2], [0], [0, 0, 0, 0])
    planned = plan(log.state, 0.0, assumed=["a2"], after_seq=log.seq)
    assignments = [step for step in planned if isinstance(step.decision, Assign)]
    assert len(assignments) == 3  # a2's second slot, a0, a1: the fourth task waits
    given_before = ["a2"]
    for step in assignments:
        decision = step.decision
        assert isinstance(decision, Assign)
        assert step.assumed == given_before
        with assuming(log.state, step.assumed, log.seq):
            rerun = route_task(log.state, log.state.fleet.tasks[decision.task_id], 0.0)
        assert isinstance(rerun, Assign) and rerun.agent_id == decision.agent_id
        given_before = [*given_before, decision.agent_id]


def test_a_task_delivered_to_another_router_is_left_to_it_until_it_is_held() -> None:
    log = fleet([4], [0], [0, 0])
    mine = plan(log.state, 0.0, after_seq=log.seq, claimed={"t1"})
    assert [step.decision.task_id for step in mine] == ["t1"]
    log.add(TaskQueued(task_id="t0", attempt=1, reason="all_busy"))
    anyone = plan(log.state, 0.0, after_seq=log.seq, claimed=set())
    assert [step.decision.task_id for step in anyone] == ["t0"], "a held task is anyone's"


def test_a_plan_ends_at_a_decision_about_keys() -> None:
    log = fleet([4], [0], [0])
    log.add(TaskSubmitted(task_id="keyed", task_type="type0", concurrency_key="repo-1"))
    log.add(TaskSubmitted(task_id="after", task_type="type0"))
    config = RoutingConfig(concurrency_limits=parse_concurrency_limits("repo-*=1"))
    planned = plan(log.state, 0.0, config, after_seq=log.seq)
    kinds = [type(step.decision) for step in planned]
    assert kinds == [Assign, ClaimKeys], "the keyed task's claim ends the plan: nothing after it"
    assert is_keyed(planned[-1].decision) and not is_keyed(planned[0].decision)
