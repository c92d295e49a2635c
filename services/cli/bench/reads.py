"""``hive bench reads``: the read side with a long history: rebuild rate, read latency, memory.

A private nats-server gets ``--tasks`` finished tasks written straight into the stream (submitted,
assigned with its explanation, started, completed: what the services would have appended), then a
gateway starts on it with no query model file, so it rebuilds its model from the whole log. The
benchmark reports the model's rebuild rate (events per second, as the gateway measured its own
catch-up), then ``--clients`` concurrent keep-alive clients read ``GET /api/v1/tasks/{id}`` for
random tasks and filtered pages of ``--page`` tasks at random positions, p50/p99 each; the
gateway's CPU time (from /proc) beside each rate, and its resident memory once done.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from services.cli.bench.common import percentile, quiet
from services.cli.bench.cpu import CpuMeter
from services.cli.bench.history import TASK_TYPES, History, history_chunks, write_straight
from services.cli.bench.http import JsonClient
from services.cli.stack import Stack, local_stack
from services.gateway.query.filters import encode_cursor
from shared.bus import EventBus
from shared.service import run_async

REBUILD_TARGET_PER_S = 20_000.0
P99_TARGET_MS = 10.0
RSS_TARGET_MIB = 200.0


@dataclass
class ReadsResult:
    tasks: int
    events: int
    write_per_s: float
    """Events written straight into the stream per second (the benchmark's own setup)."""
    gateway_start_s: float
    """From the gateway's start to its answering (its projection caught up with the log)."""
    rebuild_events: int
    rebuild_s: float
    rebuild_per_s: float
    rebuild_cpu_s: float
    """Gateway CPU seconds while its query model caught up (its projection had already)."""
    rebuild_nats_cpu_s: float
    clients: int
    get_requests: int
    get_p50_ms: float
    get_p99_ms: float
    get_per_s: float
    get_cpu_cores: float
    get_client_cores: float
    """CPU of the benchmark's own clients (same machine), beside the gateway's."""
    page: int
    page_requests: int
    page_p50_ms: float
    page_p99_ms: float
    page_per_s: float
    page_cpu_cores: float
    page_client_cores: float
    page_items_mean: float
    rss_mib: float
    peak_rss_mib: float
    cpus: int

    @property
    def met(self) -> bool:
        return (
            self.rebuild_per_s >= REBUILD_TARGET_PER_S
            and self.get_p99_ms < P99_TARGET_MS
            and self.page_p99_ms < P99_TARGET_MS
            and self.rss_mib < RSS_TARGET_MIB
        )


def memory_mib(pid: int) -> tuple[float, float]:
    """(resident, peak resident) memory of a process in MiB (``/proc/<pid>/status``)."""
    found: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) / 1024
    return found.get("VmRSS", 0.0), found.get("VmHWM", 0.0)


async def _query_model(bus: EventBus, timeout: float) -> dict[str, Any]:
    """The gateway's query model as its health reports it, once it has caught up with the log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for reply in await bus.gather_health(0.5, expect=frozenset({"gateway"})):
            if reply.get("service") != "gateway":
                continue
            details = reply.get("details", {}).get("query_model")
            if isinstance(details, dict) and not details.get("catching_up", True):
                return details
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the gateway's query model did not catch up within {timeout}s")


async def _gateway_answers(bus: EventBus, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = await bus.gather_health(0.5, expect=frozenset({"gateway"}))
        if any(r.get("service") == "gateway" and r.get("status") == "ok" for r in replies):
            return
    raise RuntimeError(f"the gateway did not answer within {timeout}s")


async def _drive(url: str, paths: list[str], clients: int) -> tuple[list[float], float, list[bytes]]:
    """Each path requested once, by `clients` keep-alive clients; latencies (ms), wall time, bodies."""
    queue = iter(paths)
    latencies: list[float] = []
    bodies: list[bytes] = []

    async def client() -> None:
        async with JsonClient(url) as http:
            for path in queue:
                started = time.perf_counter()
                status, body = await http.get(path)
                latencies.append((time.perf_counter() - started) * 1000)
                if status != 200:
                    raise RuntimeError(f"GET {path} answered {status}: {body[:300]!r}")
                bodies.append(body)

    begin = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, time.perf_counter() - begin, bodies


async def measure_reads(
    stack: Stack, *, tasks: int, clients: int, gets: int, pages: int, page: int, seed: int = 1
) -> ReadsResult:
    bus = await EventBus.connect(stack.nats_url, "bench")
    try:
        await bus.ensure_streams()
        history = History(tasks=tasks, start_ts=time.time() - tasks * 0.01 - 60, spacing_s=0.01)
        begin = time.perf_counter()
        last = await write_straight(bus, history_chunks(history, block=1000))
        write_s = time.perf_counter() - begin

        started = time.perf_counter()
        gateway = stack.spawn("gateway", 0)
        nats_pids = [stack.nats.process.pid] if stack.nats is not None and stack.nats.process else []
        await _gateway_answers(bus, timeout=600)
        answering_s = time.perf_counter() - started
        rebuild = CpuMeter({"gateway": [gateway.process.pid], "nats-server": nats_pids})
        rebuild.start()  # the model catches up from here (the projection has)
        model = await _query_model(bus, timeout=600)
        rebuild_cpu = rebuild.stop()

        rng = random.Random(seed)
        url = stack.gateway_url
        reading = {"gateway": [gateway.process.pid], "clients": [os.getpid()]}
        warm = [f"/api/v1/tasks/{history.task_id(rng.randrange(tasks))}" for _ in range(200)]
        await _drive(url, warm, clients)

        get_paths = [f"/api/v1/tasks/{history.task_id(rng.randrange(tasks))}" for _ in range(gets)]
        meter = CpuMeter(reading)
        meter.start()
        get_ms, get_wall, _bodies = await _drive(url, get_paths, clients)
        get_cpu = meter.stop()

        page_paths = [
            f"/api/v1/tasks?status=completed&task_type={rng.choice(TASK_TYPES)}&limit={page}"
            f"&cursor={encode_cursor('tasks', rng.randrange(last // 2, last + 1))}"
            for _ in range(pages)
        ]
        meter = CpuMeter(reading)
        meter.start()
        page_ms, page_wall, bodies = await _drive(url, page_paths, clients)
        page_cpu = meter.stop()
        items = [len(json.loads(body)["items"]) for body in bodies]
        rss, peak = memory_mib(gateway.process.pid)
    finally:
        await bus.close()
    rebuild_s = float(model.get("catch_up_s", 0.0))
    rebuild_events = int(model.get("catch_up_events", 0))
    return ReadsResult(
        tasks=tasks,
        events=last,
        write_per_s=last / write_s if write_s > 0 else 0.0,
        gateway_start_s=answering_s,
        rebuild_events=rebuild_events,
        rebuild_s=rebuild_s,
        rebuild_per_s=rebuild_events / rebuild_s if rebuild_s > 0 else 0.0,
        rebuild_cpu_s=rebuild_cpu["gateway"],
        rebuild_nats_cpu_s=rebuild_cpu["nats-server"],
        clients=clients,
        get_requests=gets,
        get_p50_ms=percentile(get_ms, 50),
        get_p99_ms=percentile(get_ms, 99),
        get_per_s=gets / get_wall,
        get_cpu_cores=get_cpu["gateway"] / get_wall,
        get_client_cores=get_cpu["clients"] / get_wall,
        page=page,
        page_requests=pages,
        page_p50_ms=percentile(page_ms, 50),
        page_p99_ms=percentile(page_ms, 99),
        page_per_s=pages / page_wall,
        page_cpu_cores=page_cpu["gateway"] / page_wall,
        page_client_cores=page_cpu["clients"] / page_wall,
        page_items_mean=sum(items) / len(items) if items else 0.0,
        rss_mib=rss,
        peak_rss_mib=peak,
        cpus=os.cpu_count() or 0,
    )


def run_reads(args: argparse.Namespace) -> ReadsResult:
    with tempfile.TemporaryDirectory(prefix="hive-bench-") as home:
        stack = local_stack(Path(home), services=())  # nats-server only: the gateway starts later
        stack.start()
        try:
            return run_async(
                measure_reads(
                    stack,
                    tasks=args.tasks,
                    clients=args.clients,
                    gets=args.gets,
                    pages=args.pages,
                    page=args.page,
                )
            )
        finally:
            stack.stop()


def bench_reads(args: argparse.Namespace) -> int:
    result = run_reads(args)
    if args.json:
        print(json.dumps({**asdict(result), "met": result.met}))
        return 0
    r = result
    print(
        f"reads: {r.tasks:,} finished tasks ({r.events:,} events) in the log, written at "
        f"{r.write_per_s:,.0f} events/s; {r.cpus} CPU(s)"
    )
    print(f"  gateway answering      {r.gateway_start_s:.1f} s after its start (its projection caught up)")
    print(
        f"  query model rebuild    {r.rebuild_events:,} events in {r.rebuild_s:.1f} s = "
        f"{r.rebuild_per_s:,.0f} events/s   (target >= {REBUILD_TARGET_PER_S:,.0f}); CPU meanwhile: "
        f"gateway {r.rebuild_cpu_s:.1f} s, nats-server {r.rebuild_nats_cpu_s:.1f} s"
    )
    print(
        f"  GET /tasks/{{id}}        p50 {r.get_p50_ms:.2f} ms  p99 {r.get_p99_ms:.2f} ms   "
        f"(target p99 < {P99_TARGET_MS:.0f} ms); {r.get_requests} by {r.clients} clients, "
        f"{r.get_per_s:,.0f}/s; CPU: gateway {r.get_cpu_cores:.2f} core(s), clients {r.get_client_cores:.2f}"
    )
    print(
        f"  filtered page of {r.page}   p50 {r.page_p50_ms:.2f} ms  p99 {r.page_p99_ms:.2f} ms   "
        f"(target p99 < {P99_TARGET_MS:.0f} ms); {r.page_requests} by {r.clients} clients, "
        f"{r.page_per_s:,.0f}/s, {r.page_items_mean:.0f} items each; CPU: gateway {r.page_cpu_cores:.2f} "
        f"core(s), clients {r.page_client_cores:.2f}"
    )
    print(
        f"  gateway memory         {r.rss_mib:.0f} MiB resident (peak {r.peak_rss_mib:.0f} MiB)   "
        f"(target < {RSS_TARGET_MIB:.0f} MiB)"
    )
    print(f"  verdict                {'targets met' if r.met else 'targets NOT met'}")
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    bench = commands.add_parser("reads", help="query model rebuild rate, read latency and memory")
    bench.add_argument("--tasks", type=int, default=100_000, help="finished tasks written into the log")
    bench.add_argument("--clients", type=int, default=8, help="concurrent keep-alive HTTP clients")
    bench.add_argument("--gets", type=int, default=4000, help="GET /api/v1/tasks/{id} requests")
    bench.add_argument("--pages", type=int, default=1000, help="filtered page requests")
    bench.add_argument("--page", type=int, default=100, help="tasks per page")
    bench.add_argument("--json", action="store_true", help="one JSON line instead of a table")
    bench.set_defaults(func=quiet(bench_reads))
