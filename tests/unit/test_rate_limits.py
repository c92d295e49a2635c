"""Rate limits without NATS: a token bucket per key read from the log's takes, tasks held with the
time their units are back, woken then, and never more taken than the bucket allows."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.router.keyed import ClaimKeys, KeyHold
from shared.domain.routing.admission import RATE_LIMITED, rate_wake
from shared.domain.routing.keys import Bucket, Limits, RateLimit, parse_rate_limits, ready_at, tokens_at
from shared.domain.routing.policy import RoutingConfig
from shared.events import RateLimitSet, RateTokensTaken, limit_scope
from tests.unit.keys_world import World


def rated(text: str) -> RoutingConfig:
    return RoutingConfig(rate_limits=parse_rate_limits(text))


def test_a_full_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    limit = RateLimit(pattern="k", limit=60, period_s=60.0, burst=10)
    assert tokens_at(None, limit, 0.0) == 10
    assert tokens_at(Bucket(tokens=0.0, ts=100.0), limit, 103.0) == 3.0
    assert tokens_at(Bucket(tokens=0.0, ts=100.0), limit, 1000.0) == 10
    assert ready_at(Bucket(tokens=-2.0, ts=100.0), limit, 1, 100.0) == 103.0


def test_tasks_beyond_the_bucket_wait_saying_when_and_start_then() -> None:
    world = World(rated("openai=2/10")).agents(1, capacity=10)
    for index in range(3):
        world.submit(f"t{index}", rate_limit_key="openai")
    made = world.drive(now=0.0)
    assert [type(d) for d in made].count(ClaimKeys) == 2
    assert world.in_flight() == ["t0", "t1"]
    held = world.state.fleet.tasks["t2"]
    assert (held.status, held.queued_reason, held.eligible_ts) == ("queued", RATE_LIMITED, 5.0)
    assert "0.00 of 1 unit(s) available" in held.queued_detail and "(2 per 10s, burst 2" in held.queued_detail
    limits = Limits.combine(world.state.keys, (), rated("openai=2/10").rate_limits)
    assert rate_wake(world.state.keys, world.state.fleet, limits, 1.0) == 5.0
    assert world.drive(now=4.9) == []
    made = world.drive(now=5.0)
    assert [d.assign.task_id for d in made if isinstance(d, ClaimKeys)] == ["t2"]


def test_the_bucket_is_what_the_log_says_whoever_took_the_tokens() -> None:
    world = World(rated("k=4/4")).agents(1, capacity=10)
    world.add(
        RateTokensTaken(scope="rkey-x", key="k", task_id="elsewhere", attempt=1, units=4, tokens_left=0.0),
        ts=10.0,
    )
    world.submit("t", rate_limit_key="k").drive(now=10.5)
    assert world.state.fleet.tasks["t"].queued_reason == RATE_LIMITED
    world.drive(now=11.0)
    assert world.in_flight() == ["t"]


def test_a_task_asking_more_than_the_burst_waits_for_a_full_bucket_and_leaves_it_in_debt() -> None:
    world = World(rated("k=2/2")).agents(1, capacity=10)
    world.submit("big", rate_limit_key="k", units=5).submit("small", rate_limit_key="k")
    world.drive(now=0.0)
    assert world.in_flight() == ["big"]
    assert world.state.keys.buckets["k"].tokens == -3.0
    world.drive(now=3.9)
    assert world.in_flight() == ["big"]
    world.drive(now=4.0)
    assert world.in_flight() == ["big", "small"]


def test_a_limit_set_in_the_log_replaces_the_environments() -> None:
    world = World(rated("k=1/100")).agents(1, capacity=10)
    world.add(RateLimitSet(scope=limit_scope("rate", "k"), pattern="k", limit=3, period_s=100.0))
    for index in range(4):
        world.submit(f"t{index}", rate_limit_key="k")
    world.drive()
    assert world.in_flight() == ["t0", "t1", "t2"]


def test_a_held_task_says_so_once_per_reason() -> None:
    world = World(rated("k=1/10")).agents(1, capacity=10)
    world.submit("a", rate_limit_key="k").submit("b", rate_limit_key="k")
    first = world.drive(now=0.0)
    assert [d.task_id for d in first if isinstance(d, KeyHold)] == ["b"]
    assert world.drive(now=1.0) == []


@settings(max_examples=60, deadline=None)
@given(
    limit=st.integers(min_value=1, max_value=5),
    period=st.sampled_from([1.0, 2.0, 5.0]),
    arrivals=st.lists(st.tuples(st.floats(0, 20), st.integers(1, 3)), min_size=1, max_size=40),
)
def test_no_window_ever_takes_more_than_the_burst_plus_the_refill(
    limit: int, period: float, arrivals: list[tuple[float, int]]
) -> None:
    world = World(rated(f"k={limit}/{period:g}")).agents(2, capacity=100)
    arrivals.sort()
    pending = list(enumerate(arrivals))
    now = 0.0
    while now <= 60.0:
        while pending and pending[0][1][0] <= now:
            index, (_at, units) = pending.pop(0)
            world.submit(f"t{index}", ts=now, rate_limit_key="k", units=units)
        world.drive(now=now)
        now = round(now + 0.25, 2)
    takes = [(e.ts, e.units) for e in world.log if isinstance(e, RateTokensTaken)]
    assert takes, "nothing was ever taken"
    rate = limit / period
    for i, (start, _units) in enumerate(takes):
        taken = 0.0
        for ts, units in takes[i:]:
            taken += min(units, limit)  # a task asking more than the burst takes a full bucket
            assert taken <= limit + rate * (ts - start) + 1e-9
