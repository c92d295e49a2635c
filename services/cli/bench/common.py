"""What every benchmark needs: a private Hive, percentiles, waiting for services, quiet logs."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from services.cli.stack import Stack, local_stack
from shared.bus import EventBus
from shared.logging import configure_logging
from shared.service import run_async

T = TypeVar("T")


def on_private_stack(measure: Callable[[Stack], Coroutine[Any, Any, T]], **stack_options: Any) -> T:
    """Run `measure` against a Hive of its own (nats-server and services on free ports, under a
    temporary folder), stopped and removed afterwards; `stack_options` go to ``local_stack``."""
    with tempfile.TemporaryDirectory(prefix="hive-bench-") as home:
        stack = local_stack(Path(home), **stack_options)
        stack.start()
        try:
            return run_async(measure(stack))
        finally:
            stack.stop()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def wait_for_services(bus: EventBus, expected: dict[str, int], timeout: float = 60.0) -> None:
    """Ask for health until every expected service instance answers ok."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen: dict[str, int] = {}
        for reply in await bus.gather_health(0.5, expect=frozenset(expected)):
            if reply.get("status") == "ok":
                name = str(reply.get("service"))
                seen[name] = seen.get(name, 0) + 1
        if all(seen.get(name, 0) >= count for name, count in expected.items()):
            return
    raise RuntimeError(f"services {expected} did not become ready within {timeout}s")


async def wait_for_readers(bus: EventBus, settle_s: float = 0.25, timeout: float = 60.0) -> None:
    """Ask for health until every instance's projections read the log to its end, or stopped
    reading for `settle_s` (one that reads only some events may never reach the end): a reader in
    bursts lags a busy run, and the CPU it spends catching up is the run's, to be metered with it."""
    last = await bus.last_sequence()
    deadline = time.monotonic() + timeout
    before: dict[str, int] = {}
    while time.monotonic() < deadline:
        replies = await bus.gather_health(0.5)
        now = {str(r.get("instance")): int(r.get("projection_seq") or 0) for r in replies}
        if all(seq >= last or before.get(name) == seq for name, seq in now.items()):
            return
        before = now
        await asyncio.sleep(settle_s)


def quiet(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Only warnings in the logs while a benchmark prints its figures."""

    def wrapped(args: argparse.Namespace) -> int:
        configure_logging("warning", service="bench")
        return func(args)

    return wrapped
