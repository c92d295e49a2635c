"""``hive bench throughput``: tasks carried through their whole lifecycle per second, sustained.

A private Hive (its own nats-server and the services asked for, every one by default, as
``hive up`` runs them) takes a stream of tasks kept ``--outstanding`` deep: a task is submitted as
soon as one completes. Each goes submitted -> assigned -> started -> completed by simulated agents
that answer at once (``hive agent --work-ms 0`` in a process of its own, niced so that the services
come first: in production agents run elsewhere). The sustained rate is measured between the 10th
and the 90th percentile of completions, as the observer saw them arrive in the log, so neither the
ramp-up nor the drain counts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from services.cli.bench.agent_process import spawn_agent_process, stop_agent_process, wait_for_agents
from services.cli.bench.common import on_private_stack, quiet, wait_for_readers, wait_for_services
from services.cli.bench.cpu import CpuMeter, per_task_ms
from services.cli.stack import SERVICE_NAMES, Stack
from shared.bus import EventBus
from shared.events import TaskCompleted, TaskSubmitted
from shared.recorded import Recorded
from shared.subjects import events_of_type

TARGET_TPS = 2000.0
TARGET_CPU_MS = 2.5
"""CPU per completed task of the whole system (services, nats-server, agents) Hive aims at."""
CAPABILITY = "lifecycle"
CLIENT = "bench client"
AGENTS = "agents"


@dataclass
class ThroughputResult:
    services: list[str]
    agents: int
    capacity: int
    tasks: int
    outstanding: int
    completed: int
    elapsed_s: float
    sustained_per_s: float
    """Completions per second between the 10th and the 90th percentile of completions."""
    overall_per_s: float
    cpus: int
    cpu_ms_per_task: dict[str, float]
    """CPU (user + system, from /proc) per completed task of each process, first submission to last
    completion: each service instance, nats-server, the agents' process and the benchmark's client."""
    delivered_per_task: dict[str, dict[str, float]]
    """Messages each service instance received per completed task, by consumer."""
    decided: dict[str, int] = field(default_factory=dict)
    """What each service instance decided over the run: assignments for a router, work events
    handled for the others."""
    refused: dict[str, int] = field(default_factory=dict)
    """Decisions of each router instance the server refused over the run (another instance had
    given the agent work the decision did not see): each was decided again, at a cost."""
    target_per_s: float = TARGET_TPS
    target_cpu_ms: float = TARGET_CPU_MS

    @property
    def system_cpu_ms_per_task(self) -> float:
        """Everything but the benchmark's own client: the services, nats-server and the agents."""
        return sum(ms for label, ms in self.cpu_ms_per_task.items() if label != CLIENT)

    @property
    def met(self) -> bool:
        return self.completed == self.tasks and self.sustained_per_s >= self.target_per_s


async def measure_throughput(
    stack: Stack, *, agents: int, capacity: int, tasks: int, outstanding: int, submitters: int = 8
) -> ThroughputResult:
    bus = await EventBus.connect(stack.nats_url, "bench")
    process = spawn_agent_process(
        stack.nats_url,
        prefix="lifecycle",
        count=agents,
        capacity=capacity,
        capabilities=CAPABILITY,
        work_ms=0,
        log=Path(stack.settings.hive_home) / "logs" / "agents.log",
        nice=10,
    )
    completions: list[float] = []
    seen: set[str] = set()
    done = asyncio.Event()
    room = asyncio.Semaphore(outstanding)
    stop_following = asyncio.Event()
    follower: asyncio.Task[None] | None = None
    try:
        await wait_for_services(bus, stack.instance_counts())
        await wait_for_agents(bus, agents)

        def on_completed(recorded: Recorded) -> None:
            task_id = getattr(recorded.event, "task_id", "")
            if task_id.startswith("tp-") and task_id not in seen:
                seen.add(task_id)
                completions.append(time.perf_counter())
                room.release()
                if len(seen) == tasks:
                    done.set()

        follower = asyncio.create_task(
            bus.follow(
                on_completed,
                stop_following,
                subject_filter=events_of_type("task", TaskCompleted.event_type()),
                start_seq=await bus.last_sequence() + 1,
            )
        )
        numbers = iter(range(tasks))
        meter = CpuMeter({**stack.process_ids(), AGENTS: [process.pid], CLIENT: [os.getpid()]})
        delivered_before = await delivered_by_instance(bus)
        decided_before, refused_before = await decisions_by_instance(bus)
        meter.start()
        begin = time.perf_counter()

        async def submit() -> None:
            for index in numbers:
                await room.acquire()
                await bus.append(TaskSubmitted(task_id=f"tp-{index}", task_type=CAPABILITY), expected=0)

        await asyncio.gather(*(submit() for _ in range(submitters)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout=120 + tasks / 100)
        elapsed = time.perf_counter() - begin
        await wait_for_readers(bus)  # their catching up is this run's CPU too
        cpu_s = meter.stop()
        delivered_after = await delivered_by_instance(bus)
        decided_after, refused_after = await decisions_by_instance(bus)
    finally:
        stop_following.set()
        if follower is not None:
            await asyncio.gather(follower, return_exceptions=True)
        stop_agent_process(process)
        await bus.close()
    return ThroughputResult(
        services=list(stack.services),
        agents=agents,
        capacity=capacity,
        tasks=tasks,
        outstanding=outstanding,
        completed=len(completions),
        elapsed_s=elapsed,
        sustained_per_s=sustained_rate(completions),
        overall_per_s=len(completions) / elapsed if elapsed > 0 else 0.0,
        cpus=os.cpu_count() or 0,
        cpu_ms_per_task=per_task_ms(cpu_s, len(completions)),
        delivered_per_task=deliveries_per_task(delivered_before, delivered_after, len(completions)),
        decided=counted_between(decided_before, decided_after),
        refused=counted_between(refused_before, refused_after),
    )


async def delivered_by_instance(bus: EventBus) -> dict[str, dict[str, int]]:
    """Messages received so far by each service instance's consumers, from their health answers."""
    found: dict[str, dict[str, int]] = {}
    for reply in await bus.gather_health(1.0):
        delivered = reply.get("delivered")
        if isinstance(delivered, dict):
            found[str(reply.get("instance"))] = {str(k): int(v) for k, v in delivered.items()}
    return found


async def decisions_by_instance(bus: EventBus) -> tuple[dict[str, int], dict[str, int]]:
    """Decisions so far of each service instance, from their health answers: a router's
    assignments (it claims its work rather than handling it), the work events others handled;
    and each router's decisions the server refused."""
    decided: dict[str, int] = {}
    refused: dict[str, int] = {}
    for reply in await bus.gather_health(1.0):
        instance = str(reply.get("instance"))
        details = reply.get("details")
        details = details if isinstance(details, dict) else {}
        router = reply.get("service") == "router"
        made = details.get("assignments_made")
        count = made if router and isinstance(made, int) else reply.get("handled")
        if isinstance(count, int):
            decided[instance] = count
        conflicts = details.get("conflicts")
        if router and isinstance(conflicts, int):
            refused[instance] = conflicts
    return decided, refused


def counted_between(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Each instance's count at the second health reading less its count at the first."""
    return {name: count - before.get(name, 0) for name, count in sorted(after.items())}


def deliveries_per_task(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], tasks: int
) -> dict[str, dict[str, float]]:
    """Messages per task each instance's consumers received between two health readings."""
    if not tasks:
        return {}
    return {
        instance: {
            consumer: (count - before.get(instance, {}).get(consumer, 0)) / tasks
            for consumer, count in sorted(counts.items())
        }
        for instance, counts in sorted(after.items())
    }


def sustained_rate(times: list[float], low: float = 0.1, high: float = 0.9) -> float:
    """Completions per second between the `low` and `high` fractions of them (0 when too few)."""
    if len(times) < 10:
        return 0.0
    ordered = sorted(times)
    first, last = round(low * (len(ordered) - 1)), round(high * (len(ordered) - 1))
    span = ordered[last] - ordered[first]
    return (last - first) / span if span > 0 else 0.0


def parse_services(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in SERVICE_NAMES]
    if unknown or "router" not in names:
        raise argparse.ArgumentTypeError(
            f"services among {', '.join(SERVICE_NAMES)}, router included (got {text!r})"
        )
    if "gateway" in names and set(names) != set(SERVICE_NAMES):
        raise argparse.ArgumentTypeError("the gateway reports healthy only beside all four other services")
    return names


def run_throughput(args: argparse.Namespace, scale: dict[str, int] | None = None) -> ThroughputResult:
    return on_private_stack(
        lambda stack: measure_throughput(
            stack,
            agents=args.agents,
            capacity=args.capacity,
            tasks=args.tasks,
            outstanding=args.outstanding,
        ),
        services=args.services,
        scale=scale,
    )


def bench_throughput(args: argparse.Namespace) -> int:
    result = run_throughput(args)
    if args.json:
        print(json.dumps({**asdict(result), "met": result.met}))
        return 0
    print(
        f"throughput (full lifecycle): {result.tasks} tasks kept {result.outstanding} deep, "
        f"{result.agents} agents x capacity {result.capacity} answering at once, services "
        f"{', '.join(result.services)}, {result.cpus} CPU(s)"
    )
    print(f"  completed    {result.completed}/{result.tasks} in {result.elapsed_s:.1f} s")
    print(
        f"  sustained    {result.sustained_per_s:.0f} tasks/s   (target >= {result.target_per_s:.0f}; "
        "between the 10th and 90th percentile of completions)"
    )
    print(f"  overall      {result.overall_per_s:.0f} tasks/s   (first submission to last completion)")
    print(f"  verdict      {'target met' if result.met else 'target NOT met'}")
    print_costs(result)
    return 0


def print_costs(result: ThroughputResult) -> None:
    """CPU per completed task of each process and what each service instance read per task."""
    print(
        f"  CPU per task {result.system_cpu_ms_per_task:.2f} ms   (services + nats-server + agents, "
        f"user + system from /proc; target <= {result.target_cpu_ms:g} ms)"
    )
    print(f"    {'process':<16} {'CPU ms/task':>11}   messages received per task")
    for label, ms in sorted(result.cpu_ms_per_task.items(), key=lambda item: -item[1]):
        received = result.delivered_per_task.get(label, {})
        detail = ", ".join(f"{consumer} {count:.2f}" for consumer, count in received.items())
        print(f"    {label:<16} {ms:>11.2f}   {detail}")


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    bench = commands.add_parser("throughput", help="tasks per second through their whole lifecycle")
    bench.add_argument("--tasks", type=int, default=10_000)
    bench.add_argument("--outstanding", type=int, default=400, help="tasks submitted and not completed")
    bench.add_argument("--agents", type=int, default=20)
    bench.add_argument("--capacity", type=int, default=50)
    bench.add_argument(
        "--services",
        type=parse_services,
        default=SERVICE_NAMES,
        help="comma-separated services to run (default: all five, as hive up)",
    )
    bench.add_argument("--json", action="store_true", help="one JSON line instead of a table")
    bench.set_defaults(func=quiet(bench_throughput))
