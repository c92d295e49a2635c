"""``hive bench balance``: load-balancing efficiency, and the rescue of work an agent leaves unstarted.

A private Hive (every service) and simulated agents; tasks go through the HTTP API from
``--concurrency`` clients. The router spreads work among *equals* and keeps it on agents it
predicts better (README, Routing), so evenness is measured first where it is the goal, then where
it is traded for fit. Phases, one after the other:

* **light**: ``--tasks`` tasks routed with ``--strategy`` (``load_balanced``, the strategy whose job
  is an even load) to ``--agents`` *equal* agents (same capability, capacity and persona), exactly
  ``--concurrency`` of them in flight at a time (each client waits for its task to complete);
* **light-adaptive**: the same with the router's default strategy (``adaptive``: it spreads work
  over the agents its learned posterior cannot tell apart, and keeps it on one that is clearly
  better while it has room);
* **heavy**: ``--heavy-tasks`` tasks with ``--strategy`` to the equal agents, each client sending
  its next task as soon as the gateway answered the previous one (routed, or queued when all are
  full): as much load as routing lets through;
* **heavy-adaptive**: the same with the default strategy;
* **varied**: as light, to ``--agents`` other agents whose personas differ (as ``hive agent``
  spreads them): the router weighs fit against load;
* **skilled**: ``--skilled-tasks`` tasks with the default strategy, as light, to ``--agents`` agents
  that declare the same but whose work is of truly different quality (0.5 to 0.95): concentrating
  on the better ones is right there, so the efficiency is reported, not judged;
* **stalled**: as heavy, with ``--stalled`` more agents among the equal ones whose assignment
  reader is stuck (they heartbeat, they never start what they are given); what the router gives
  them waits until the balancer moves it (``REBALANCE_AFTER_S``), timed from that assignment to
  the task starting elsewhere.

Every figure comes from the event log, by the code behind ``GET /orchestration/metrics``
(``shared/domain/performance_metrics.py``), over each phase's span: efficiency is
``1 - misplaced / in flight`` summed over samples taken at assignments among the agents able to take
the task (README, Balancer); the mean utilisation of those agents at the same moments is shown.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time
from collections.abc import Awaitable
from dataclasses import asdict, dataclass, field

from services.cli.bench.common import on_private_stack, percentile, quiet, wait_for_services
from services.cli.bench.http import JsonClient
from services.cli.stack import Stack
from shared.agent.sdk import Agent
from shared.agent.simulated import SimulationProfile, make_simulated_agents, simulated_handler
from shared.bus import EventBus
from shared.domain.load_balance import accepted_assignment, group_loads
from shared.domain.performance_metrics import MetricsView, apply_metrics_view, figures
from shared.domain.starts import implied_start_ts
from shared.events import Persona, TaskAssigned, TaskCompleted, TaskRequeued, TaskStarted
from shared.recorded import Recorded, decode_recorded

ASSIGN = "/api/v1/orchestration/task/assign"
CAPABILITY = "balance"
VARIED = "balance-varied"
SKILLED = "balance-skilled"
TARGET_EFFICIENCY = 0.97
DEFAULT_STRATEGY_TARGET = 0.95
"""What the default strategy (``adaptive``) is held to among equal agents: it may still keep work on
an agent its evidence says is better, so a little below the even-load target of ``load_balanced``."""
SKILLED_QUALITY = (0.5, 0.95)
"""Range of the true quality of the skilled phase's agents (evenly spread)."""
PHASE_GAP_S = 1.2
"""Figures are kept per second of event time: phases start in different seconds."""


@dataclass
class Phase:
    name: str
    tasks: int
    strategy: str
    agents: int
    paced_by: str
    """``completion``: each client waits for its task to complete (that many tasks in flight at a
    time); ``answer``: for the gateway's answer (as fast as routing goes)."""
    started_ts: float = 0.0
    ended_ts: float = 0.0
    round_trips_ms: list[float] = field(default_factory=list)
    efficiency: float | None = None
    efficiency_samples: int = 0
    assign_p50_ms: float | None = None
    assign_p99_ms: float | None = None
    completed: int = 0
    moves: int = 0
    stalled_assignments: int = 0
    rescue_s: list[float] = field(default_factory=list)
    """Stalled phase: from a task's assignment to a stalled agent to its start elsewhere."""
    utilisation: list[float] = field(default_factory=list)
    """In flight / capacity of the agents able to take the task, at each assignment."""

    @property
    def mean_utilisation(self) -> float:
        return sum(self.utilisation) / len(self.utilisation) if self.utilisation else float("nan")

    @property
    def span_s(self) -> float:
        return max(1e-9, self.ended_ts - self.started_ts)

    @property
    def throughput_per_s(self) -> float:
        return self.completed / self.span_s


@dataclass
class BalanceResult:
    agents: int
    capacity: int
    work_ms: float
    concurrency: int
    rebalance_after_s: float
    phases: list[Phase]
    target_efficiency: float = TARGET_EFFICIENCY
    default_strategy_target: float = DEFAULT_STRATEGY_TARGET

    def target_of(self, phase: Phase) -> float | None:
        """The efficiency a phase is held to (None: reported only, agents of different skill)."""
        if phase.name == "skilled":
            return None
        return self.default_strategy_target if phase.strategy == "adaptive" else self.target_efficiency


class StalledAgent(Agent):
    """Alive by its heartbeats, it takes its assignments and never starts them (an agent queueing work
    for workers that never free up). A simulation device: it answers nothing to its assignments."""

    def _on_message(self, subject: str, data: bytes, seq: int, reply: str) -> Awaitable[None] | None:
        item = decode_recorded(seq, subject, data)
        if isinstance(item, Recorded) and isinstance(item.event, TaskAssigned):
            self._ack(reply)
            return None
        return super()._on_message(subject, data, seq, reply)


class Watch:
    """Completions as they reach the log: per phase prefix, and per task for clients waiting on one."""

    def __init__(self) -> None:
        self.completed: dict[str, set[str]] = {}
        self.targets: dict[str, tuple[int, asyncio.Event]] = {}
        self.waiting: dict[str, asyncio.Event] = {}

    def expect(self, prefix: str, count: int) -> asyncio.Event:
        flag = asyncio.Event()
        self.targets[prefix] = (count, flag)
        self.completed.setdefault(prefix, set())
        return flag

    def completion(self, task_id: str) -> asyncio.Event:
        flag = self.waiting.setdefault(task_id, asyncio.Event())
        if task_id in self.completed.get(_phase_of(task_id), ()):
            flag.set()
        return flag

    def on_event(self, recorded: Recorded) -> None:
        event = recorded.event
        if not isinstance(event, TaskCompleted):
            return
        prefix = _phase_of(event.task_id)
        done = self.completed.setdefault(prefix, set())
        done.add(event.task_id)
        waiter = self.waiting.pop(event.task_id, None)
        if waiter is not None:
            waiter.set()
        target = self.targets.get(prefix)
        if target is not None and len(done) >= target[0]:
            target[1].set()


async def _drive(
    base_url: str,
    prefix: str,
    tasks: int,
    strategy: str | None,
    capability: str,
    clients: int,
    watch: Watch | None,
) -> list[float]:
    """`clients` connections, each posting its next task once the previous one was answered or,
    with a `watch`, once it completed (then exactly `clients` tasks are in flight at a time)."""
    numbers = iter(range(tasks))
    round_trips: list[float] = []

    async def client() -> None:
        async with JsonClient(base_url) as http:
            for index in numbers:
                task_id = f"{prefix}-{index}"
                body: dict[str, object] = {"task_id": task_id, "task_type": capability}
                if strategy is not None:
                    body["routing_strategy"] = strategy
                began = time.perf_counter()
                status, answer = await http.post(ASSIGN, body)
                round_trips.append((time.perf_counter() - began) * 1000)
                if status not in (200, 202):
                    raise RuntimeError(f"task/assign answered {status}: {answer}")
                if watch is not None:
                    await watch.completion(task_id).wait()

    await asyncio.gather(*(client() for _ in range(clients)))
    return round_trips


async def _run_phase(
    stack: Stack,
    watch: Watch,
    phase: Phase,
    strategy: str | None,
    capability: str,
    clients: int,
    timeout: float,
) -> None:
    flag = watch.expect(phase.name, phase.tasks)
    phase.started_ts = time.time()
    phase.round_trips_ms = await _drive(
        stack.gateway_url,
        phase.name,
        phase.tasks,
        strategy,
        capability,
        clients,
        watch if phase.paced_by == "completion" else None,
    )
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(flag.wait(), timeout)
    phase.ended_ts = time.time()
    phase.completed = len(watch.completed.get(phase.name, ()))
    await asyncio.sleep(PHASE_GAP_S)


def _phase_of(task_id: str) -> str:
    return task_id.rsplit("-", 1)[0]


def _judge(log: list[Recorded], phases: list[Phase], stalled: set[str]) -> None:
    """Every figure of every phase, from the log."""
    by_name = {phase.name: phase for phase in phases}
    view = MetricsView()
    stuck_at: dict[str, float] = {}
    for recorded in log:
        event = recorded.event
        phase = by_name.get(_phase_of(getattr(event, "task_id", "")))
        if phase is not None and isinstance(event, TaskAssigned) and accepted_assignment(view.fleet, event):
            spec = view.fleet.tasks[event.task_id].spec
            needed = [spec.task_type, *spec.required_capabilities]
            loads = group_loads(view.fleet, view.breakers, needed, {event.agent_id: 1})
            capacity = sum(slots for _load, slots in loads)
            if capacity:
                phase.utilisation.append(sum(load for load, _slots in loads) / capacity)
            if event.agent_id in stalled and event.task_id not in stuck_at:
                stuck_at[event.task_id] = event.ts
                phase.stalled_assignments += 1
        elif phase is not None and isinstance(event, TaskRequeued) and event.reason == "rebalanced":
            phase.moves += 1
        elif (
            phase is not None
            and isinstance(event, TaskStarted | TaskCompleted)
            and event.agent_id not in stalled
        ):
            # A quick attempt appends no task.started: its completion says when it began.
            since = stuck_at.pop(event.task_id, None)
            began = event.ts if isinstance(event, TaskStarted) else implied_start_ts(event, None)
            if since is not None and began is not None:
                phase.rescue_s.append(began - since)
        apply_metrics_view(view, recorded)
    for phase in phases:
        found = figures(view.metrics, now=phase.ended_ts, window_s=phase.span_s)
        phase.efficiency = found.load_balancing_efficiency.value
        phase.efficiency_samples = found.load_balancing_efficiency.samples
        phase.assign_p50_ms = found.assignment_latency_ms["p50"]
        phase.assign_p99_ms = found.assignment_latency_ms["p99"]


def skilled_quality(index: int, count: int) -> float:
    """The true quality of the `index`-th of `count` skilled agents: evenly over ``SKILLED_QUALITY``."""
    low, high = SKILLED_QUALITY
    return low + (high - low) * index / max(1, count - 1)


def _skilled_agents(count: int, capacity: int, work_ms: float) -> list[Agent]:
    """`count` agents that declare the same, whose work is of truly different quality."""
    return [
        Agent(
            f"{SKILLED}-{index}",
            simulated_handler(
                SimulationProfile(work_s=work_ms / 1000, jitter=0.5, quality=skilled_quality(index, count)),
                random.Random(1000 + index),
            ),
            capabilities=[SKILLED],
            persona=Persona(),
            capacity=capacity,
            metadata={"simulated": "balance-bench"},
        )
        for index in range(count)
    ]


def _equal_agents(count: int, capacity: int, work_ms: float, capability: str) -> list[Agent]:
    """`count` agents alike in everything an agent declares (their simulated work has its own noise)."""
    profile = SimulationProfile(work_s=work_ms / 1000, jitter=0.5)
    return [
        Agent(
            f"{capability}-{index}",
            simulated_handler(profile, random.Random(index)),
            capabilities=[capability],
            persona=Persona(),
            capacity=capacity,
            metadata={"simulated": "balance-bench"},
        )
        for index in range(count)
    ]


async def measure_balance(stack: Stack, args: argparse.Namespace) -> BalanceResult:
    bus = await EventBus.connect(stack.nats_url, "bench")
    agent_bus = await EventBus.connect(stack.nats_url, "bench-agents")
    equal = _equal_agents(args.agents, args.capacity, args.work_ms, CAPABILITY)
    varied = make_simulated_agents(
        args.agents,
        prefix=VARIED,
        capabilities=[VARIED],
        capacity=args.capacity,
        profile=SimulationProfile(work_s=args.work_ms / 1000, jitter=0.5),
    )
    skilled = _skilled_agents(args.agents, args.capacity, args.work_ms)
    stalled = [
        StalledAgent(f"stalled-{i}", equal[0].handler, capabilities=[CAPABILITY], capacity=args.capacity)
        for i in range(args.stalled)
    ]
    watch = Watch()
    stop = asyncio.Event()
    follower: asyncio.Task[None] | None = None
    phases: list[Phase] = []
    timeout = 60 + args.heavy_tasks * args.work_ms / 1000
    plan: list[tuple[str, int, str | None, str, list[Agent], str]] = [
        ("light", args.tasks, args.strategy, CAPABILITY, equal, "completion"),
        ("light-adaptive", args.tasks, "adaptive", CAPABILITY, equal, "completion"),
        ("heavy", args.heavy_tasks, args.strategy, CAPABILITY, equal, "answer"),
        ("heavy-adaptive", args.heavy_tasks, "adaptive", CAPABILITY, equal, "answer"),
        ("varied", args.tasks, args.strategy, VARIED, varied, "completion"),
        ("skilled", args.skilled_tasks, "adaptive", SKILLED, skilled, "completion"),
        (
            "stalled",
            args.stalled_tasks if stalled else 0,
            args.strategy,
            CAPABILITY,
            [*equal, *stalled],
            "answer",
        ),
    ]
    try:
        await wait_for_services(bus, stack.instance_counts())
        follower = asyncio.create_task(bus.follow(watch.on_event, stop, start_seq=1))
        started: set[str] = set()
        for name, count, strategy, capability, agents, paced_by in plan:
            if count <= 0:
                continue
            for agent in agents:
                if agent.agent_id not in started:
                    await agent.start(agent_bus)
                    started.add(agent.agent_id)
            phase = Phase(
                name=name, tasks=count, strategy=strategy or "default", agents=len(agents), paced_by=paced_by
            )
            phases.append(phase)
            await _run_phase(stack, watch, phase, strategy, capability, args.concurrency, timeout)
        log = [item async for item in bus.read() if isinstance(item, Recorded)]
    finally:
        stop.set()
        if follower is not None:
            await asyncio.gather(follower, return_exceptions=True)
        for agent in [*equal, *varied, *skilled, *stalled]:
            if agent.bus is not None:
                await agent.stop()
        await agent_bus.close()
        await bus.close()
    _judge(log, phases, {agent.agent_id for agent in stalled})
    return BalanceResult(
        agents=args.agents,
        capacity=args.capacity,
        work_ms=args.work_ms,
        concurrency=args.concurrency,
        rebalance_after_s=stack.settings.rebalance_after_s,
        phases=phases,
    )


def run_balance(args: argparse.Namespace) -> BalanceResult:
    return on_private_stack(
        lambda stack: measure_balance(stack, args), rebalance_after_s=args.rebalance_after_s
    )


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def print_balance(result: BalanceResult) -> None:
    print(
        f"load balancing: {result.agents} agents x capacity {result.capacity}, work {result.work_ms:.0f} ms "
        f"(+-50%), {result.concurrency} concurrent clients over HTTP, REBALANCE_AFTER_S="
        f"{result.rebalance_after_s:g}"
    )
    for phase in result.phases:
        efficiency = "n/a" if phase.efficiency is None else f"{phase.efficiency:.4f}"
        target = result.target_of(phase)
        judged = "reported: agents of different skill" if target is None else f"target >= {target}"
        print(
            f"  {phase.name:<14} {phase.completed}/{phase.tasks} tasks, {phase.strategy}, "
            f"{phase.agents} agents, paced by {phase.paced_by}: efficiency {efficiency} ({judged}) "
            f"at {phase.mean_utilisation:.0%} mean utilisation"
        )
        print(
            f"  {'':<14} assignment p50 {_ms(phase.assign_p50_ms)}  p99 {_ms(phase.assign_p99_ms)}   "
            f"HTTP round trip p50 {percentile(phase.round_trips_ms, 50):.1f} ms  "
            f"p99 {percentile(phase.round_trips_ms, 99):.1f} ms   {phase.throughput_per_s:.0f} tasks/s"
        )
        if phase.name == "stalled":
            rescued = phase.rescue_s
            print(
                f"  {'':<14} {phase.stalled_assignments} assignment(s) to stalled agents, "
                f"{phase.moves} moved; "
                f"assignment -> started elsewhere p50 {percentile(rescued, 50):.2f} s, "
                f"max {max(rescued, default=float('nan')):.2f} s"
            )


def bench_balance(args: argparse.Namespace) -> int:
    result = run_balance(args)
    if args.json:
        print(json.dumps(asdict(result), default=str))
        return 0
    print_balance(result)
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    bench = commands.add_parser("balance", help="load-balancing efficiency and rescue of unstarted work")
    bench.add_argument("--agents", type=int, default=20)
    bench.add_argument("--capacity", type=int, default=4)
    bench.add_argument("--work-ms", type=float, default=100.0, help="mean duration of a simulated task")
    bench.add_argument("--tasks", type=int, default=100, help="tasks of the light phases")
    bench.add_argument(
        "--heavy-tasks", type=int, default=10_000, help="tasks of each heavy phase (0: skip them)"
    )
    bench.add_argument("--skilled-tasks", type=int, default=1000, help="tasks of the skilled phase (0: skip)")
    bench.add_argument("--concurrency", type=int, default=10, help="clients submitting at once")
    bench.add_argument(
        "--strategy",
        default="load_balanced",
        help="routing strategy of every phase but light-adaptive, heavy-adaptive and skilled",
    )
    bench.add_argument("--stalled", type=int, default=2, help="agents that never start their work (0: skip)")
    bench.add_argument("--stalled-tasks", type=int, default=200, help="tasks of the stalled phase")
    bench.add_argument("--rebalance-after-s", type=float, default=2.0, help="REBALANCE_AFTER_S of the Hive")
    bench.add_argument("--json", action="store_true", help="one JSON line instead of a table")
    bench.set_defaults(func=quiet(bench_balance))
