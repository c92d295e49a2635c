"""``hive bench assign``: time from a task's submission to its assignment, at an offered rate."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from shared.agent.simulated import SimulationProfile, make_simulated_agents
from shared.bus import EventBus, Recorded
from shared.cli.bench.common import percentile, quiet, run, wait_for_services
from shared.cli.stack import Stack, local_stack
from shared.events import TaskSubmitted
from shared.subjects import events_of_type


@dataclass
class AssignResult:
    agents: int
    tasks: int
    offered_rate: float
    assigned: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    throughput_per_s: float
    target_p99_ms: float = 20.0

    @property
    def met(self) -> bool:
        return self.assigned == self.tasks and self.p99_ms < self.target_p99_ms


async def measure_assignment(
    stack: Stack, *, agents: int, tasks: int, rate: float, capacity: int, work_ms: float
) -> AssignResult:
    """Offer `tasks` at `rate`/s (open loop) and time submission -> assignment of each."""
    bus = await EventBus.connect(stack.nats_url, "bench")
    agent_bus = await EventBus.connect(stack.nats_url, "bench-agents")
    fleet = make_simulated_agents(
        agents,
        prefix="bench",
        capabilities=["bench"],
        capacity=capacity,
        profile=SimulationProfile(work_s=work_ms / 1000, jitter=0.1),
    )
    try:
        await wait_for_services(bus, {name: stack.scale.get(name, 1) for name in stack.services})
        for agent in fleet:
            await agent.start(agent_bus)
        submitted_at: dict[str, float] = {}
        latencies: list[float] = []
        done = asyncio.Event()

        def on_assigned(recorded: Recorded) -> None:
            event = recorded.event
            started = submitted_at.pop(getattr(event, "task_id", ""), None)
            if started is not None:
                latencies.append((time.perf_counter() - started) * 1000)
                if len(latencies) == tasks:
                    done.set()

        stop_following = asyncio.Event()
        follower = asyncio.create_task(
            bus.follow(
                on_assigned,
                stop_following,
                subject_filter=events_of_type("agent", "task_assigned"),
                start_seq=await bus.last_sequence() + 1,
            )
        )
        begin = time.perf_counter()
        for index in range(tasks):
            slot = begin + index / rate
            delay = slot - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task_id = f"bench-{index}"
            submitted_at[task_id] = time.perf_counter()
            await bus.append(TaskSubmitted(task_id=task_id, task_type="bench"), expected=0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout=60 + tasks / rate)
        elapsed = time.perf_counter() - begin
        stop_following.set()
        await follower
    finally:
        for agent in fleet:
            await agent.stop()
        await agent_bus.close()
        await bus.close()
    return AssignResult(
        agents=agents,
        tasks=tasks,
        offered_rate=rate,
        assigned=len(latencies),
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        p99_ms=percentile(latencies, 99),
        max_ms=max(latencies, default=float("nan")),
        throughput_per_s=len(latencies) / elapsed if elapsed > 0 else 0.0,
    )


def bench_assign(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="hive-bench-") as home:
        stack = local_stack(Path(home), services=("router", "recovery"), scale={"router": args.routers})
        stack.start()
        try:
            result: AssignResult = run(
                measure_assignment(
                    stack,
                    agents=args.agents,
                    tasks=args.tasks,
                    rate=args.rate,
                    capacity=args.capacity,
                    work_ms=args.work_ms,
                )
            )
        finally:
            stack.stop()
    if args.json:
        print(json.dumps(asdict(result)))
    else:
        print(
            f"assignment latency: {args.agents} agents x capacity {args.capacity}, {args.tasks} tasks "
            f"offered at {args.rate:.0f}/s, {args.routers} router(s)"
        )
        print(f"  assigned     {result.assigned}/{result.tasks}")
        print(f"  p50          {result.p50_ms:.2f} ms")
        print(f"  p95          {result.p95_ms:.2f} ms")
        print(f"  p99          {result.p99_ms:.2f} ms   (target < {result.target_p99_ms:.0f} ms)")
        print(f"  max          {result.max_ms:.2f} ms")
        print(f"  throughput   {result.throughput_per_s:.0f} tasks/s")
        print(f"  verdict      {'target met' if result.met else 'target NOT met'}")
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    assign = commands.add_parser("assign", help="assignment latency and throughput")
    assign.add_argument("--agents", type=int, default=20)
    assign.add_argument("--capacity", type=int, default=10)
    assign.add_argument("--tasks", type=int, default=5000)
    assign.add_argument("--rate", type=float, default=500.0, help="tasks offered per second")
    assign.add_argument("--work-ms", type=float, default=50.0, help="duration of a simulated task")
    assign.add_argument("--routers", type=int, default=1)
    assign.add_argument("--json", action="store_true", help="one JSON line instead of a table")
    assign.set_defaults(func=quiet(bench_assign))
