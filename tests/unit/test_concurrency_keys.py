"""Concurrency keys without NATS: limits by pattern, slots claimed before assignment and freed by an
attempt's end, requeue or agent loss, the queue/cancel strategies, keys taking turns."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.router.decide import Assign, next_decision
from services.router.keyed import CancelForKey, ClaimKeys, KeyHold
from shared.domain.routing.admission import CONCURRENCY_LIMITED
from shared.domain.routing.keys import (
    ConcurrencyLimit,
    KeysState,
    LimitError,
    Limits,
    parse_concurrency_limits,
    parse_rate_limits,
    running_count,
)
from shared.domain.routing.policy import RoutingConfig
from shared.events import (
    AgentRegistered,
    ConcurrencyLimitRemoved,
    ConcurrencyLimitSet,
    KeySlotClaimed,
    key_scope,
    limit_scope,
)
from tests.unit.keys_world import World


def limited(*limits: str) -> RoutingConfig:
    return RoutingConfig(concurrency_limits=parse_concurrency_limits(",".join(limits)))


def test_the_environment_writes_limits_as_pattern_max_and_strategy() -> None:
    limits = parse_concurrency_limits("repo-*=2, customer-42=5:cancel_oldest")
    assert [(x.pattern, x.max_running, x.strategy) for x in limits] == [
        ("repo-*", 2, "queue"),
        ("customer-42", 5, "cancel_oldest"),
    ]
    assert parse_rate_limits("openai=60/60:90")[0].capacity == 90


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("repo=x", "not a whole number"),
        ("repo=0", "at least 1"),
        ("repo=2:later", "strategy must be one of"),
        ("=2", "1-128 characters"),
    ],
)
def test_a_bad_limit_in_the_environment_is_refused_saying_why(text: str, said: str) -> None:
    with pytest.raises(LimitError, match=said):
        parse_concurrency_limits(text)


@pytest.mark.parametrize(
    ("text", "said"), [("openai=60", "limit/period"), ("openai=60/x", "not a number"), ("o=1/0", "positive")]
)
def test_a_bad_rate_limit_in_the_environment_is_refused_saying_why(text: str, said: str) -> None:
    with pytest.raises(LimitError, match=said):
        parse_rate_limits(text)


def test_a_key_takes_its_own_limit_else_the_longest_matching_glob_and_the_api_replaces_the_environment() -> (
    None
):
    environment = parse_concurrency_limits("repo-*=2,repo-big-*=7,repo-big-1=9")
    state = KeysState()
    limits = Limits.combine(state, environment)
    assert limits.concurrency_of("repo-x") == ConcurrencyLimit(
        pattern="repo-*", max_running=2, source="environment"
    )
    big = limits.concurrency_of("repo-big-2")
    assert big is not None and big.max_running == 7
    exact = limits.concurrency_of("repo-big-1")
    assert exact is not None and exact.max_running == 9
    assert limits.concurrency_of("other") is None
    state.concurrency_limits["repo-*"] = ConcurrencyLimit(pattern="repo-*", max_running=1)
    replaced = Limits.combine(state, environment).concurrency_of("repo-x")
    assert replaced is not None and (replaced.max_running, replaced.source) == (1, "api")


def test_a_key_never_runs_more_than_its_limit_and_each_assignment_follows_its_claim() -> None:
    world = World(limited("repo-*=2")).agents(3, capacity=5)
    for index in range(6):
        world.submit(f"t{index}", concurrency_key="repo-a")
    made = world.drive()
    assert world.in_flight("repo-a") == ["t0", "t1"]
    claims = [d for d in made if isinstance(d, ClaimKeys)]
    assert [(d.task_id, d.assign.task_id) for d in claims] == [("t0", "t0"), ("t1", "t1")]
    assert not any(isinstance(d, Assign) for d in made)  # each assignment rides on its claim
    held = {d.task_id: d.reason for d in made if isinstance(d, KeyHold)}
    assert held == {f"t{i}": CONCURRENCY_LIMITED for i in range(2, 6)}
    assert "at its limit (2/2" in world.state.fleet.tasks["t2"].queued_detail


@pytest.mark.parametrize("ending", ["complete", "fail_attempt"])
def test_a_slot_is_freed_by_the_attempt_ending_or_its_agent_dying(ending: str) -> None:
    world = World(limited("k=1")).agents(2, capacity=2)
    world.submit("t0", concurrency_key="k").submit("t1", concurrency_key="k")
    world.drive()
    assert world.in_flight("k") == ["t0"]
    getattr(world, ending)("t0")
    world.drive()
    assert running_count(world.state.keys, world.state.fleet, "k") == 1
    if ending == "complete":
        assert world.in_flight("k") == ["t1"]
    else:  # the requeued attempt and the waiting task compete for the one slot: one of them runs
        assert len(world.in_flight("k")) == 1


def test_a_claimed_task_keeps_its_slot_while_it_waits_for_an_agent() -> None:
    world = World(limited("k=1")).agents(1, capacity=1)
    world.submit("other").drive()  # the only agent is busy
    world.submit("t0", concurrency_key="k").submit("t1", concurrency_key="k")
    world.drive()
    assert running_count(world.state.keys, world.state.fleet, "k") == 0  # nobody claimed: no agent free
    world.complete("other").drive()
    assert world.in_flight("k") == ["t0"]


def test_cancel_newest_cancels_the_task_over_the_limit() -> None:
    world = World(limited("k=1:cancel_newest")).agents(2, capacity=2)
    world.submit("t0", concurrency_key="k").drive()
    world.submit("t1", concurrency_key="k")
    made = world.drive()
    assert [(d.task_id, type(d)) for d in made] == [("t1", CancelForKey)]
    assert world.state.fleet.tasks["t1"].status == "cancelled"
    assert world.in_flight("k") == ["t0"]


def test_cancel_oldest_cancels_the_running_task_and_starts_the_new_one() -> None:
    world = World(limited("k=1:cancel_oldest")).agents(2, capacity=2)
    world.submit("t0", concurrency_key="k").drive()
    world.submit("t1", concurrency_key="k")
    made = world.drive()
    assert isinstance(made[0], CancelForKey) and made[0].task_id == "t0"
    assert "cancel_oldest makes room for t1" in made[0].reason
    assert world.state.fleet.tasks["t0"].status == "cancelled"
    assert world.in_flight("k") == ["t1"]


def test_keys_take_turns_when_agents_are_short() -> None:
    world = World(limited("k-*=5")).agents(1, capacity=1)
    for index in range(4):
        world.submit(f"a{index}", concurrency_key="k-a")
    for index in range(4):
        world.submit(f"b{index}", concurrency_key="k-b")
    order: list[str] = []
    for _ in range(6):
        world.drive()
        (running,) = world.in_flight()
        order.append(world.state.fleet.tasks[running].spec.concurrency_key or "")
        world.complete(running)
    assert order == ["k-a", "k-b", "k-a", "k-b", "k-a", "k-b"]


def test_a_limit_set_in_the_log_applies_and_its_removal_lifts_it() -> None:
    world = World().agents(1, capacity=5)
    world.add(ConcurrencyLimitSet(scope=limit_scope("concurrency", "k"), pattern="k", max_running=1))
    for index in range(3):
        world.submit(f"t{index}", concurrency_key="k")
    world.drive()
    assert world.in_flight("k") == ["t0"]
    world.add(ConcurrencyLimitRemoved(scope=limit_scope("concurrency", "k"), pattern="k"))
    world.drive()
    assert world.in_flight("k") == ["t0", "t1", "t2"]


def test_tasks_assigned_before_a_limit_count_against_it() -> None:
    world = World().agents(1, capacity=5)
    world.submit("t0", concurrency_key="k").submit("t1", concurrency_key="k").drive()
    world.config = limited("k=2")
    world.submit("t2", concurrency_key="k").drive()
    assert world.in_flight("k") == ["t0", "t1"]


@settings(max_examples=80, deadline=None)
@given(
    limits=st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=4),
    agents=st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=4),
    steps=st.lists(
        st.tuples(st.sampled_from(["submit", "complete", "die", "drive"]), st.integers(0, 50)), max_size=60
    ),
)
def test_no_key_ever_runs_more_than_its_limit_and_every_slot_is_accounted_for(
    limits: list[int], agents: list[int], steps: list[tuple[str, int]]
) -> None:
    config = limited(*[f"k{i}={limit}" for i, limit in enumerate(limits)])
    world = World(config)
    for index, capacity in enumerate(agents):
        world.add(AgentRegistered(agent_id=f"a{index}", capabilities={"x": 1.0}, capacity=capacity))
    submitted = 0
    for action, number in steps:
        in_flight = world.in_flight()
        if action == "submit":
            world.submit(f"t{submitted}", concurrency_key=f"k{number % len(limits)}")
            submitted += 1
        elif action in ("complete", "die") and in_flight:
            task_id = in_flight[number % len(in_flight)]
            world.complete(task_id) if action == "complete" else world.fail_attempt(task_id)
        world.drive()
        for index, limit in enumerate(limits):
            key = f"k{index}"
            running = running_count(world.state.keys, world.state.fleet, key)
            assert running <= limit
            assert running == len(world.in_flight(key))  # a claim always becomes an assignment here
        # Work conservation: a key with room and waiting work means no agent has room.
        free = sum(a.free for a in world.state.fleet.agents.values())
        for index, limit in enumerate(limits):
            key = f"k{index}"
            waiting = [t for t in world.state.fleet.tasks.values() if t.status in ("pending", "queued")]
            if free and any(t.spec.concurrency_key == key for t in waiting):
                assert len(world.in_flight(key)) == limit


def test_next_decision_with_no_limits_is_unchanged_for_keyed_tasks() -> None:
    world = World().agents(1, capacity=3)
    world.submit("t0", concurrency_key="k")
    decision = next_decision(world.state, 0.0, (), RoutingConfig())
    assert isinstance(decision, Assign)


def test_a_task_holding_its_slot_is_assigned_even_behind_a_task_its_full_key_holds_back() -> None:
    world = World(limited("k=1")).agents(1, capacity=2)
    world.submit("running", concurrency_key="k").drive()
    world.submit("early", concurrency_key="k").submit("holder", concurrency_key="k").drive()
    assert world.state.fleet.tasks["holder"].queued_reason == CONCURRENCY_LIMITED
    world.complete("running")
    # Another router claimed the freed slot for "holder" (its turn); "early" now waits for it.
    world.add(KeySlotClaimed(scope=key_scope("concurrency", "k"), key="k", task_id="holder", attempt=1))
    world.drive()
    assert world.in_flight("k") == ["holder"]
    assert world.state.fleet.tasks["early"].queued_reason == CONCURRENCY_LIMITED
