"""``hive bench routing --offline --partitions``: routers each owning a share of the fleet (a model)."""

from __future__ import annotations

import argparse
import zlib

import pytest

from services.cli.bench.routing import add_parser, bench_routing
from services.cli.bench.routing_figures import routing_figures
from services.cli.bench.routing_partitions import (
    PLACEMENTS,
    deal_agents,
    simulate_partitioned,
    task_partition,
)
from services.cli.bench.routing_sim import simulate
from services.cli.bench.routing_world import HiddenAgent, World, make_tasks, make_world
from shared.events import Persona, TaskAssigned, TaskSubmitted
from shared.recorded import Recorded


def agent(agent_id: str, task_type: str, quality: float = 0.8) -> HiddenAgent:
    return HiddenAgent(
        agent_id=agent_id,
        type_skill={task_type: quality},
        style_skill={"analytical": quality},
        capabilities={task_type: 1.0},
        persona=Persona(),
        capacity=1,
    )


def tasks_of(world: World, task_ids: list[str], task_type: str) -> list[TaskSubmitted]:
    tasks = [TaskSubmitted(task_id=task_id, task_type=task_type) for task_id in task_ids]
    world.tasks.update({task.task_id: task for task in tasks})
    return tasks


def assignments(log: list[Recorded]) -> list[TaskAssigned]:
    return [r.event for r in log if isinstance(r.event, TaskAssigned)]


def task_id_at_home(partition: int, partitions: int, prefix: str = "t") -> str:
    return next(
        f"{prefix}{index}"
        for index in range(1000)
        if zlib.crc32(f"{prefix}{index}".encode()) % partitions == partition
    )


def test_one_partition_is_the_router_alone_reading_the_whole_fleet() -> None:
    """``routing_sim.simulate`` is this run: its router reads every agent and every task."""
    world = make_world(6, 2, seed=4)
    tasks = make_tasks(world, 400, seed=4)
    run = simulate_partitioned(world, tasks, partitions=1, placement="home", rate=60, work_s=0.1, seed=4)
    (view,) = run.views
    assert set(view.fleet.agents) == set(world.agents)
    assert set(view.fleet.tasks) == {task.task_id for task in tasks}
    assert sorted(a.task_id for a in assignments(run.log)) == sorted(t.task_id for t in tasks)
    assert run.forwarded == 0
    assert run.unassigned == []


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_each_router_reads_only_its_agents_and_every_task_is_assigned_once_to_one_of_them(
    placement: str,
) -> None:
    world = make_world(8, 2, seed=2)
    tasks = make_tasks(world, 600, seed=2)
    run = simulate_partitioned(
        world,
        tasks,
        partitions=2,
        placement=placement,  # type: ignore[arg-type]
        rate=80,
        work_s=0.1,
        seed=2,
    )
    given = assignments(run.log)
    assert sorted(a.task_id for a in given) == sorted(t.task_id for t in tasks)
    assert run.unassigned == []
    owner = deal_agents(list(world.agents), 2)
    assert run.agents_per_partition == [4, 4]
    decided = 0
    for partition, view in enumerate(run.views):
        mine = {a for a, p in owner.items() if p == partition}
        assert set(view.fleet.agents) == mine  # no other partition's agent in its view
        for task in view.fleet.tasks.values():  # every task it was given went to one of its agents
            assert {record.agent_id for record in task.assignments} <= mine
        decided += len(view.fleet.tasks)
    assert decided == len(tasks)  # each task placed with exactly one partition


def test_routers_that_see_only_their_partition_choose_worse_than_one_that_asks_every_partition() -> None:
    world = make_world(10, 2, seed=1)
    tasks = make_tasks(world, 2000, seed=1)
    figures = {
        placement: routing_figures(
            simulate_partitioned(
                world, tasks, partitions=2, placement=placement, rate=100, work_s=0.1, seed=1
            ).log,
            world,
            800,
        ).accuracy
        for placement in ("home", "offer")
    }
    alone = routing_figures(simulate(world, tasks, rate=100, work_s=0.1, seed=1), world, 800).accuracy
    assert figures["home"] < 0.8 < 0.97 <= figures["offer"]
    assert abs(figures["offer"] - alone) < 0.02


def test_a_task_whose_type_no_agent_of_its_home_offers_goes_to_a_partition_where_one_does() -> None:
    world = World(agents={"a": agent("a", "x"), "b": agent("b", "y")})  # dealt: a -> 0, b -> 1
    task_id = task_id_at_home(0, 2)
    run = simulate_partitioned(
        world, tasks_of(world, [task_id], "y"), partitions=2, placement="home", rate=10, work_s=0.1
    )
    assert task_partition(task_id, 2) == 0
    assert [(a.task_id, a.agent_id) for a in assignments(run.log)] == [(task_id, "b")]
    assert run.forwarded == 1


def test_a_task_no_partition_can_take_waits_in_the_pool_for_the_first_slot_that_frees() -> None:
    world = World(agents={"a": agent("a", "x"), "b": agent("b", "x", quality=0.7)})
    tasks = tasks_of(world, ["t1", "t2", "t3"], "x")
    run = simulate_partitioned(world, tasks, partitions=2, placement="offer", rate=1000, work_s=0.1)
    given = assignments(run.log)
    assert [a.task_id for a in given] == ["t1", "t2", "t3"]
    assert run.pooled == 1
    third = next(r for r in run.log if isinstance(r.event, TaskAssigned) and r.event.task_id == "t3")
    first_end = next(r.seq for r in run.log if r.event.type_name() == "task.completed")
    assert third.seq > first_end  # placed when a slot freed, not before


def test_a_stale_summary_counts_down_the_slots_it_sent_tasks_to() -> None:
    world = World(agents={"a": agent("a", "x"), "b": agent("b", "x", quality=0.7)})
    tasks = tasks_of(world, ["t1", "t2", "t3"], "x")
    # Summaries never refreshed while the three arrive: each partition said it had one slot free.
    run = simulate_partitioned(
        world, tasks, partitions=2, placement="summary", rate=1000, work_s=0.1, summary_s=60.0
    )
    given = {a.task_id: a.agent_id for a in assignments(run.log)}
    assert sorted(given) == ["t1", "t2", "t3"]
    assert {given["t1"], given["t2"]} == {"a", "b"}
    assert run.pooled == 1


def test_a_task_a_stale_summary_sends_nowhere_is_placed_when_the_routers_look_again() -> None:
    world = World(agents={"a": agent("a", "x"), "b": agent("b", "x", quality=0.7)})
    tasks = tasks_of(world, ["t1", "t2", "t3"], "x")  # one every 2 s; each done in 0.1 s
    run = simulate_partitioned(
        world, tasks, partitions=2, placement="summary", rate=0.5, work_s=0.1, summary_s=60.0
    )
    # The summary of time 0 said one slot each: t1 and t2 took them, and t3 (at 4 s) found none,
    # though both agents were idle again: it waited for the look a second later.
    given = {a.task_id: a for a in assignments(run.log)}
    assert sorted(given) == ["t1", "t2", "t3"]
    assert run.pooled == 1
    assert given["t3"].ts == pytest.approx(4.0 + 1.0)


def test_no_partitions_is_refused() -> None:
    world = make_world(2, 1, seed=1)
    with pytest.raises(ValueError, match="at least 1"):
        simulate_partitioned(
            world, make_tasks(world, 1, seed=1), partitions=0, placement="home", rate=1, work_s=0.1
        )


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return parser.parse_args(["routing", *argv])


def test_partitions_without_offline_is_refused_with_a_reason(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_routing(_parse(["--partitions", "2"])) == 2
    assert "add --offline" in capsys.readouterr().err


def test_partitions_and_placement_are_checked_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--partitions", "0"], ["--partitions", "two"], ["--placement", "nearest"]):
        with pytest.raises(SystemExit):
            _parse(["--offline", *argv])
    assert "invalid" in capsys.readouterr().err


def test_the_bench_prints_how_the_partitions_placed_their_tasks(capsys: pytest.CaptureFixture[str]) -> None:
    small = ["--agents", "6", "--tasks", "300", "--warmup", "100", "--equal-tasks", "0"]
    args = _parse(["--offline", "--partitions", "2", "--placement", "offer", "--seeds", "1", *small])
    assert bench_routing(args) == 0
    out = capsys.readouterr().out
    assert "2 pure routers each owning a partition of the fleet, placement offer" in out
    assert "partitions         agents 3/3;" in out
    assert "0 never assigned" in out
