"""``hive bench routing``: does the router give each task to the agent a careful dispatcher would,
and spread work over the agents it cannot tell apart?

Simulated agents with a hidden true skill per task type and cognitive style (``routing_world``)
register with noisy self-descriptions and report qualities drawn from that hidden skill; a
private Hive (its own nats-server, the real router and recovery processes) routes a stream of
tasks to them and learns from what they report. The event log is then replayed
(``routing_figures``): after the warm-up, the share of tasks given to an agent within 5% of the
best free agent's true expected quality, the mean true quality against random and least-loaded
routing at the same moments, and the load-balancing efficiency of the same decisions (agents of
truly different skill: concentrating on the better ones is right there). One run per seed.

Then the same router routes tasks to *equal* agents (``make_equal_world``: alike in what they
declare and in their hidden skill) at several utilisations: every choice is accurate there, and
the efficiency says whether the work was spread. ``--offline`` runs everything through the pure
router in virtual time instead (no NATS, deterministic, CPU-independent).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
from dataclasses import asdict, dataclass, field
from typing import get_args

from services.cli.bench.common import on_private_stack, quiet, wait_for_services
from services.cli.bench.routing_figures import RoutingFigures, routing_figures
from services.cli.bench.routing_partitions import PLACEMENTS, SUMMARY_S, PartitionRun, simulate_partitioned
from services.cli.bench.routing_sim import simulate
from services.cli.bench.routing_world import World, make_equal_tasks, make_equal_world, make_tasks, make_world
from services.cli.bench.scale import positive_int
from services.cli.stack import Stack
from shared.agent.sdk import Agent, TaskContext, TaskOutcome
from shared.bus import EventBus
from shared.domain.routing.policy import RoutingConfig
from shared.domain.routing.separation import DEFAULT_CONFIDENCE
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


EQUAL_TARGET = 0.95
"""Load-balancing efficiency the default strategy is held to among equal agents."""
EQUAL_JITTER = 0.5
"""Work time of the equal agents: +-50%, as ``hive bench balance``'s (tasks end at different times)."""


@dataclass
class EqualRun:
    """The default strategy among equal agents at one utilisation."""

    seed: int
    offered_utilisation: float
    figures: RoutingFigures


@dataclass
class PartitionFigures:
    """How a run split among routers owning partitions of the fleet placed its tasks
    (``routing_partitions``)."""

    agents_per_partition: list[int]
    forwarded: int
    pooled: int
    unassigned: int

    @classmethod
    def of(cls, run: PartitionRun) -> PartitionFigures:
        return cls(run.agents_per_partition, run.forwarded, run.pooled, len(run.unassigned))


@dataclass
class RoutingReport:
    strategy: str
    mode: str
    offline: bool
    partitions: int = 1
    placement: str = "home"
    runs: dict[int, RoutingFigures] = field(default_factory=dict)
    """Seed -> figures of the world of agents of different skill."""
    partitioned: dict[int, PartitionFigures] = field(default_factory=dict)
    """Seed -> how its tasks were placed, with ``partitions`` above 1."""
    equal: list[EqualRun] = field(default_factory=list)
    equal_target: float = EQUAL_TARGET

    @property
    def accuracy_min(self) -> float:
        return min((f.accuracy for f in self.runs.values()), default=float("nan"))

    @property
    def equal_efficiency_min(self) -> float | None:
        found = [run.figures.efficiency for run in self.equal if run.figures.efficiency is not None]
        return min(found) if found else None

    @property
    def accuracy_met(self) -> bool:
        return bool(self.runs) and all(f.met for f in self.runs.values())

    @property
    def equal_met(self) -> bool | None:
        lowest = self.equal_efficiency_min
        return None if lowest is None else lowest >= self.equal_target


def parse_seeds(text: str) -> list[int]:
    """``1``, ``1,2,5`` or ``1-3``."""
    seeds: list[int] = []
    for part in text.split(","):
        first, _dash, last = part.strip().partition("-")
        try:
            low, high = int(first), int(last or first)
        except ValueError:
            raise argparse.ArgumentTypeError(f"seeds are numbers or ranges like 1-3, got {text!r}") from None
        if high < low:
            raise argparse.ArgumentTypeError(f"empty range of seeds: {part.strip()!r}")
        seeds.extend(range(low, high + 1))
    return seeds


def parse_utilisations(text: str) -> list[float]:
    """``0.1,0.3,0.6``: shares of the equal agents' capacity to keep busy."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"utilisations are numbers like 0.1,0.3, got {text!r}") from None
    if any(not 0.0 < value < 1.0 for value in values):
        raise argparse.ArgumentTypeError(f"utilisations are between 0 and 1, got {text!r}")
    return values


def _warmup(args: argparse.Namespace) -> int:
    """Decisions not measured (learning), at most all but the last."""
    return min(int(args.warmup), max(0, int(args.tasks) - 1))


def _seeds(args: argparse.Namespace) -> list[int]:
    """The seeds asked for; by default 1-3 offline (seconds), 1 on a live Hive (a minute each)."""
    if args.seeds is not None:
        return list(args.seeds)
    return [1, 2, 3] if args.offline else [1]


def _route(
    args: argparse.Namespace,
    world: World,
    tasks: list[TaskSubmitted],
    *,
    rate: float,
    jitter: float,
    warmup: int,
    seed: int,
) -> tuple[RoutingFigures, PartitionFigures | None]:
    """One task stream through the router: the pure one in virtual time (split among `--partitions`
    of them, each owning a share of the fleet), or a private Hive's."""
    work_s = args.work_ms / 1000
    if args.offline:
        config = RoutingConfig(mode=args.mode, default_strategy=args.strategy, confidence=args.confidence)
        if args.partitions > 1:
            run = simulate_partitioned(
                world,
                tasks,
                partitions=args.partitions,
                placement=args.placement,
                rate=rate,
                work_s=work_s,
                jitter=jitter,
                config=config,
                seed=seed,
                summary_s=args.summary_ms / 1000,
            )
            return routing_figures(run.log, world, warmup), PartitionFigures.of(run)
        log = simulate(world, tasks, rate=rate, work_s=work_s, jitter=jitter, config=config, seed=seed)
        return routing_figures(log, world, warmup), None
    figures = on_private_stack(
        lambda stack: measure_routing(
            stack, world, tasks, rate=rate, work_s=work_s, jitter=jitter, warmup=warmup, seed=seed
        ),
        services=("router", "recovery"),
        orchestration_mode=args.mode,
        default_routing_strategy=args.strategy,
        routing_confidence=args.confidence,
    )
    return figures, None


def run_routing(args: argparse.Namespace) -> RoutingReport:
    """The figures of `hive bench routing <args>`: per seed, the world of agents of different skill,
    then the equal agents at each utilisation."""
    report = RoutingReport(
        strategy=args.strategy,
        mode=args.mode,
        offline=args.offline,
        partitions=args.partitions,
        placement=args.placement,
    )
    for seed in _seeds(args):
        world = make_world(args.agents, args.capacity, seed)
        tasks = make_tasks(world, args.tasks, seed)
        report.runs[seed], placed = _route(
            args, world, tasks, rate=args.rate, jitter=0.3, warmup=_warmup(args), seed=seed
        )
        if placed is not None:
            report.partitioned[seed] = placed
    if args.equal_tasks > 0:
        for seed in _seeds(args):
            for utilisation in args.utilisation:
                world = make_equal_world(args.equal_agents, args.equal_capacity)
                tasks = make_equal_tasks(world, args.equal_tasks)
                rate = utilisation * args.equal_agents * args.equal_capacity / (args.work_ms / 1000)
                figures, _placed = _route(
                    args, world, tasks, rate=rate, jitter=EQUAL_JITTER, warmup=0, seed=seed
                )
                report.equal.append(EqualRun(seed=seed, offered_utilisation=utilisation, figures=figures))
    return report


def _efficiency(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def bench_routing(args: argparse.Namespace) -> int:
    if args.partitions > 1 and not args.offline:
        print(
            "hive bench routing: --partitions models routers that split the fleet with the pure "
            "router in virtual time; add --offline",
            file=sys.stderr,
        )
        return 2
    report = run_routing(args)
    if args.json:
        print(
            json.dumps(
                {
                    **asdict(report),
                    "accuracy": {seed: f.accuracy for seed, f in report.runs.items()},
                    "accuracy_at_append": {seed: f.accuracy_at_append for seed, f in report.runs.items()},
                    "accuracy_met": report.accuracy_met,
                    "equal_efficiency_min": report.equal_efficiency_min,
                    "equal_met": report.equal_met,
                }
            )
        )
        return 0
    where = "pure router, virtual time" if args.offline else "private Hive, real router"
    if args.partitions > 1:
        where = (
            f"{args.partitions} pure routers each owning a partition of the fleet, placement "
            f"{args.placement}"
            + (f" every {args.summary_ms:g} ms" if args.placement == "summary" else "")
            + ", virtual time (a model: Hive's routers each read the whole fleet)"
        )
    print(
        f"routing ({where}): strategy {args.strategy}, mode {args.mode}, "
        f"ROUTING_CONFIDENCE {args.confidence:g}"
    )
    print(
        f"agents of different skill: {args.agents} agents x capacity {args.capacity}, {args.tasks} tasks at "
        f"{args.rate:.0f}/s, the first {_warmup(args)} decisions are warm-up"
    )
    for seed, figures in report.runs.items():
        print(f"  seed {seed}")
        print(
            f"    accurate           {figures.accurate}/{figures.measured} = {figures.accuracy:.2%}   "
            f"(target >= {figures.target:.0%}: within 5% of the best agent free in the router's view)"
        )
        print(
            f"    accurate (strict)  {figures.accurate_at_append}/{figures.measured_at_append} = "
            f"{figures.accuracy_at_append:.2%}   (best agent free when the assignment reached the log)"
        )
        print(
            f"    mean true expected quality: router {figures.router_quality:.3f}, best free agent "
            f"{figures.best_free_quality:.3f}, random {figures.random_quality:.3f}, least-loaded "
            f"{figures.least_loaded_quality:.3f}; reported {figures.reported_quality:.3f}"
        )
        print(
            f"    efficiency         {_efficiency(figures.efficiency)} at {figures.utilisation:.0%} "
            "utilisation (reported: concentrating on the better agents is right here)"
        )
        placed = report.partitioned.get(seed)
        if placed is not None:
            print(
                f"    partitions         agents {'/'.join(map(str, placed.agents_per_partition))}; "
                f"{placed.forwarded} tasks decided outside their home partition, {placed.pooled} "
                f"waited for a slot in any, {placed.unassigned} never assigned"
            )
    if report.equal:
        print(
            f"equal agents: {args.equal_agents} agents x capacity {args.equal_capacity}, "
            f"{args.equal_tasks} tasks per run, work {args.work_ms:.0f} ms +-{EQUAL_JITTER:.0%}"
        )
        for run in report.equal:
            figures = run.figures
            print(
                f"  seed {run.seed}, {run.offered_utilisation:.0%} offered: efficiency "
                f"{_efficiency(figures.efficiency)} at {figures.utilisation:.0%} utilisation "
                f"(target >= {report.equal_target}), accurate {figures.accuracy:.2%}"
            )
    verdicts = [f"accuracy {'met' if report.accuracy_met else 'NOT met'} (lowest {report.accuracy_min:.2%})"]
    if report.equal_met is not None:
        verdicts.append(
            f"evenness among equals {'met' if report.equal_met else 'NOT met'} "
            f"(lowest {_efficiency(report.equal_efficiency_min)})"
        )
    print(f"verdict: {'; '.join(verdicts)}")
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    routing = commands.add_parser(
        "routing", help="routing accuracy against agents' hidden true skill, and evenness among equals"
    )
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
    routing.add_argument(
        "--seeds",
        type=parse_seeds,
        default=None,
        help="worlds to run: 1, 1,2,5 or 1-3 (default 1-3 offline, else 1)",
    )
    routing.add_argument(
        "--confidence",
        type=float,
        default=DEFAULT_CONFIDENCE,
        help="ROUTING_CONFIDENCE of the router (above 0.5, below 1)",
    )
    routing.add_argument("--equal-agents", type=int, default=20, help="agents of the equal-agents runs")
    routing.add_argument("--equal-capacity", type=int, default=4)
    routing.add_argument(
        "--equal-tasks", type=int, default=2000, help="tasks of each equal-agents run (0: skip them)"
    )
    routing.add_argument(
        "--utilisation",
        type=parse_utilisations,
        default=[0.1, 0.3, 0.6],
        help="equal agents' utilisations to offer, e.g. 0.1,0.3,0.6",
    )
    routing.add_argument("--offline", action="store_true", help="pure router in virtual time (no NATS)")
    routing.add_argument(
        "--partitions",
        type=positive_int,
        default=1,
        help="with --offline: that many routers, each owning a share of the fleet (a model)",
    )
    routing.add_argument(
        "--placement",
        default="home",
        choices=PLACEMENTS,
        help="how a task finds its partition: its hash (home), every router's offer, or their summaries",
    )
    routing.add_argument(
        "--summary-ms",
        type=float,
        default=SUMMARY_S * 1000,
        help="--placement summary: how often each partition tells the others what it offers",
    )
    routing.add_argument("--json", action="store_true", help="one JSON line instead of a table")
    routing.set_defaults(func=quiet(bench_routing))
