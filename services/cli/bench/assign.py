"""``hive bench assign``: time from a task's submission to its assignment, at an offered rate."""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from nats.aio.msg import Msg

from services.cli.bench.agent_process import spawn_agent_process, stop_agent_process, wait_for_agents
from services.cli.bench.common import on_private_stack, percentile, quiet, wait_for_readers, wait_for_services
from services.cli.bench.cpu import CpuMeter, cpu_seconds, per_task_ms
from services.cli.bench.throughput import parse_services
from services.cli.stack import SERVICE_NAMES, Stack
from shared.bus import EventBus
from shared.events import TaskAssigned, TaskSubmitted
from shared.natsclient import stored_at_ns
from shared.subjects import EVENTS_STREAM, events_of_type, parse_event_subject

CAPABILITY = "bench"
TASK_PREFIX = "bench-"
AGENTS = "agents"
DEFAULT_SERVICES = ("router", "recovery")
"""What the benchmark ran before it could run more: its figures stay comparable."""
FOLLOW_PACE_S = 0.05
"""How often the benchmark reads the submissions and assignments stored meanwhile, once it reads
them (``COUNT_PACE_S``)."""
READ_S = 30.0
"""The longest the benchmark waits, once the run is over, to have read every task's submission and
first assignment (past the run's own deadline)."""
COUNT_PACE_S = 0.1
"""How often the benchmark asks the server how many assignments were stored, while it does not read
them. Both ends of a latency are the server's store times, so reading them late changes no figure:
the submissions and assignments are read once as many assignments as tasks are stored. Read as
each is stored, even in bursts, they cost the server two deliveries per task and this process a
read of each while the system worked (the system's cores, shared with the benchmark, carried that);
a count is one request to the server, whatever the rate."""


class _Decided(msgspec.Struct):
    """What the benchmark reads of an assignment (about 2 KB): its task and when it was decided."""

    task_id: str
    decided_at_ts: float = 0.0


_DECIDED = msgspec.json.Decoder(_Decided)


def parse_assign_services(text: str) -> tuple[str, ...]:
    """``all`` (the five services, as ``hive up`` runs them) or a list as ``hive bench scale`` takes."""
    return SERVICE_NAMES if text.strip() == "all" else parse_services(text)


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
    services: list[str] = field(default_factory=lambda: list(DEFAULT_SERVICES))
    """The services that ran (one instance each, the routers apart)."""
    decide_p50_ms: float = float("nan")
    decide_p99_ms: float = float("nan")
    """Stored submission -> the router's decision (``decided_at_ts``): reading and waiting to decide."""
    store_p50_ms: float = float("nan")
    store_p99_ms: float = float("nan")
    """The router's decision -> its assignment stored: appending."""
    gc_pauses: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    """Per service instance, its garbage collections since it was ready (``ServiceHealth.gc``
    pauses, per generation: count, total_ms, max_ms); empty for a service that does not say."""
    cpu_ms_per_assignment: dict[str, float] = field(default_factory=dict)
    """CPU (user + system, from /proc) per assignment of each process, from the first submission
    to the last assignment: what a decision costs the router whatever the shared machine's clock."""
    balancer_moves: dict[str, int] = field(default_factory=dict)
    """The balancers' moves made and refused by the server (``moves_made``, ``moves_refused`` of
    their health): a refused move is an append and a catch-up spent for nothing."""
    slow_windows: list[dict[str, Any]] = field(default_factory=list)
    """The 50 ms ticks in which the slowest assignments waited, with each process's CPU ms then."""
    tail_cpu_ms: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Per process: mean CPU ms per 50 ms tick while p99-or-slower assignments waited, and in the
    other ticks of the run."""
    client_cpu_ms_per_assignment: float = float("nan")
    """CPU of the benchmark's own process (offering the tasks, reading their store times) per
    assignment: not the system's, but it runs on the same cores."""
    target_p99_ms: float = 20.0

    @property
    def met(self) -> bool:
        return self.assigned == self.tasks and self.p99_ms < self.target_p99_ms


class StoredTimes:
    """Server-side times (ns) at which each task's submission and first assignment were stored."""

    def __init__(self, expected: int) -> None:
        self.submitted: dict[str, int] = {}
        self.assigned: dict[str, int] = {}
        self.decided: dict[str, int] = {}
        """When the router decided each first assignment (its ``decided_at_ts``, ns; same clock)."""
        self.expected = expected
        self.complete = asyncio.Event()

    def on_submitted(self, task_id: str, stored_ns: int) -> None:
        self.submitted.setdefault(task_id, stored_ns)
        self._check()

    def on_assigned(self, task_id: str, stored_ns: int, decided_ns: int = 0) -> None:
        if task_id not in self.assigned and decided_ns:
            self.decided[task_id] = decided_ns
        self.assigned.setdefault(task_id, stored_ns)
        self._check()

    def _check(self) -> None:
        if len(self.assigned) >= self.expected and len(self.submitted) >= self.expected:
            self.complete.set()

    def latencies_ms(self) -> list[float]:
        return [
            (stored - self.submitted[task_id]) / 1e6
            for task_id, stored in self.assigned.items()
            if task_id in self.submitted
        ]

    def breakdown_ms(self) -> tuple[list[float], list[float]]:
        """Per task: stored submission -> decided, and decided -> stored assignment (where the tail
        is spent: reading and waiting to be decided, or appending)."""
        deciding: list[float] = []
        storing: list[float] = []
        for task_id, decided in self.decided.items():
            if task_id in self.submitted:
                deciding.append((decided - self.submitted[task_id]) / 1e6)
                storing.append((self.assigned[task_id] - decided) / 1e6)
        return deciding, storing

    def span_s(self) -> float:
        """From the first stored submission to the last stored assignment."""
        if not self.submitted or not self.assigned:
            return 0.0
        return (max(self.assigned.values()) - min(self.submitted.values())) / 1e9


async def open_counter(bus: EventBus, subject: str, start_seq: int, *, timeout_s: float) -> str:
    """A consumer nobody reads, from `start_seq` on `subject`: how many messages it has pending is
    how many were stored there since (``stored_count``). In memory, gone `timeout_s` after the
    last question."""
    return await bus.ephemeral_consumer(subject, start_seq, inactive_s=timeout_s)


async def stored_count(bus: EventBus, counter: str) -> int:
    """Messages stored on the counter's subject since its start (``open_counter``)."""
    info = await bus.js.consumer_info(EVENTS_STREAM, counter)
    return int(info.num_pending or 0)


async def wait_for_count(bus: EventBus, counter: str, count: int, deadline: float) -> None:
    """Until `count` messages were stored on the counter's subject, asking every ``COUNT_PACE_S``,
    or the `deadline` (``time.monotonic``) passed."""
    while time.monotonic() < deadline:
        if await stored_count(bus, counter) >= count:
            return
        await asyncio.sleep(COUNT_PACE_S)


def run_ns(pid: int) -> int | None:
    """Nanoseconds a process ran on a CPU (every thread, ``/proc/<pid>/task/*/schedstat``): finer
    than ``/proc/<pid>/stat``'s 10 ms ticks, to tell what ran in a 50 ms window."""
    total = 0
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for thread in threads:
        try:
            with open(f"/proc/{pid}/task/{thread}/schedstat", "rb") as stat:
                total += int(stat.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return total


class CpuTimeline:
    """Each process's CPU per tick (wall-clock ns, the clock of the server's store times), sampled
    in a thread of its own so that a busy event loop does not stretch the ticks."""

    def __init__(self, pids: dict[str, list[int]], tick_s: float = 0.05) -> None:
        self.pids = pids
        self.tick_s = tick_s
        self.samples: list[tuple[int, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-timeline", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> tuple[int, dict[str, int]]:
        found = {}
        for label, pids in self.pids.items():
            found[label] = sum(run_ns(pid) or 0 for pid in pids)
        return time.time_ns(), found

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.samples.append(self._sample())
            next_at += self.tick_s
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def ticks(self) -> list[tuple[int, int, dict[str, float]]]:
        """(start ns, end ns, CPU ms of each label) for each tick."""
        out = []
        for (t0, a), (t1, b) in zip(self.samples, self.samples[1:], strict=False):
            out.append((t0, t1, {label: (b[label] - a[label]) / 1e6 for label in b}))
        return out


def slow_windows(
    times: StoredTimes, ticks: list[tuple[int, int, dict[str, float]]], *, top: int = 5
) -> list[dict[str, Any]]:
    """The ticks in which the slowest assignments waited, with what each process ran then.

    For each tick: the assignments whose wait (stored submission -> stored assignment) overlaps
    it, and their worst latency; the `top` ticks by that worst latency, each with every process's
    CPU ms in it (a tick is ``CpuTimeline.tick_s``: 50 ms, so 50 means a whole core)."""
    if not ticks:
        return []
    starts = [t0 for t0, _, _ in ticks]
    worst = [0.0] * len(ticks)
    for task_id, stored in times.assigned.items():
        submitted = times.submitted.get(task_id)
        if submitted is None:
            continue
        latency = (stored - submitted) / 1e6
        first = max(0, bisect.bisect_right(starts, submitted) - 1)
        last = max(0, bisect.bisect_right(starts, stored) - 1)
        for index in range(first, min(last, len(ticks) - 1) + 1):
            worst[index] = max(worst[index], latency)
    order = sorted(range(len(ticks)), key=lambda i: -worst[i])[:top]
    return [
        {"at_ms": (ticks[i][0] - ticks[0][0]) / 1e6, "worst_ms": worst[i], "cpu_ms": ticks[i][2]}
        for i in sorted(order)
    ]


def tail_shares(
    times: StoredTimes, ticks: list[tuple[int, int, dict[str, float]]], *, q: float = 99
) -> dict[str, tuple[float, float]]:
    """Per process: its mean CPU ms per tick over the ticks where assignments beyond the `q`th
    percentile waited, and over all the others: who runs more when the tail happens."""
    if not ticks:
        return {}
    latencies = times.latencies_ms()
    cut = percentile(latencies, q)
    starts = [t0 for t0, _, _ in ticks]
    slow: set[int] = set()
    for task_id, stored in times.assigned.items():
        submitted = times.submitted.get(task_id)
        if submitted is None or (stored - submitted) / 1e6 < cut:
            continue
        first = max(0, bisect.bisect_right(starts, submitted) - 1)
        last = max(0, bisect.bisect_right(starts, stored) - 1)
        slow.update(range(first, min(last, len(ticks) - 1) + 1))
    lo = min(times.submitted.values(), default=0)
    hi = max(times.assigned.values(), default=0)
    active = [i for i, (t0, t1, _) in enumerate(ticks) if t1 >= lo and t0 <= hi]
    others = [i for i in active if i not in slow]
    shares = {}
    for label in ticks[0][2]:
        in_slow = sum(ticks[i][2][label] for i in slow) / max(1, len(slow))
        in_rest = sum(ticks[i][2][label] for i in others) / max(1, len(others))
        shares[label] = (in_slow, in_rest)
    return shares


def write_timeline(path: Path, times: StoredTimes, timeline: CpuTimeline) -> None:
    """Each task's store times (ns) and each process's CPU per tick, for a closer look."""
    record = {
        "submitted": times.submitted,
        "assigned": times.assigned,
        "decided": times.decided,
        "ticks": timeline.ticks(),
    }
    path.write_text(json.dumps(record))


def balancer_moves_of(replies: list[dict[str, Any]]) -> dict[str, int]:
    """Moves made and refused, summed over the balancer instances' health answers."""
    found = {"made": 0, "refused": 0}
    for reply in replies:
        if reply.get("service") == "balancer":
            details = reply.get("details") or {}
            found["made"] += int(details.get("moves_made") or 0)
            found["refused"] += int(details.get("moves_refused") or 0)
    return found if any(reply.get("service") == "balancer" for reply in replies) else {}


def gc_pauses_of(replies: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Each instance's collections by generation, from its health answer (``ServiceHealth.gc``)."""
    found: dict[str, dict[str, dict[str, float]]] = {}
    for reply in replies:
        pauses = (reply.get("gc") or {}).get("pauses")
        if isinstance(pauses, dict) and pauses:
            found[str(reply.get("instance"))] = pauses
    return found


def full_collections(pauses: dict[str, dict[str, dict[str, float]]]) -> str:
    """``router-0 2 (longest 3.1 ms, 2.0 ms CPU)``: each instance's full collections and the
    longest pause, wall-clock (the process may also wait for a core meanwhile) and CPU."""
    described = []
    for instance, by_gen in sorted(pauses.items()):
        full = by_gen.get("2", {})
        described.append(
            f"{instance} {int(full.get('count', 0))} (longest {full.get('max_ms', 0.0):.1f} ms, "
            f"{full.get('cpu_max_ms', 0.0):.1f} ms CPU)"
        )
    return ", ".join(described)


async def measure_assignment(
    stack: Stack,
    *,
    agents: int,
    tasks: int,
    rate: float,
    capacity: int,
    work_ms: float,
    timeline_path: Path | None = None,
) -> AssignResult:
    """Offer `tasks` at `rate`/s (open loop) and time submission -> assignment of each.

    Both ends are the server's store times, read back from the log: what is measured is the
    router's reaction, not this process's scheduling. The agents run in a niced process of their
    own so that they take CPU from the services as little as they can on a shared machine.
    """
    bus = await EventBus.connect(stack.nats_url, "bench")
    process = spawn_agent_process(
        stack.nats_url,
        prefix="bench",
        count=agents,
        capacity=capacity,
        capabilities=CAPABILITY,
        work_ms=work_ms,
        log=Path(stack.settings.hive_home) / "logs" / "agents.log",
        nice=10,
    )
    times = StoredTimes(tasks)
    stop_following = asyncio.Event()
    followers: list[asyncio.Task[None]] = []
    counters: list[str] = []
    try:
        await wait_for_services(bus, stack.instance_counts())
        await wait_for_agents(bus, agents)

        async def on_submitted(msg: Msg) -> None:
            parsed = parse_event_subject(msg.subject)
            if parsed is not None and parsed[1].startswith(TASK_PREFIX):
                times.on_submitted(parsed[1], stored_at_ns(msg))

        async def on_assigned(msg: Msg) -> None:
            try:
                decided = _DECIDED.decode(msg.data)  # the two fields read, not the whole event
            except msgspec.DecodeError:
                return
            if decided.task_id.startswith(TASK_PREFIX):
                times.on_assigned(decided.task_id, stored_at_ns(msg), int(decided.decided_at_ts * 1e9))

        async def pace() -> None:
            await asyncio.sleep(FOLLOW_PACE_S)

        start_seq = await bus.last_sequence() + 1
        assigned_subject = events_of_type("agent", TaskAssigned.event_type())
        counter = await open_counter(bus, assigned_subject, start_seq, timeout_s=120 + 2 * tasks / rate)
        counters.append(counter)

        def follow() -> None:
            """Read the submissions and assignments from the run's start on (and as stored)."""
            for handler, subject in (
                (on_submitted, events_of_type("task", TaskSubmitted.event_type())),
                (on_assigned, assigned_subject),
            ):
                followers.append(
                    asyncio.create_task(
                        bus.follow_raw(
                            handler, stop_following, subject_filter=subject, start_seq=start_seq, pace=pace
                        )
                    )
                )

        meter = CpuMeter({**stack.process_ids(), AGENTS: [process.pid]})
        meter.start()
        client_cpu_s = cpu_seconds(os.getpid()) or 0.0
        timeline = CpuTimeline(meter.pids)  # type: ignore[arg-type]
        timeline.start()
        begin = time.perf_counter()
        for index in range(tasks):
            delay = begin + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await bus.append(TaskSubmitted(task_id=f"{TASK_PREFIX}{index}", task_type=CAPABILITY), expected=0)
        deadline = time.monotonic() + 60 + tasks / rate
        await wait_for_count(bus, counter, tasks, deadline)
        await wait_for_readers(bus)  # their catching up is this run's CPU too
        timeline.stop()
        cpu_s = meter.stop()
        client_cpu_s = (cpu_seconds(os.getpid()) or 0.0) - client_cpu_s
        # The run is over (as many assignments as tasks stored, every reader caught up): what is
        # read now costs the system nothing it is measured for. A task assigned twice counted
        # twice: the reading follows what is still stored until each task has its assignment.
        follow()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(times.complete.wait(), max(READ_S, deadline - time.monotonic()))
        if timeline_path is not None:
            write_timeline(timeline_path, times, timeline)
        replies = await bus.gather_health(1.0, expect=frozenset(stack.services))
        gc_pauses = gc_pauses_of(replies)
        moves = balancer_moves_of(replies)
    finally:
        stop_following.set()
        await asyncio.gather(*followers, return_exceptions=True)
        for counter in counters:
            with contextlib.suppress(Exception):
                await bus.js.delete_consumer(EVENTS_STREAM, counter)
        stop_agent_process(process)
        await bus.close()
    latencies = times.latencies_ms()
    span = times.span_s()
    deciding, storing = times.breakdown_ms()
    return AssignResult(
        agents=agents,
        tasks=tasks,
        offered_rate=rate,
        assigned=len(latencies),
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        p99_ms=percentile(latencies, 99),
        max_ms=max(latencies, default=float("nan")),
        throughput_per_s=len(latencies) / span if span > 0 else 0.0,
        services=list(stack.services),
        gc_pauses=gc_pauses,
        balancer_moves=moves,
        decide_p50_ms=percentile(deciding, 50),
        decide_p99_ms=percentile(deciding, 99),
        store_p50_ms=percentile(storing, 50),
        store_p99_ms=percentile(storing, 99),
        cpu_ms_per_assignment=per_task_ms(cpu_s, len(latencies)),
        client_cpu_ms_per_assignment=client_cpu_s * 1000 / len(latencies) if latencies else float("nan"),
        slow_windows=slow_windows(times, timeline.ticks()),
        tail_cpu_ms=tail_shares(times, timeline.ticks()),
    )


def bench_assign(args: argparse.Namespace) -> int:
    result = on_private_stack(
        lambda stack: measure_assignment(
            stack,
            agents=args.agents,
            tasks=args.tasks,
            rate=args.rate,
            capacity=args.capacity,
            work_ms=args.work_ms,
            timeline_path=args.timeline,
        ),
        services=args.services,
        scale={"router": args.routers},
        background_nice=args.nice_background,
    )
    if args.json:
        print(json.dumps(asdict(result)))
    else:
        print(
            f"assignment latency: {args.agents} agents x capacity {args.capacity}, {args.tasks} tasks "
            f"offered at {args.rate:.0f}/s, {args.routers} router(s); services: {', '.join(result.services)}"
            + (f"; all but the router niced +{args.nice_background}" if args.nice_background else "")
        )
        print(f"  assigned     {result.assigned}/{result.tasks}")
        print(f"  p50          {result.p50_ms:.2f} ms")
        print(f"  p95          {result.p95_ms:.2f} ms")
        print(f"  p99          {result.p99_ms:.2f} ms   (target < {result.target_p99_ms:.0f} ms)")
        print(f"  max          {result.max_ms:.2f} ms")
        print(
            f"  of which     submitted -> decided p50 {result.decide_p50_ms:.2f}, p99 "
            f"{result.decide_p99_ms:.2f} ms; decided -> stored p50 {result.store_p50_ms:.2f}, p99 "
            f"{result.store_p99_ms:.2f} ms"
        )
        print(f"  throughput   {result.throughput_per_s:.0f} tasks/s")
        cpu = ", ".join(
            f"{label} {ms:.3f}"
            for label, ms in sorted(result.cpu_ms_per_assignment.items(), key=lambda i: -i[1])
        )
        print(f"  CPU ms/assignment  {cpu}")
        print(
            f"  bench client {result.client_cpu_ms_per_assignment:.3f} ms/assignment "
            "(this process: not the system's, not counted above)"
        )
        if result.tail_cpu_ms:
            tail = ", ".join(
                f"{label} {slow:.1f}/{rest:.1f}"
                for label, (slow, rest) in sorted(result.tail_cpu_ms.items(), key=lambda i: i[1][1] - i[1][0])
            )
            print(f"  CPU ms/50 ms tick while p99 waited / otherwise  {tail}")
        for window in result.slow_windows:
            busy = ", ".join(
                f"{label} {ms:.0f}"
                for label, ms in sorted(window["cpu_ms"].items(), key=lambda i: -i[1])
                if ms >= 1
            )
            print(f"  slow tick    +{window['at_ms']:.0f} ms worst {window['worst_ms']:.1f} ms: {busy}")
        if result.balancer_moves:
            moves = result.balancer_moves
            print(f"  balancer     {moves['made']} moves made, {moves['refused']} refused by the server")
        if result.gc_pauses:
            print(f"  full GCs     {full_collections(result.gc_pauses)}  (since each was ready)")
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
    assign.add_argument(
        "--services",
        type=parse_assign_services,
        default=DEFAULT_SERVICES,
        help="comma-separated services to run, or all (the five, as hive up); default: router,recovery",
    )
    assign.add_argument(
        "--nice-background",
        type=int,
        default=0,
        metavar="N",
        help="start every service but the router N steps nicer, as hive up --nice-background; default 0",
    )
    assign.add_argument("--json", action="store_true", help="one JSON line instead of a table")
    assign.add_argument(
        "--timeline",
        type=Path,
        default=None,
        help="also write each task's store times and each process's CPU per 50 ms tick (JSON) here",
    )
    assign.set_defaults(func=quiet(bench_assign))
