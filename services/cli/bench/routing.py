"""``hive bench routing``: does the router give each task to the agent a careful dispatcher would?

Simulated agents with a hidden true skill per task type and cognitive style (``routing_world``)
register with noisy self-descriptions and report qualities drawn from that hidden skill; a
private Hive (its own nats-server, the real router and recovery processes) routes a stream of
tasks to them and learns from what they report. The event log is then replayed
(``routing_figures``): after the warm-up, the share of tasks given to an agent within 5% of the
best free agent's true expected quality, and the mean true quality against random and
least-loaded routing at the same moments. ``--offline`` runs the same world and task stream
through the pure router in virtual time instead (no NATS, deterministic).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
from dataclasses import asdict
from typing import get_args

from services.cli.bench.common import on_private_stack, quiet, wait_for_services
from services.cli.bench.routing_figures import RoutingFigures, routing_figures
from services.cli.bench.routing_sim import simulate
from services.cli.bench.routing_world import World, make_tasks, make_world
from services.cli.stack import Stack
from shared.agent.sdk import Agent, TaskContext, TaskOutcome
from shared.bus import EventBus
from shared.domain.routing.policy import RoutingConfig
from shared.events import OrchestrationMode, RoutingStrategy, TaskCompleted, TaskSubmitted
from shared.recorded import Recorded
from shared.subjects import events_of_type


def _handler(world: World, agent_id: str, work_s: float, jitter: float, rng: random.Random):  # type: ignore[no-untyped-def]
    async def handle(context: TaskContext) -> TaskOutcome:
        await asyncio.sleep(work_s * (1.0 + rng.uniform(-jitter, jitter)))
        quality = world.reported_quality(agent_id, context.task_id, rng)
        return TaskOutcome(result={"agent": agent_id}, quality=quality)

    return handle


async def measure_routing(
    stack: Stack,
    world: World,
    tasks: list[TaskSubmitted],
    *,
    rate: float,
    work_s: float,
    jitter: float,
    warmup: int,
    seed: int,
) -> RoutingFigures:
    """Run the task stream through the real router and measure its decisions from the log."""
    bus = await EventBus.connect(stack.nats_url, "bench")
    agent_bus = await EventBus.connect(stack.nats_url, "bench-agents")
    agents = [
        Agent(
            hidden.agent_id,
            _handler(world, hidden.agent_id, work_s, jitter, random.Random(seed * 1000 + index)),
            capabilities=hidden.capabilities,
            persona=hidden.persona,
            capacity=hidden.capacity,
            metadata={"simulated": "routing-bench"},
        )
        for index, hidden in enumerate(world.agents.values())
    ]
    try:
        await wait_for_services(bus, stack.instance_counts())
        for agent in agents:
            await agent.start(agent_bus)
        completed: set[str] = set()
        done = asyncio.Event()

        def on_completed(recorded: Recorded) -> None:
            completed.add(getattr(recorded.event, "task_id", ""))
            if len(completed) >= len(tasks):
                done.set()

        stop_following = asyncio.Event()
        follower = asyncio.create_task(
            bus.follow(
                on_completed,
                stop_following,
                subject_filter=events_of_type("task", TaskCompleted.event_type()),
                start_seq=await bus.last_sequence() + 1,
            )
        )
        loop = asyncio.get_running_loop()
        begin = loop.time()
        for index, task in enumerate(tasks):
            delay = begin + index / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await bus.append(task, expected=0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout=60 + 10 * len(tasks) * work_s)
        stop_following.set()
        await follower
        log = [item async for item in bus.read() if isinstance(item, Recorded)]
    finally:
        for agent in agents:
            await agent.stop()
        await agent_bus.close()
        await bus.close()
    return routing_figures(log, world, warmup)


def _warmup(args: argparse.Namespace) -> int:
    """Decisions not measured (learning), at most all but the last."""
    return min(int(args.warmup), max(0, int(args.tasks) - 1))


def run_routing(args: argparse.Namespace) -> RoutingFigures:
    """The figures of `hive bench routing <args>`: offline (pure router, virtual time) or live."""
    world = make_world(args.agents, args.capacity, args.seed)
    tasks = make_tasks(world, args.tasks, args.seed)
    warmup = _warmup(args)
    if args.offline:
        config = RoutingConfig(mode=args.mode, default_strategy=args.strategy)
        log = simulate(
            world, tasks, rate=args.rate, work_s=args.work_ms / 1000, config=config, seed=args.seed
        )
        figures = routing_figures(log, world, warmup)
    else:
        figures = on_private_stack(
            lambda stack: measure_routing(
                stack,
                world,
                tasks,
                rate=args.rate,
                work_s=args.work_ms / 1000,
                jitter=0.3,
                warmup=warmup,
                seed=args.seed,
            ),
            services=("router", "recovery"),
            orchestration_mode=args.mode,
            default_routing_strategy=args.strategy,
        )
    return figures


def bench_routing(args: argparse.Namespace) -> int:
    figures = run_routing(args)
    if args.json:
        print(
            json.dumps(
                {
                    **asdict(figures),
                    "accuracy": figures.accuracy,
                    "accuracy_at_append": figures.accuracy_at_append,
                }
            )
        )
        return 0
    where = "pure router, virtual time" if args.offline else "private Hive, real router"
    print(
        f"routing accuracy ({where}): {args.agents} agents x capacity {args.capacity}, {args.tasks} tasks "
        f"at {args.rate:.0f}/s, strategy {args.strategy}, mode {args.mode}, seed {args.seed}"
    )
    print(f"  decisions          {figures.decisions} (the first {_warmup(args)} are warm-up)")
    print(
        f"  accurate           {figures.accurate}/{figures.measured} = {figures.accuracy:.2%}   "
        f"(target >= {figures.target:.0%}: within 5% of the best agent free in the router's view)"
    )
    print(
        f"  accurate (strict)  {figures.accurate_at_append}/{figures.measured_at_append} = "
        f"{figures.accuracy_at_append:.2%}   (best agent free when the assignment reached the log)"
    )
    print("  mean true expected quality of the chosen agent:")
    print(f"    hive router      {figures.router_quality:.3f}")
    print(f"    best free agent  {figures.best_free_quality:.3f}")
    print(f"    random           {figures.random_quality:.3f}")
    print(f"    least-loaded     {figures.least_loaded_quality:.3f}")
    print(f"  mean reported quality  {figures.reported_quality:.3f}")
    print(f"  verdict            {'target met' if figures.met else 'target NOT met'}")
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    routing = commands.add_parser("routing", help="routing accuracy against agents' hidden true skill")
    routing.add_argument("--agents", type=int, default=10)
    routing.add_argument("--capacity", type=int, default=2)
    routing.add_argument("--tasks", type=int, default=5000)
    routing.add_argument("--warmup", type=int, default=1500, help="decisions not measured (learning)")
    routing.add_argument("--rate", type=float, default=100.0, help="tasks offered per second")
    routing.add_argument("--work-ms", type=float, default=100.0, help="mean duration of a simulated task")
    routing.add_argument(
        "--strategy",
        default="adaptive",
        choices=get_args(RoutingStrategy),
    )
    routing.add_argument("--mode", default="standard", choices=get_args(OrchestrationMode))
    routing.add_argument("--seed", type=int, default=1)
    routing.add_argument("--offline", action="store_true", help="pure router in virtual time (no NATS)")
    routing.add_argument("--json", action="store_true", help="one JSON line instead of a table")
    routing.set_defaults(func=quiet(bench_routing))
