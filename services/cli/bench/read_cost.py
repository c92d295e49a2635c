"""What reading the log costs a projection per message: ``python -m services.cli.bench.read_cost``.

Every reader (router, recovery, balancer, workflow, gateway) reads each stored event through a
``ProjectionRunner`` fed in bursts; this times (CPU of this process, ``time.process_time``) real
views catching up with a private nats-server holding ``--tasks`` finished tasks (submitted,
assigned with its explanation, started, ``--progress`` progress reports, completed:
``services/cli/bench/history.py``), plus a view
that applies nothing (the read path and decoding alone) and one that skips every message undecoded
(the read path alone). Each view is read ``--runs`` times from the start; the median is printed in
microseconds of CPU per message handed to it, of the reader and of nats-server (from /proc: a
consumer that catches up costs the server too, and how much depends on its filters).

``recovery_filtered`` is recovery's view read through four filter subjects (every aggregate but the
workflows) instead of one: what filtering out on the consumer, rather than skipping undecoded,
costs (``services/balancer/view.py``: ``ignores_balancer``); the router's view reads through its
own filters (``ROUTER_READS``). With two progress reports or more per task (several messages on one
subject), a consumer with several filter subjects costs nats-server 2.15 a hundred times more per
message as it catches up: so a runner far behind catches up through one filter, skipping what its
filters leave out (``CATCH_UP_ALONE_AFTER``); ``--filtered`` reads through the filters all the way.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

import shared.projection
from services.balancer.view import BALANCER_VIEW
from services.cli.bench.cpu import cpu_seconds
from services.cli.bench.history import History, history_chunks, write_straight
from services.gateway.view import GATEWAY_VIEW
from services.recovery.view import RECOVERY_VIEW
from services.workflow.view import WORKFLOW_VIEW
from shared.bus import EventBus
from shared.domain.routing.view import ROUTER_VIEW
from shared.embedded import EmbeddedNats
from shared.logging import configure_logging
from shared.projection import ProjectionRunner
from shared.projection_spec import ProjectionSpec
from shared.recorded import Recorded
from shared.subjects import aggregate_filter


def _keep(state: list[int], recorded: Recorded) -> list[int]:
    return state


NOTHING_APPLIED: ProjectionSpec[list[int]] = ProjectionSpec(
    name="bench-decode-only", state_type=list[int], initial=list, apply=_keep
)
"""Decodes every message and keeps nothing: the read path and decoding."""
ALL_SKIPPED: ProjectionSpec[list[int]] = ProjectionSpec(
    name="bench-skip-all", state_type=list[int], initial=list, apply=_keep, ignores=lambda _s, _subj: True
)
"""Skips every message undecoded: the read path alone."""

RECOVERY_FILTERED: ProjectionSpec[Any] = dataclasses.replace(
    RECOVERY_VIEW, reads=tuple(aggregate_filter(a) for a in ("agent", "task", "breaker", "system"))
)
"""Recovery's view with the workflows filtered out on its consumer (four filter subjects)."""

VIEWS: dict[str, ProjectionSpec[Any]] = {
    "recovery": RECOVERY_VIEW,
    "recovery_filtered": RECOVERY_FILTERED,
    "router": ROUTER_VIEW,
    "workflow": WORKFLOW_VIEW,
    "balancer": BALANCER_VIEW,
    "gateway": GATEWAY_VIEW,
    "decode_only": NOTHING_APPLIED,
    "skip_all": ALL_SKIPPED,
}


class Cost(msgspec.Struct, frozen=True):
    """Median CPU per message handed to a view: its reader's and the server's, in microseconds."""

    reader_us: float
    server_us: float
    per_task: float
    """Messages handed to the view per task of the log."""


async def _read_once(
    bus: EventBus, spec: ProjectionSpec[Any], last: int, server_pid: int
) -> tuple[float, float, int]:
    """CPU seconds for a fresh runner to apply the log up to `last` (its own, the server's), and
    messages handed to it."""
    runner = ProjectionRunner(bus, spec, linger_s=0.05)
    server_before = cpu_seconds(server_pid) or 0.0
    started = time.process_time()
    await runner.start()
    await runner.wait_for(last, timeout=300)
    spent = time.process_time() - started
    served = (cpu_seconds(server_pid) or 0.0) - server_before
    await runner.stop(snapshot=False)
    return spent, served, runner.delivered


async def measure(tasks: int, runs: int, views: list[str], progress: int = 0) -> dict[str, Cost]:
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedNats(Path(tmp) / "nats", port=0).start()
        try:
            assert server.process is not None
            bus = await EventBus.connect(server.url, "bench")
            await bus.ensure_streams()
            last = await write_straight(bus, history_chunks(History(tasks=tasks, progress=progress)))
            figures: dict[str, list[tuple[float, float, int]]] = {name: [] for name in views}
            for _ in range(runs):
                for name in views:  # interleaved: a burst of load elsewhere spreads over all views
                    figures[name].append(await _read_once(bus, VIEWS[name], last, server.process.pid))
            await bus.close()
        finally:
            server.stop()
    return {
        name: Cost(
            reader_us=statistics.median(spent / max(1, got) * 1e6 for spent, _s, got in values),
            server_us=statistics.median(served / max(1, got) * 1e6 for _r, served, got in values),
            per_task=values[0][2] / max(1, tasks),
        )
        for name, values in figures.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tasks", type=int, default=7500, help="finished tasks in the log (4 events each, and the progress)"
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--progress", type=int, default=0, help="progress reports per task")
    parser.add_argument("--views", default=",".join(VIEWS), help="comma-separated: " + ", ".join(VIEWS))
    parser.add_argument(
        "--filtered", action="store_true", help="views with filters read through them from the start"
    )
    args = parser.parse_args()
    if args.filtered:
        shared.projection.CATCH_UP_ALONE_AFTER = sys.maxsize
    configure_logging("warning")
    views = [name for name in args.views.split(",") if name]
    costs = asyncio.run(measure(args.tasks, args.runs, views, args.progress))
    print(f"{'view':18s} us CPU per message (median of {args.runs}): reader, nats-server; messages per task")
    for name, cost in costs.items():
        print(f"{name:18s} {cost.reader_us:7.1f} {cost.server_us:9.1f}   {cost.per_task:5.2f}")


if __name__ == "__main__":
    main()
