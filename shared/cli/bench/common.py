"""What every benchmark needs: percentiles, waiting for services, quiet logs."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from shared.bus import EventBus
from shared.logging import configure_logging


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


def quiet(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Only warnings in the logs while a benchmark prints its figures."""

    def wrapped(args: argparse.Namespace) -> int:
        configure_logging("warning", service="bench")
        return func(args)

    return wrapped
