"""``hive bench keys``: concurrency keys at scale, against the same work without keys.

1,000 keys (by default) with limits of 1-5 drawn from a seed, each key given ``rounds`` times its
limit in tasks, and a fleet whose capacity equals the sum of the limits: ideally both runs keep the
fleet full and end together. Printed from the log alone (``key_figures``): limit violations (a key
whose peak running exceeded its limit; must be 0), slots still held at the end, slot utilisation
(tasks running against what the limits allowed given the work left; target >= 90%) and throughput
against the run without keys (target within 20%).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from services.cli.bench.agent_process import spawn_agent_process, stop_agent_process, wait_for_agents
from services.cli.bench.common import on_private_stack, quiet, wait_for_services
from services.cli.bench.cpu import CpuMeter, per_task_ms
from services.cli.bench.key_figures import fill_time, key_peaks, refill_gaps, slot_use, violations
from services.cli.stack import Stack
from shared.bus import EventBus
from shared.events import AnyEvent, TaskAssigned, TaskCompleted, TaskSubmitted
from shared.recorded import Recorded
from shared.subjects import events_of_type

CAPABILITY = "keyed"
UTILISATION_TARGET = 0.90
THROUGHPUT_TOLERANCE = 0.20


@dataclass(frozen=True)
class KeyRun:
    keyed: bool
    tasks: int
    completed: int
    elapsed_s: float
    throughput_per_s: float
    """Tasks completed per second, first submission to last completion."""
    assignments_per_s: float
    """Assignments per second between the 10th and 90th percentile of them."""
    violations: int
    worst: dict[str, list[int]]
    held_at_end: int
    utilisation: float
    fill_s: float | None
    """Seconds until 90% of the slots ran at once."""
    refill_p50_ms: float
    refill_p99_ms: float
    """How long a slot freed while its key's tasks waited stayed empty."""
    cpu_ms_per_task: dict[str, float]
    """CPU of each process per completed task, over the run (from /proc)."""


def limits_for(keys: int, low: int, high: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    return {f"bk-{index}": rng.randint(low, high) for index in range(keys)}


async def measure(
    stack: Stack, *, keyed: bool, limits: dict[str, int], agents: int, rounds: int, work_ms: float
) -> KeyRun:
    bus = await EventBus.connect(stack.nats_url, "bench")
    capacity = math.ceil(sum(limits.values()) / agents)
    process = spawn_agent_process(
        stack.nats_url,
        prefix="keyed",
        count=agents,
        capacity=capacity,
        capabilities=CAPABILITY,
        work_ms=work_ms,
        log=Path(stack.settings.hive_home) / "logs" / "agents.log",
        nice=10,
    )
    tasks = [(f"{key}-{i}", key) for key, limit in limits.items() for i in range(limit * rounds)]
    random.Random(1).shuffle(tasks)
    done = asyncio.Event()
    seen: set[str] = set()
    stop_following = asyncio.Event()
    try:
        await wait_for_services(bus, stack.instance_counts())
        await wait_for_agents(bus, agents)
        start_seq = await bus.last_sequence() + 1

        def on_completed(recorded: Recorded) -> None:
            seen.add(getattr(recorded.event, "task_id", ""))
            if len(seen) >= len(tasks):
                done.set()

        follower = asyncio.create_task(
            bus.follow(
                on_completed,
                stop_following,
                subject_filter=events_of_type("task", TaskCompleted.event_type()),
                start_seq=start_seq,
            )
        )
        meter = CpuMeter({**stack.process_ids(), "agents": [process.pid]})
        meter.start()
        begin = time.perf_counter()
        pending = iter(tasks)

        async def submit() -> None:
            for task_id, key in pending:
                await bus.append(
                    TaskSubmitted(
                        task_id=task_id, task_type=CAPABILITY, concurrency_key=key if keyed else None
                    ),
                    expected=0,
                )

        await asyncio.gather(*(submit() for _ in range(8)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout=120 + len(tasks) / 20)
        elapsed = time.perf_counter() - begin
        cpu_s = meter.stop()
        stop_following.set()
        await asyncio.gather(follower, return_exceptions=True)
        events: list[AnyEvent] = [
            item.event async for item in bus.read(start_seq=start_seq) if isinstance(item, Recorded)
        ]
    finally:
        stop_following.set()
        stop_agent_process(process)
        await bus.close()
    peaks, at_end = key_peaks(events)
    broken = violations(peaks, limits) if keyed else {}
    use = slot_use(events, limits if keyed else {}, capacity * agents)
    assigned = sorted(e.ts for e in events if isinstance(e, TaskAssigned))
    gaps = sorted(refill_gaps(events)) or [0.0]
    return KeyRun(
        keyed=keyed,
        tasks=len(tasks),
        completed=len(seen),
        elapsed_s=elapsed,
        throughput_per_s=len(seen) / elapsed if elapsed > 0 else 0.0,
        assignments_per_s=_middle_rate(assigned),
        violations=len(broken),
        worst={key: list(pair) for key, pair in sorted(broken.items())[:5]},
        held_at_end=sum(at_end.values()),
        utilisation=use.utilisation,
        fill_s=fill_time(events, min(sum(limits.values()), capacity * agents)),
        refill_p50_ms=1000 * gaps[len(gaps) // 2],
        refill_p99_ms=1000 * gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))],
        cpu_ms_per_task=per_task_ms(cpu_s, len(seen)),
    )


def _middle_rate(times: list[float]) -> float:
    if len(times) < 10:
        return 0.0
    first, last = round(0.1 * (len(times) - 1)), round(0.9 * (len(times) - 1))
    span = times[last] - times[first]
    return (last - first) / span if span > 0 else 0.0


def run(args: argparse.Namespace) -> tuple[KeyRun, KeyRun]:
    limits = limits_for(args.keys, args.min_limit, args.max_limit, args.seed)
    environment = ",".join(f"{key}={limit}" for key, limit in limits.items())
    runs = []
    for keyed in (True, False):
        runs.append(
            on_private_stack(
                lambda stack, keyed=keyed: measure(  # type: ignore[misc]
                    stack,
                    keyed=keyed,
                    limits=limits,
                    agents=args.agents,
                    rounds=args.rounds,
                    work_ms=args.work_ms,
                ),
                services=("router", "recovery"),
                concurrency_limits=environment if keyed else "",
            )
        )
    return runs[0], runs[1]


def bench_keys(args: argparse.Namespace) -> int:
    keyed, plain = run(args)
    ratio = keyed.throughput_per_s / plain.throughput_per_s if plain.throughput_per_s else 0.0
    if args.json:
        print(json.dumps({"keyed": asdict(keyed), "plain": asdict(plain), "throughput_ratio": ratio}))
        return 0
    print(
        f"concurrency keys: {args.keys} keys with limits {args.min_limit}-{args.max_limit} "
        f"(seed {args.seed}), "
        f"{args.rounds} x its limit in tasks per key ({keyed.tasks} tasks), {args.agents} agents whose "
        f"capacity sums to the limits', {args.work_ms:g} ms per task"
    )
    print(f"  completed           {keyed.completed}/{keyed.tasks} in {keyed.elapsed_s:.1f} s")
    print(f"  limit violations    {keyed.violations}   (target 0; replayed from the log) {keyed.worst or ''}")
    print(f"  slots held at end   {keyed.held_at_end}   (a leak would show here)")
    print(
        f"  slot utilisation    {keyed.utilisation:.1%}   (target >= {UTILISATION_TARGET:.0%}: running vs "
        "what the limits allowed, given the work left)"
    )
    print(
        f"  throughput          {keyed.throughput_per_s:.0f} tasks/s with keys, {plain.throughput_per_s:.0f} "
        f"without ({ratio:.0%}; target >= {1 - THROUGHPUT_TOLERANCE:.0%})"
    )
    print(
        f"  assignments         {keyed.assignments_per_s:.0f}/s with keys, {plain.assignments_per_s:.0f}/s "
        "without (10th-90th percentile)"
    )
    fill = f"{keyed.fill_s:.1f} s" if keyed.fill_s is not None else "never"
    print(
        f"  filling the slots   {fill} to run 90% of them at once; a slot freed while its key's tasks "
        f"waited stayed empty p50 {keyed.refill_p50_ms:.0f} ms, p99 {keyed.refill_p99_ms:.0f} ms"
    )
    for measured in (keyed, plain):
        cpu = ", ".join(
            f"{label} {ms:.2f}" for label, ms in sorted(measured.cpu_ms_per_task.items(), key=lambda i: -i[1])
        )
        print(f"  CPU ms/task {'with' if measured.keyed else 'without'} keys  {cpu}")
    met = (
        keyed.violations == 0
        and keyed.held_at_end == 0
        and keyed.utilisation >= UTILISATION_TARGET
        and ratio >= 1 - THROUGHPUT_TOLERANCE
        and keyed.completed == keyed.tasks
    )
    print(f"  verdict             {'targets met' if met else 'targets NOT met'}")
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    bench = commands.add_parser("keys", help="concurrency keys at scale: violations, slot use, throughput")
    bench.add_argument("--keys", type=int, default=1000)
    bench.add_argument("--min-limit", type=int, default=1)
    bench.add_argument("--max-limit", type=int, default=5)
    bench.add_argument("--rounds", type=int, default=3, help="tasks per key: this many times its limit")
    bench.add_argument("--agents", type=int, default=20)
    bench.add_argument("--work-ms", type=float, default=10_000.0, help="how long each task runs")
    bench.add_argument("--seed", type=int, default=7)
    bench.add_argument("--json", action="store_true", help="one JSON line instead of a table")
    bench.set_defaults(func=quiet(bench_keys))
