"""Planning many decisions ahead of the view (``decide.plan`` over ``overlay.py``), without NATS:
the same decisions as deciding one at a time on the log with each stored, no capacity exceeded
under assignments still in flight, the view left as it was, and each decision reproducible from
what it records."""

from __future__ import annotations

import random
import time
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.cli.bench.key_figures import key_peaks, violations
from services.router import decide, keyed
from services.router.decide import Assign, Decision, Hold, Scan, ends_plan, next_decision, plan, route_task
from services.router.keyed import CancelForKey, ClaimKeys, KeyHold, Parked, Weighed, touched_keys
from services.router.overlay import assuming, decided_in_view
from shared.domain.fleet import TaskView
from shared.domain.routing.keys import parse_concurrency_limits, parse_rate_limits, running_count
from shared.domain.routing.policy import RoutingConfig
from shared.domain.routing.view import RouterState, apply_router
from shared.events import (
    AgentRegistered,
    AnyEvent,
    BreakerHalfOpened,
    ConcurrencyLimitSet,
    KeySlotClaimed,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskQueued,
    TaskRequeued,
    TaskSubmitted,
    key_scope,
)
from shared.recorded import Recorded
from tests.unit.keys_world import World


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


def keyed_world(limits: str) -> World:
    return World(RoutingConfig(concurrency_limits=parse_concurrency_limits(limits))).agents(3, capacity=4)


def test_a_plan_goes_on_past_a_claim_of_keys_and_a_key_claimed_in_flight_waits_for_it() -> None:
    world = keyed_world("repo-*=2")
    world.submit("k1a", concurrency_key="repo-1").submit("k1b", concurrency_key="repo-1")
    world.submit("k2", concurrency_key="repo-2").submit("free")
    planned = plan(world.state, 0.0, world.config, after_seq=world.seq)
    assert [(type(step.decision), step.decision.task_id) for step in planned] == [
        (ClaimKeys, "k1a"),
        (ClaimKeys, "k2"),
        (Assign, "free"),
    ], "other keys and unkeyed work go on; repo-1's second task waits for its first claim"
    first = planned[0].decision
    assert isinstance(first, ClaimKeys) and first.claim is not None and first.claim.running == 0

    # repo-1's claim is stored and read back, its assignment not yet: the key is still claimed here
    world.add(
        KeySlotClaimed(scope=key_scope("concurrency", "repo-1"), key="repo-1", task_id="k1a", attempt=1)
    )
    again = plan(
        world.state,
        0.0,
        world.config,
        assumed=[first.assign.agent_id],
        claims=[(first, 0.0)],
        after_seq=world.seq,
        skip={"k1a", "k2", "free"},
    )
    assert again == [], "a claim read back but not its assignment: the key's next claim still waits"

    world.add(TaskAssigned(agent_id=first.assign.agent_id, task_id="k1a", attempt=1))
    assert decided_in_view(world.state.fleet.tasks["k1a"], 1)
    last = plan(world.state, 0.0, world.config, after_seq=world.seq, skip={"k2", "free"})
    decision = last[0].decision
    assert isinstance(decision, ClaimKeys) and decision.task_id == "k1b"
    assert decision.claim is not None and decision.claim.running == 1


def test_claims_in_flight_are_laid_over_the_keys_and_taken_back() -> None:
    world = World(
        RoutingConfig(
            concurrency_limits=parse_concurrency_limits("repo-*=2"),
            rate_limits=parse_rate_limits("openai=10/10"),
        )
    ).agents(2, capacity=4)
    world.submit("t", concurrency_key="repo-1", rate_limit_key="openai", units=4)
    planned = plan(world.state, 0.0, world.config, after_seq=world.seq)
    claim = planned[0].decision
    assert isinstance(claim, ClaimKeys) and claim.take is not None and claim.take.tokens_left == 6.0
    before = encoded(world.state)
    with assuming(world.state, [claim.assign.agent_id], world.seq, [(claim, 5.0)]) as laid:
        keys = world.state.keys
        assert running_count(keys, world.state.fleet, "repo-1") == 1
        assert keys.buckets["openai"].tokens == 6.0 and keys.buckets["openai"].ts == 5.0
        assert keys.served["repo-1"] == world.seq + 1
        assert laid.busy == {("c", "repo-1"), ("r", "openai")}
    assert encoded(world.state) == before, "the view is left as the log made it"


def test_a_cancellation_for_a_key_ends_the_plan() -> None:
    world = keyed_world("k=1:cancel_newest")
    world.submit("t0", concurrency_key="k")
    world.drive()
    world.submit("t1", concurrency_key="k").submit("after")
    planned = plan(world.state, 0.0, world.config, after_seq=world.seq)
    assert [type(step.decision) for step in planned] == [CancelForKey]
    assert ends_plan(planned[0].decision)


class Pipeline:
    """A router shell without NATS: plans on the view plus its decisions in flight, and stores them
    a few events at a time, in order, as the server would (each claim against the key's last
    sequence its decision saw: refused if another claim of the key came between)."""

    def __init__(self, world: World, rng: random.Random, *, keep_weighed: bool = True) -> None:
        self.world = world
        self.rng = rng
        self.in_flight: list[tuple[Decision, dict[str, int], float]] = []
        self.pending_events: list[tuple[str, Decision]] = []
        self.key_seq: dict[str, int] = {}
        self.parked = Parked()
        self.keep_weighed = keep_weighed
        self.weighed = Weighed()
        self.planned: list[list[tuple[str, str, str | None]]] = []
        world.listeners.append(self._forget)

    def _forget(self, event: AnyEvent) -> None:
        """What the shell forgets of the standings weighed for fair turns as its view applies `event`."""
        self.weighed.forget(touched_keys(self.world.state, event))

    def plan(self, now: float) -> None:
        world = self.world
        tasks = world.state.fleet.tasks
        self.in_flight = [
            entry
            for entry in self.in_flight
            if not decided_in_view(tasks.get(entry[0].task_id), entry[0].attempt)
        ]
        if any(ends_plan(decision) for decision, _, _ in self.in_flight):
            return
        before = encoded(world.state)
        scan = Scan(
            world.state,
            world.config,
            weighed=self.weighed if self.keep_weighed else None,
            owed=self.parked.owed,
        )
        planned = plan(
            world.state,
            now,
            world.config,
            assumed=[agent for d, _, _ in self.in_flight if (agent := _agent(d))],
            claims=[(d, ts) for d, _, ts in self.in_flight if isinstance(d, ClaimKeys)],
            after_seq=world.seq,
            skip={d.task_id for d, _, _ in self.in_flight} | self.parked.tasks,
            limit=self.rng.randint(1, 8),
            scan=scan,
        )
        assert encoded(world.state) == before, "planning changed the view"
        self.parked.add(scan.blocked.parked)
        self.parked.owe(scan.holds, world.state.fleet.tasks)
        self.planned.append([_named(step.decision) for step in planned])
        for step in planned:
            decision = step.decision
            self.in_flight.append((decision, dict(self.key_seq), now))
            if isinstance(decision, ClaimKeys):
                self.pending_events.append(("claim", decision))
            self.pending_events.append(("decision", decision))

    def store_all(self, now: float) -> None:
        self.store_some(now, len(self.pending_events))

    def store_some(self, now: float, count: int | None = None) -> None:
        for _ in range(self.rng.randint(0, len(self.pending_events)) if count is None else count):
            kind, decision = self.pending_events.pop(0)
            seen = next(entry[1] for entry in self.in_flight if entry[0] is decision)
            if kind == "claim":
                assert isinstance(decision, ClaimKeys)
                for key in _claimed_keys(decision):
                    assert self.key_seq.get(key, 0) == seen.get(key, 0), "a claim the server refuses"
                self._store_claim(decision, now)
            else:
                inner = decision.assign if isinstance(decision, ClaimKeys) else decision
                self.world._append(inner, now)
                self.in_flight = [entry for entry in self.in_flight if entry[0] is not decision]

    def _store_claim(self, decision: ClaimKeys, now: float) -> None:
        if decision.take is not None:
            assert decision.take.tokens_left >= -1e-9, "more tokens taken than the bucket held"
        self.world.claim(decision, now)
        for key in _claimed_keys(decision):
            self.key_seq[key] = self.world.seq


def _named(decision: Decision) -> tuple[str, str, str | None]:
    return (type(decision).__name__, decision.task_id, _agent(decision))


def _agent(decision: Decision) -> str | None:
    if isinstance(decision, ClaimKeys):
        return decision.assign.agent_id
    return decision.agent_id if isinstance(decision, Assign) else None


def _claimed_keys(decision: ClaimKeys) -> list[str]:
    keys = ["c:" + decision.claim.key] if decision.claim is not None else []
    return keys + (["r:" + decision.take.key] if decision.take is not None else [])


@settings(max_examples=80, deadline=None)
@given(
    limits=st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=4),
    capacities=st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=4),
    tasks=st.lists(st.tuples(st.integers(min_value=-1, max_value=3), st.booleans()), max_size=40),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_pipelined_keyed_decisions_never_exceed_a_limit_or_a_capacity_and_every_claim_passes(
    limits: list[int], capacities: list[int], tasks: list[tuple[int, bool]], seed: int
) -> None:
    """Decisions planned ahead of the view, stored a few events at a time (claims read back before
    their assignments, tasks ending meanwhile): no key above its limit, no agent above its
    capacity, no claim the server would refuse, no tokens beyond the bucket, and all work done."""
    key_limits = {f"k{i}": limit for i, limit in enumerate(limits)}
    config = RoutingConfig(
        concurrency_limits=parse_concurrency_limits(",".join(f"{k}={v}" for k, v in key_limits.items())),
        rate_limits=parse_rate_limits("r=2/1"),
    )
    world = World(config)
    for index, capacity in enumerate(capacities):
        world.add(AgentRegistered(agent_id=f"a{index}", capabilities={"x": 1.0}, capacity=capacity))
    for index, (key, rated) in enumerate(tasks):
        fields: dict[str, object] = {"rate_limit_key": "r"} if rated else {}
        if 0 <= key < len(limits):
            fields["concurrency_key"] = f"k{key}"
        world.submit(f"t{index}", **fields)
    rng = random.Random(seed)
    pipeline = Pipeline(world, rng)
    now = 0.0
    for _ in range(400):
        pipeline.plan(now)
        pipeline.store_some(now)
        for agent in world.state.fleet.agents.values():
            assert len(agent.in_flight) <= agent.capacity
        running = world.in_flight()
        for task_id in rng.sample(running, k=rng.randint(0, len(running))):
            world.complete(task_id, now)
            pipeline.parked.release(world.state.fleet.tasks[task_id].spec.concurrency_key)  # as the shell
        now += 0.5
        if not world.state.fleet.queue and not pipeline.pending_events and not world.in_flight():
            break
    peaks, _ = key_peaks(world.log)
    assert violations(peaks, key_limits) == {}
    assert not world.state.fleet.queue, "work left waiting"


def test_a_plan_names_the_tasks_it_passed_over_for_a_key_at_its_limit() -> None:
    world = keyed_world("k=1")
    world.submit("t0", concurrency_key="k").submit("t1", concurrency_key="k").submit(
        "t2", concurrency_key="k"
    )
    world.drive()  # t0 runs; t1 and t2 are held for the key
    assert world.in_flight("k") == ["t0"]
    world.submit("free")
    scan = Scan(world.state, world.config)
    planned = plan(world.state, 0.0, world.config, after_seq=world.seq, scan=scan)
    assert [step.decision.task_id for step in planned] == ["free"]
    assert scan.blocked.parked == {"k": {"t1", "t2"}}, "held for a closed key: left out until it opens"
    world.complete("t0")
    again = plan(world.state, 0.0, world.config, after_seq=world.seq, skip={"free"})
    assert [step.decision.task_id for step in again] == ["t1"], "a slot freed: the key's tasks are looked at"


def test_tasks_parked_for_a_key_at_its_limit_run_once_its_slots_free() -> None:
    world = keyed_world("k=2")
    for index in range(8):
        world.submit(f"t{index}", concurrency_key="k")
    pipeline = Pipeline(world, random.Random(3))
    parked_seen = 0
    for round_ in range(60):
        pipeline.plan(float(round_))
        pipeline.store_all(float(round_))
        parked_seen = max(parked_seen, len(pipeline.parked.tasks))
        if round_ % 3 == 2:  # the key's tasks end now and then, while others wait for it
            for task_id in world.in_flight():
                world.complete(task_id, float(round_))
                pipeline.parked.release("k")
    assert parked_seen >= 3, "tasks of a key at its limit were parked"
    assert not world.state.fleet.queue and not world.in_flight(), "every parked task ran"
    peaks, _ = key_peaks(world.log)
    assert violations(peaks, {"k": 2}) == {}


def test_tasks_that_can_start_are_decided_before_the_holds_of_tasks_waiting_for_their_keys() -> None:
    world = keyed_world("k=1,j=1")
    world.submit("running", concurrency_key="k").drive()
    world.submit("waits", concurrency_key="k").submit("starts", concurrency_key="j")
    planned = plan(world.state, 0.0, world.config, after_seq=world.seq)
    assert [(type(step.decision), step.decision.task_id) for step in planned] == [
        (ClaimKeys, "starts"),
        (KeyHold, "waits"),
    ]


class _LookFromTheStart(Scan):
    """A scan that forgets where the last look at the queue stopped (the walk before this change)."""

    @property  # type: ignore[override]
    def start(self) -> int:
        return 0

    @start.setter
    def start(self, _value: int) -> None:
        pass


@settings(max_examples=80, deadline=None)
@given(
    limits=st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=4),
    capacities=st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=4),
    tasks=st.lists(
        st.tuples(st.integers(min_value=-1, max_value=3), st.integers(min_value=0, max_value=2)), max_size=40
    ),
    ended=st.integers(min_value=0, max_value=6),
)
def test_a_plan_that_walks_the_queue_once_decides_as_one_that_looks_from_the_start_each_time(
    limits: list[int], capacities: list[int], tasks: list[tuple[int, int]], ended: int
) -> None:
    """Whatever a plan passed over stays passed over for the rest of it: resuming where the last
    look stopped, and answering a closed key's tasks from its first, changes no decision."""
    world = keyed_world(",".join(f"k{index}={limit}" for index, limit in enumerate(limits)))
    for index, capacity in enumerate(capacities):
        world.add(AgentRegistered(agent_id=f"a{index}", capabilities={"x": 1.0}, capacity=capacity))
    for index, (key, priority) in enumerate(tasks):
        world.submit(
            f"t{index}",
            ts=float(index),
            concurrency_key=f"k{key}" if key >= 0 else None,
            priority=("low", "normal", "high")[priority],
        )
    world.drive()
    for task_id in world.in_flight()[:ended]:  # slots and capacity free while keys' tasks wait
        world.complete(task_id)
    for index in range(len(tasks), len(tasks) + 6):
        world.submit(f"t{index}", concurrency_key=f"k{index % len(limits)}")

    def planned(scan: Scan) -> list[tuple[str, str, str | None]]:
        steps = plan(world.state, 0.0, world.config, after_seq=world.seq, limit=1000, scan=scan)
        return [
            (type(step.decision).__name__, step.decision.task_id, _agent(step.decision)) for step in steps
        ]

    walked_once = Scan(world.state, world.config)
    assert planned(walked_once) == planned(_LookFromTheStart(world.state, world.config))


def count_gate_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the tasks the key gate is asked about from now on, in order."""
    asked: list[str] = []
    real_gate = keyed.gate

    def counting_gate(*args: Any) -> Any:
        asked.append(args[3].task_id)
        return real_gate(*args)

    monkeypatch.setattr(keyed, "gate", counting_gate)
    return asked


def test_a_key_at_its_limit_is_weighed_once_per_plan_however_many_of_its_tasks_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = keyed_world("k=1")
    world.add(AgentRegistered(agent_id="a", capabilities={"x": 1.0}, capacity=100))
    world.submit("running", concurrency_key="k").drive()
    for index in range(40):
        world.submit(f"new{index}", concurrency_key="k")
    asked = count_gate_calls(monkeypatch)
    steps = plan(world.state, 0.0, world.config, after_seq=world.seq, limit=1000)
    assert [step.decision.task_id for step in steps] == [f"new{index}" for index in range(40)]
    assert all(isinstance(step.decision, KeyHold) for step in steps)
    assert len({step.decision.detail for step in steps}) == 1, "every task says the same why"
    assert asked == ["new0"], "the key's other new tasks were answered from its first"


def test_a_plan_parks_every_task_recorded_as_waiting_for_a_key_at_its_limit_the_first_one_too() -> None:
    world = keyed_world("k=1")
    world.submit("t0", concurrency_key="k").submit("t1", concurrency_key="k").submit(
        "t2", concurrency_key="k"
    )
    world.drive()  # t0 runs; t1 and t2 are held for the key
    scan = Scan(world.state, world.config)
    assert plan(world.state, 0.0, world.config, after_seq=world.seq, scan=scan) == []
    assert scan.blocked.parked == {"k": {"t1", "t2"}}, "the first of them would be weighed each plan"


def test_a_plan_looks_at_each_waiting_task_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tasks passed over (here: delivered to another router instance) are not walked again for
    each decision of the plan (at 1,000 keys, re-walking the queue was most of a plan's cost)."""
    world = World().agents(2, capacity=20)
    for index in range(50):
        world.submit(f"theirs{index}")
    for index in range(10):
        world.submit(f"mine{index}")
    looked: list[str] = []
    real_mine = decide._mine

    def counting_mine(task: TaskView, *args: Any) -> bool:
        looked.append(task.task_id)
        return real_mine(task, *args)

    monkeypatch.setattr(decide, "_mine", counting_mine)
    mine = {f"mine{index}" for index in range(10)}
    steps = plan(world.state, 0.0, world.config, after_seq=world.seq, claimed=mine, limit=1000)
    assert sorted(step.decision.task_id for step in steps) == sorted(mine)
    assert len(looked) <= 60 + len(steps), f"{len(looked)} looks at 60 waiting tasks"


@settings(max_examples=60, deadline=None)
@given(
    limits=st.lists(st.integers(min_value=1, max_value=3), min_size=2, max_size=8),
    capacities=st.lists(st.integers(min_value=2, max_value=6), min_size=1, max_size=4),
    tasks=st.lists(st.tuples(st.integers(min_value=0, max_value=7), st.booleans()), max_size=60),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_fair_turns_weighed_in_earlier_plans_are_those_weighed_afresh(
    limits: list[int], capacities: list[int], tasks: list[tuple[int, bool]], seed: int
) -> None:
    """A router keeping the standings it weighed between plans (forgetting a key's as its view
    applies a change of it) decides exactly as one weighing them afresh for each plan, through
    claims read back before their assignments, tasks ending and keys reopening."""

    def run(keep_weighed: bool) -> list[list[tuple[str, str, str | None]]]:
        config = RoutingConfig(
            concurrency_limits=parse_concurrency_limits(",".join(f"k{i}={v}" for i, v in enumerate(limits))),
            rate_limits=parse_rate_limits("r=2/1"),
        )
        world = World(config)
        for index, capacity in enumerate(capacities):
            world.add(AgentRegistered(agent_id=f"a{index}", capabilities={"x": 1.0}, capacity=capacity))
        for index, (key, rated) in enumerate(tasks):
            fields: dict[str, object] = {"concurrency_key": f"k{key % len(limits)}"}
            if rated:
                fields["rate_limit_key"] = "r"
            world.submit(f"t{index}", **fields)
        rng = random.Random(seed)
        pipeline = Pipeline(world, rng, keep_weighed=keep_weighed)
        now = 0.0
        for _ in range(300):
            pipeline.plan(now)
            pipeline.store_some(now)
            running = world.in_flight()
            for task_id in rng.sample(running, k=rng.randint(0, len(running))):
                world.complete(task_id, now)
                pipeline.parked.release(world.state.fleet.tasks[task_id].spec.concurrency_key)
            now += 0.5
            if not world.state.fleet.queue and not pipeline.pending_events and not world.in_flight():
                break
        return pipeline.planned

    kept = run(keep_weighed=True)
    assert kept == run(keep_weighed=False)
    assert sum(len(p) for p in kept) >= len(tasks)


def test_the_events_that_change_how_a_key_s_tasks_stand_name_that_key() -> None:
    world = keyed_world("k=2")
    world.submit("t", concurrency_key="k").submit("free")
    state = world.state
    claim = KeySlotClaimed(scope=key_scope("concurrency", "k"), key="k", task_id="t", attempt=1)
    assert touched_keys(state, claim) == ("k",)
    for event in (
        TaskAssigned(agent_id="a0", task_id="t", attempt=1),
        TaskCompleted(task_id="t", agent_id="a0", attempt=1),
        TaskAttemptFailed(task_id="t", agent_id="a0", attempt=1, failure_type="agent_unresponsive"),
        TaskRequeued(task_id="t", attempt=2, reason="agent lost"),
        TaskCancelled(task_id="t", reason="stop", attempt=1),
        TaskFailed(task_id="t", attempt=1, error="x"),
    ):
        assert touched_keys(state, event) == ("k",), event
    assert touched_keys(state, TaskCompleted(task_id="free", agent_id="a0", attempt=1)) == ()
    assert touched_keys(state, TaskCompleted(task_id="unknown", agent_id="a0", attempt=1)) is None
    assert (
        touched_keys(
            state, ConcurrencyLimitSet(scope=key_scope("concurrency", "k"), pattern="k", max_running=3)
        )
        is None
    )
    assert touched_keys(state, TaskSubmitted(task_id="new", task_type="x", concurrency_key="k")) == ()


def test_holds_a_plan_left_unrecorded_are_recorded_by_the_next_without_weighing_them_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = keyed_world("k=1,j=1")
    world.submit("running", concurrency_key="k").drive()
    for index in range(3):
        world.submit(f"waits{index}", concurrency_key="k")
    world.submit("starts", concurrency_key="j")
    parked = Parked()

    def one_plan(limit: int) -> list[Decision]:
        scan = Scan(world.state, world.config, owed=parked.owed)
        in_flight = {"starts"} if limit > 1 else set()
        steps = plan(world.state, 0.0, world.config, skip=in_flight, limit=limit, scan=scan)
        parked.add(scan.blocked.parked)
        parked.owe(scan.holds, world.state.fleet.tasks)
        return [step.decision for step in steps]

    first = one_plan(limit=1)
    assert [(type(d), d.task_id) for d in first] == [(ClaimKeys, "starts")]
    assert set(parked.owed) == {"waits0", "waits1", "waits2"}, "found waiting, not recorded yet"
    asked = count_gate_calls(monkeypatch)
    second = one_plan(limit=2)
    assert [(type(d), d.task_id) for d in second] == [(KeyHold, "waits0"), (KeyHold, "waits1")]
    assert asked == [], "what the first plan found was not weighed again"
    assert set(parked.owed) == {"waits2"}


def test_an_owed_hold_is_weighed_again_once_its_key_changed() -> None:
    world = keyed_world("k=1")
    world.submit("running", concurrency_key="k").drive()
    world.submit("waits", concurrency_key="k").submit("free")
    parked = Parked()
    scan = Scan(world.state, world.config, owed=parked.owed)
    assert [s.decision.task_id for s in plan(world.state, 0.0, world.config, limit=1, scan=scan)] == ["free"]
    parked.owe(scan.holds, world.state.fleet.tasks)
    assert set(parked.owed) == {"waits"}
    world.complete("running")
    parked.release("k")  # as the shell does when one of the key's tasks ends
    assert parked.owed == {}
    scan = Scan(world.state, world.config, owed=parked.owed)
    steps = plan(world.state, 0.0, world.config, skip={"free"}, scan=scan)
    assert [(type(s.decision), s.decision.task_id) for s in steps] == [(ClaimKeys, "waits")], "it starts"


def test_an_owed_hold_whose_task_was_held_meanwhile_is_not_recorded_twice() -> None:
    world = keyed_world("k=1")
    world.submit("running", concurrency_key="k").drive()
    world.submit("waits", concurrency_key="k").submit("free")
    parked = Parked()
    scan = Scan(world.state, world.config, owed=parked.owed)
    plan(world.state, 0.0, world.config, limit=1, scan=scan)
    parked.owe(scan.holds, world.state.fleet.tasks)
    world.add(TaskQueued(task_id="waits", attempt=1, reason="concurrency_limit", detail="another router"))
    scan = Scan(world.state, world.config, owed=parked.owed)
    assert plan(world.state, 0.0, world.config, skip={"free"}, scan=scan) == []


@settings(max_examples=80, deadline=None)
@given(
    capacities=st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=4),
    tasks=st.lists(st.integers(min_value=0, max_value=3), max_size=12),
    held=st.sets(st.integers(min_value=0, max_value=11)),
    in_flight=st.sets(st.integers(min_value=0, max_value=14)),
    parked=st.sets(st.integers(min_value=0, max_value=14)),
)
def test_a_round_skips_its_plan_only_when_every_waiting_task_is_in_flight_or_parked(
    capacities: list[int], tasks: list[int], held: set[int], in_flight: set[int], parked: set[int]
) -> None:
    """``all_skipped`` (the router's idle rounds return before planning) says exactly that every
    task in the queue is skipped, and then a plan skipping them decides nothing and leaves the view
    as it was; otherwise the plan is made as before."""
    log = fleet(capacities, [0, 1, 2], tasks)
    for index in held & set(range(len(tasks))):
        log.add(TaskQueued(task_id=f"t{index}", attempt=1, reason="all_capable_agents_busy"))
    flying = {f"t{index}": index for index in in_flight}  # ids beyond the tasks too: long gone
    parked_ids = {f"t{index}" for index in parked}
    queue = log.state.fleet.queue
    every = all(task_id in flying or task_id in parked_ids for _rank, _seq, task_id in queue)
    assert decide.all_skipped(queue, flying, parked_ids) is every
    if every:
        before = encoded(log.state)
        assert plan(log.state, 0.0, after_seq=log.seq, skip=flying.keys() | parked_ids, limit=32) == []
        assert encoded(log.state) == before


@settings(max_examples=120, deadline=None)
@given(
    capacities=st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=4),
    tasks=st.lists(
        st.tuples(st.integers(min_value=0, max_value=3), st.sampled_from(["now", "later", "came"])),
        max_size=12,
    ),
    held=st.sets(st.integers(min_value=0, max_value=11)),
    in_flight=st.sets(st.integers(min_value=0, max_value=14)),
    parked=st.sets(st.integers(min_value=0, max_value=14)),
    claimed=st.sets(st.integers(min_value=0, max_value=14)),
    look=st.integers(min_value=0, max_value=6),
)
def test_a_round_skips_its_plan_only_when_no_waiting_task_is_its_own_to_decide_now(
    capacities: list[int],
    tasks: list[tuple[int, str]],
    held: set[int],
    in_flight: set[int],
    parked: set[int],
    claimed: set[int],
    look: int,
) -> None:
    """With the plan's claims, ``all_skipped`` also passes over a task not due yet and a new task
    not claimed here (another instance's, or a submission the projection applied before its claim
    came): it says exactly that (within `look` such tasks), and then a plan with those claims
    decides nothing and leaves the view as it was."""
    now = time.time()
    log = fleet(capacities, [0, 1, 2], [])
    for index, (kind, start) in enumerate(tasks):
        if start == "later":  # delayed: not due at `now`
            submitted = TaskSubmitted(task_id=f"t{index}", task_type=f"type{kind}", not_before_ts=now + 3600)
        elif start == "came":  # delayed, due now: anyone's (no delivery says whose)
            submitted = TaskSubmitted(
                task_id=f"t{index}", task_type=f"type{kind}", ts=now - 10, not_before_ts=now - 5
            )
        else:
            submitted = TaskSubmitted(task_id=f"t{index}", task_type=f"type{kind}", ts=now - 1)
        log.add(submitted)
    for index in held & set(range(len(tasks))):
        log.add(TaskQueued(task_id=f"t{index}", attempt=1, reason="all_capable_agents_busy"))
    flying = {f"t{index}": index for index in in_flight}
    parked_ids = {f"t{index}" for index in parked}
    claimed_ids = {f"t{index}" for index in claimed}
    state = log.state
    queue = state.fleet.queue

    def passed_over(task_id: str) -> bool:
        task = state.fleet.tasks[task_id]
        if task.not_before_ts > now:
            return True
        own = task.status != "pending" or task_id in claimed_ids or task.not_before_ts > task.submitted_ts
        return not own

    others = [
        task_id for _rank, _seq, task_id in queue if task_id not in flying and task_id not in parked_ids
    ]
    every = len(queue) <= len(flying) + len(parked_ids) + look and all(map(passed_over, others))
    skipped = decide.all_skipped(
        queue, flying, parked_ids, tasks=state.fleet.tasks, claimed=claimed_ids, now=now, look=look
    )
    assert skipped is every
    if every:
        before = encoded(state)
        steps = plan(state, now, after_seq=log.seq, skip=flying.keys() | parked_ids, claimed=claimed_ids)
        assert steps == []
        assert encoded(state) == before
