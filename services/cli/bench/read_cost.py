"""What reading the log costs a projection per message: ``python -m services.cli.bench.read_cost``.

Every reader (router, recovery, balancer, workflow, gateway) reads each stored event through a
``ProjectionRunner`` fed in bursts; this times (CPU of this process, ``time.process_time``) real
views catching up with a private nats-server holding ``--tasks`` finished tasks (submitted,
assigned with its explanation, started, completed: ``services/cli/bench/history.py``), plus a view
that applies nothing (the read path and decoding alone) and one that skips every message undecoded
(the read path alone). Each view is read ``--runs`` times from the start; the median is printed in
microseconds of CPU per message handed to it. The server's own CPU is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from services.balancer.view import BALANCER_VIEW
from services.cli.bench.history import History, history_chunks, write_straight
from services.gateway.view import GATEWAY_VIEW
from services.recovery.view import RECOVERY_VIEW
from services.workflow.view import WORKFLOW_VIEW
from shared.bus import EventBus
from shared.embedded import EmbeddedNats
from shared.logging import configure_logging
from shared.projection import ProjectionRunner
from shared.projection_spec import ProjectionSpec
from shared.recorded import Recorded


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

VIEWS: dict[str, ProjectionSpec[Any]] = {
    "recovery": RECOVERY_VIEW,
    "workflow": WORKFLOW_VIEW,
    "balancer": BALANCER_VIEW,
    "gateway": GATEWAY_VIEW,
    "decode_only": NOTHING_APPLIED,
    "skip_all": ALL_SKIPPED,
}


async def _read_once(bus: EventBus, spec: ProjectionSpec[Any], last: int) -> tuple[float, int]:
    """CPU seconds for a fresh runner to apply the log up to `last`, and messages handed to it."""
    runner = ProjectionRunner(bus, spec, linger_s=0.05)
    started = time.process_time()
    await runner.start()
    await runner.wait_for(last, timeout=300)
    spent = time.process_time() - started
    await runner.stop(snapshot=False)
    return spent, runner.delivered


async def measure(tasks: int, runs: int, views: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedNats(Path(tmp) / "nats", port=0).start()
        try:
            bus = await EventBus.connect(server.url, "bench")
            await bus.ensure_streams()
            last = await write_straight(bus, history_chunks(History(tasks=tasks)))
            figures: dict[str, list[float]] = {name: [] for name in views}
            for _ in range(runs):
                for name in views:  # interleaved: a burst of load elsewhere spreads over all views
                    spent, delivered = await _read_once(bus, VIEWS[name], last)
                    figures[name].append(spent / max(1, delivered) * 1e6)
            await bus.close()
        finally:
            server.stop()
    return {name: statistics.median(values) for name, values in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=7500, help="finished tasks in the log (4 events each)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--views", default=",".join(VIEWS), help="comma-separated: " + ", ".join(VIEWS))
    args = parser.parse_args()
    configure_logging("warning")
    views = [name for name in args.views.split(",") if name]
    medians = asyncio.run(measure(args.tasks, args.runs, views))
    for name, us in medians.items():
        print(f"{name:12s} {us:7.1f} us CPU per message (median of {args.runs})")


if __name__ == "__main__":
    main()
