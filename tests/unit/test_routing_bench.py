"""``hive bench routing``'s measure: accuracy judged on the agents free when the router decided."""

from __future__ import annotations

import argparse

import pytest

from services.cli.bench.routing import add_parser, parse_seeds, parse_utilisations, run_routing
from services.cli.bench.routing_figures import routing_figures
from services.cli.bench.routing_sim import simulate
from services.cli.bench.routing_world import (
    HiddenAgent,
    World,
    make_equal_tasks,
    make_equal_world,
    make_tasks,
    make_world,
)
from shared.domain.routing.policy import RoutingConfig
from shared.events import AgentRegistered, AnyEvent, Persona, TaskAssigned, TaskCompleted, TaskSubmitted
from shared.recorded import Recorded


def hidden(agent_id: str, quality: float) -> HiddenAgent:
    return HiddenAgent(
        agent_id=agent_id,
        type_skill={"x": quality},
        style_skill={"analytical": quality},
        capabilities={"x": 1.0},
        persona=Persona(),
        capacity=1,
    )


def recorded(events: list[AnyEvent]) -> list[Recorded]:
    return [Recorded(seq, e.subject, e) for seq, e in enumerate(events, start=1)]


def two_agent_world() -> World:
    world = World(
        agents={"good": hidden("good", 1.0), "fair": hidden("fair", 0.97), "poor": hidden("poor", 0.5)}
    )
    for index in range(3):
        world.tasks[f"t{index}"] = TaskSubmitted(task_id=f"t{index}", task_type="x")
    return world


def test_a_decision_within_five_percent_of_the_best_free_agent_is_accurate() -> None:
    world = two_agent_world()
    log = recorded(
        [
            *[AgentRegistered(agent_id=a, capabilities={"x": 1.0}) for a in ("good", "fair", "poor")],
            *world.tasks.values(),
            TaskAssigned(agent_id="fair", task_id="t0", attempt=1),  # 0.97 of the best free: accurate
            TaskAssigned(agent_id="poor", task_id="t1", attempt=1),  # good is free: a miss
            TaskAssigned(agent_id="good", task_id="t2", attempt=1),
            TaskCompleted(agent_id="good", task_id="t2", attempt=1, quality=0.9),
        ]
    )
    figures = routing_figures(log, world, warmup=0)
    assert (figures.measured, figures.accurate) == (3, 2)
    assert abs(figures.router_quality - (0.97 + 0.5 + 1.0) / 3) < 1e-9
    assert figures.reported_quality == 0.9
    warm = routing_figures(log, world, warmup=1)
    assert (warm.measured, warm.accurate) == (2, 1)


def test_the_agents_free_are_those_the_router_had_seen_when_it_decided() -> None:
    world = two_agent_world()
    world.tasks["busy"] = TaskSubmitted(task_id="busy", task_type="x")
    events: list[AnyEvent] = [
        *[AgentRegistered(agent_id=a, capabilities={"x": 1.0}) for a in ("good", "poor")],
        world.tasks["busy"],
        world.tasks["t0"],
        TaskAssigned(agent_id="good", task_id="busy", attempt=1),  # seq 5
        TaskCompleted(agent_id="good", task_id="busy", attempt=1),  # seq 6: good is free again
        TaskAssigned(agent_id="poor", task_id="t0", attempt=1, decided_at_seq=5),  # decided before seq 6
    ]
    del world.agents["fair"]
    figures = routing_figures(recorded(events), world, warmup=0)
    assert figures.accuracy == 1.0, "when the router decided, only poor was free"
    assert figures.accuracy_at_append == 0.5, "by the time it landed, good was free (the strict figure)"


def test_the_random_and_least_loaded_baselines_are_judged_on_the_same_free_agents() -> None:
    world = two_agent_world()
    log = recorded(
        [
            *[AgentRegistered(agent_id=a, capabilities={"x": 1.0}) for a in ("poor", "fair", "good")],
            world.tasks["t0"],
            TaskAssigned(agent_id="good", task_id="t0", attempt=1),
        ]
    )
    figures = routing_figures(log, world, warmup=0)
    assert abs(figures.random_quality - (1.0 + 0.97 + 0.5) / 3) < 1e-9
    assert figures.least_loaded_quality == 0.97, "all idle: least-loaded takes the first by id"
    assert figures.best_free_quality == 1.0


def test_the_router_learns_to_route_near_the_best_agent_in_the_simulated_world() -> None:
    world = make_world(agents=6, capacity=2, seed=11)
    tasks = make_tasks(world, 1200, seed=11)
    log = simulate(world, tasks, rate=60, work_s=0.1, config=RoutingConfig(), seed=11)
    figures = routing_figures(log, world, warmup=400)
    assert figures.decisions == 1200
    assert figures.accuracy > 0.95
    assert figures.router_quality > figures.least_loaded_quality + 0.1
    assert figures.router_quality > figures.random_quality + 0.1
    world_again = make_world(agents=6, capacity=2, seed=11)
    again = simulate(world_again, make_tasks(world_again, 1200, seed=11), rate=60, work_s=0.1, seed=11)

    def choices(records: list[Recorded]) -> list[tuple[str, str]]:
        return [(r.event.task_id, r.event.agent_id) for r in records if isinstance(r.event, TaskAssigned)]

    assert choices(again) == choices(log), "same world, tasks and seed: the same decisions"


def test_the_routing_bench_offers_every_strategy_and_mode() -> None:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(
        ["routing", "--strategy", "round_robin", "--mode", "fault_tolerant", "--offline"]
    )
    assert (args.strategy, args.mode, args.offline, args.warmup) == (
        "round_robin",
        "fault_tolerant",
        True,
        1500,
    )


def test_efficiency_is_judged_on_the_measured_decisions_among_the_agents_able_to_take_them() -> None:
    world = two_agent_world()
    world.tasks["t3"] = TaskSubmitted(task_id="t3", task_type="x")
    log = recorded(
        [
            *[AgentRegistered(agent_id=a, capabilities={"x": 1.0}, capacity=2) for a in ("good", "fair")],
            *world.tasks.values(),
            TaskAssigned(agent_id="good", task_id="t0", attempt=1, ts=1.0),
            TaskAssigned(agent_id="good", task_id="t1", attempt=1, ts=2.0),  # 2 and 0: one misplaced
            TaskAssigned(agent_id="fair", task_id="t2", attempt=1, ts=3.0),  # 2 and 1: as even as can be
        ]
    )
    assert routing_figures(log, world, warmup=2).efficiency == 1.0
    both = routing_figures(log, world, warmup=1)
    assert both.efficiency == 1.0 - 1 / (2 + 3), "misplaced summed over the samples, over tasks in flight"
    assert abs(both.utilisation - (2 / 4 + 3 / 4) / 2) < 1e-9


def test_the_default_router_spreads_work_over_equal_agents_and_every_choice_is_accurate() -> None:
    world = make_equal_world(agents=20, capacity=4)
    tasks = make_equal_tasks(world, 1500)
    log = simulate(world, tasks, rate=240, work_s=0.1, jitter=0.5, config=RoutingConfig(), seed=3)
    figures = routing_figures(log, world, warmup=0)
    assert figures.accuracy == 1.0, "equal agents: any choice is as good as the best"
    assert figures.efficiency is not None and figures.efficiency >= 0.95, figures.efficiency
    assert 0.25 < figures.utilisation < 0.35


def test_the_routing_bench_reports_accuracy_per_seed_and_evenness_among_equals() -> None:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    world = ["--agents", "4", "--tasks", "300", "--warmup", "100", "--seeds", "1-2"]
    equal = ["--equal-agents", "5", "--equal-capacity", "2", "--equal-tasks", "200", "--utilisation", "0.3"]
    args = parser.parse_args(["routing", "--offline", *world, *equal])
    report = run_routing(args)
    assert sorted(report.runs) == [1, 2]
    assert all(figures.measured == 200 and figures.efficiency is not None for figures in report.runs.values())
    assert [(run.seed, run.offered_utilisation) for run in report.equal] == [(1, 0.3), (2, 0.3)]
    assert report.equal_efficiency_min is not None and report.equal_met is not None


def test_seeds_and_utilisations_are_read_as_lists_and_nonsense_is_refused() -> None:
    assert parse_seeds("1-3") == [1, 2, 3]
    assert parse_seeds("1,5") == [1, 5]
    assert parse_utilisations("0.1,0.3,0.6") == [0.1, 0.3, 0.6]
    for bad in ("x", "3-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_seeds(bad)
    for bad in ("0.5,high", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_utilisations(bad)
