"""What a guarded assignment costs nats-server as its agent's history grows:
``python -m services.cli.bench.guard_cost``.

The router appends ``agent.task_assigned`` with ``Nats-Expected-Last-Subject-Sequence`` against
everything about the agent (``Nats-Expected-Last-Subject-Sequence-Subject``
``hive.evt.*.<agent_id>.>``, ``subjects.entity_subjects``), and nats-server answers a wildcard's
last sequence by walking every subject the filter matches. With a subject per task under the agent
(version 2 notices) that walk grew with the tasks the agent ever had; with one subject per notice
type (version 3) it does not. For each ``--earlier`` count, a private nats-server is given an agent
with that many earlier assignments (on the subject the current code appends them on), then
``--appends`` more are appended one after another, each guarded by the last sequence the previous
one got, and the server's CPU (from /proc) over them is divided by their number. Each count is
measured ``--runs`` times, alternately; the range and median are printed, in µs per append.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path

from services.cli.bench.cpu import cpu_seconds
from shared.bus import EventBus
from shared.embedded import EmbeddedNats
from shared.events import AgentRegistered, TaskAssigned
from shared.logging import configure_logging
from shared.subjects import entity_subjects

AGENT = "bench-agent"
BATCH = 500
"""Earlier assignments appended at once (unguarded, as fast as the server takes them)."""


async def _earlier(bus: EventBus, count: int) -> None:
    """`count` earlier assignments to the agent, each about a task of its own."""
    for start in range(0, count, BATCH):
        events = [
            TaskAssigned(agent_id=AGENT, task_id=f"earlier-{index}", attempt=1)
            for index in range(start, min(count, start + BATCH))
        ]
        await asyncio.gather(*(bus.append_soon(event, expected=None) for event in events))


async def _guarded(bus: EventBus, appends: int, run: int, server_pid: int) -> float:
    """µs of server CPU per guarded assignment, over `appends` made one after another."""
    guard = entity_subjects(AGENT)
    expected = await bus.last_sequence_of(guard)
    before = cpu_seconds(server_pid) or 0.0
    for index in range(appends):
        event = TaskAssigned(agent_id=AGENT, task_id=f"run{run}-{index}", attempt=1)
        result = await bus.append(event, expected=expected, expected_filter=guard)
        expected = result.seq
    spent = (cpu_seconds(server_pid) or 0.0) - before
    return spent / appends * 1e6


async def measure(earlier: list[int], appends: int, runs: int) -> dict[int, list[float]]:
    """Each count's µs per guarded append, `runs` times (counts alternate, one server each)."""
    figures: dict[int, list[float]] = {count: [] for count in earlier}
    with tempfile.TemporaryDirectory() as tmp:
        servers: dict[int, tuple[EmbeddedNats, EventBus]] = {}
        try:
            for count in earlier:
                server = EmbeddedNats(Path(tmp) / f"nats-{count}", port=0).start()
                bus = await EventBus.connect(server.url, "bench")
                servers[count] = (server, bus)
                await bus.ensure_streams()
                await bus.append(AgentRegistered(agent_id=AGENT, capabilities={"x": 1.0}), expected=None)
                await _earlier(bus, count)
            for run in range(runs):
                for count, (server, bus) in servers.items():
                    assert server.process is not None
                    figures[count].append(await _guarded(bus, appends, run, server.process.pid))
        finally:
            for server, bus in servers.values():
                await bus.close()
                server.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--earlier", default="1000,5000,20000", help="earlier tasks of the agent (comma-separated)"
    )
    parser.add_argument("--appends", type=int, default=1000, help="guarded assignments measured per run")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    configure_logging("warning")
    earlier = [int(count) for count in args.earlier.split(",") if count]
    figures = asyncio.run(measure(earlier, args.appends, args.runs))
    subject = TaskAssigned(agent_id=AGENT, task_id="t", attempt=1).subject
    print(f"assignments on {subject}; guard {entity_subjects(AGENT)}")
    print(f"{'earlier tasks':>13s}  µs of server CPU per guarded append ({args.runs} runs): min-max, median")
    for count, values in figures.items():
        print(f"{count:13d}  {min(values):7.0f}-{max(values):<7.0f} {statistics.median(values):7.0f}")


if __name__ == "__main__":
    main()
