"""Times as the specification writes them (ISO-8601 UTC) and as Hive keeps them (epoch seconds)."""

from __future__ import annotations

import math
from datetime import UTC, datetime


def iso_utc(ts: float) -> str:
    """Epoch seconds as ISO-8601 UTC with milliseconds, e.g. ``2025-07-28T19:30:00.000Z``."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch_of(value: str | float) -> float:
    """Epoch seconds from ISO-8601 (a time without an offset is UTC) or from epoch seconds.

    Raises ValueError saying what is accepted.
    """
    if isinstance(value, bool):
        raise ValueError("expected an ISO-8601 time or epoch seconds, got a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        try:
            return epoch_of(float(value))  # epoch seconds written as a string
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"{value!r} is not an ISO-8601 time (e.g. 2025-07-28T19:30:00Z) or epoch seconds"
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        seconds = parsed.timestamp()
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{value!r} is not a time after 1970-01-01T00:00:00Z")
    return seconds
