"""Fair priority across the whole queue, with aging: higher priority goes first across workflows and
submitters, by a head start of PRIORITY_AGING_S per level, so low priority work is never starved."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.router.decide import Assign
from shared.domain.priority import PRIORITY_AGING_S, overtaking_window_s, virtual_time
from tests.unit.keys_world import World


def test_a_critical_task_overtakes_a_low_one_submitted_up_to_three_aging_periods_earlier() -> None:
    window = overtaking_window_s()
    assert window == 3 * PRIORITY_AGING_S
    assert virtual_time("critical", 1000.0) < virtual_time("low", 1000.0 - window + 1)
    assert virtual_time("low", 1000.0 - window - 1) < virtual_time("critical", 1000.0)


def test_priority_orders_the_queue_across_workflows_and_submitters() -> None:
    world = World().agents(1, capacity=1)
    world.submit("busy", ts=0.0).drive()
    world.submit("wf1-low", ts=1.0, priority="low", workflow_id="wf1", submitted_by="alice")
    world.submit("wf2-high", ts=2.0, priority="high", workflow_id="wf2", submitted_by="bob")
    world.submit("lone-normal", ts=3.0, priority="normal")
    started: list[str] = []
    for _ in range(3):
        world.complete(world.in_flight()[0])
        world.drive()
        started.append(world.in_flight()[0])
    assert started == ["wf2-high", "lone-normal", "wf1-low"]


def test_a_low_task_waiting_longer_than_the_window_goes_before_new_critical_work() -> None:
    world = World().agents(1, capacity=1)
    world.submit("busy", ts=0.0).drive()
    world.submit("old-low", ts=1.0, priority="low")
    world.submit("new-critical", ts=1.0 + overtaking_window_s() + 1, priority="critical")
    world.complete("busy")
    made = world.drive(now=500.0)
    assert [d.task_id for d in made if isinstance(d, Assign)] == ["old-low"]


@settings(max_examples=25, deadline=None)
@given(
    backlog=st.integers(min_value=0, max_value=40),
    arrival_step=st.integers(min_value=1, max_value=60),
    load=st.lists(st.sampled_from(["normal", "high", "critical"]), min_size=1, max_size=3),
)
def test_under_sustained_higher_priority_load_a_low_task_waits_a_bounded_time(
    backlog: int, arrival_step: int, load: list[str]
) -> None:
    """One agent finishes one task a second; higher-priority tasks arrive as fast, for ever (the
    queue never drains). The low task still starts within the backlog ahead of it plus the
    overtaking window."""
    world = World().agents(1, capacity=1)
    count = 0
    for _ in range(backlog + 1):
        world.submit(f"h{count}", ts=0.0, priority=load[count % len(load)])
        count += 1
    world.drive(now=0.0)
    bound = backlog + arrival_step + overtaking_window_s() + 5
    started_at: float | None = None
    step = 0
    while started_at is None:
        step += 1
        now = float(step)
        assert now <= bound, f"the low task still waits after {now - arrival_step:.0f}s"
        world.complete(world.in_flight()[0], now=now)
        world.submit(f"h{count}", ts=now, priority=load[count % len(load)])
        count += 1
        if step == arrival_step:
            world.submit("low", ts=now, priority="low")
        world.drive(now=now)
        if "low" in world.in_flight():
            started_at = now
    assert started_at - arrival_step <= backlog + overtaking_window_s() + 5
