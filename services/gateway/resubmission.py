"""Is a task submission the one already stored under its id? Pure.

A client that got no answer (a timeout, a 503 while nats-server restarted) retries ``task/assign``
with the same task id; the first try may have been stored. The retry is the same request when the
stored ``task.submitted`` equals the one it would append in everything the client asked for: the
event's own id and time differ between tries, and a deadline is compared as the delay the client
gave (seconds after the submission), not as a point in time.
"""

from __future__ import annotations

import math

import msgspec

from shared.events import TaskSubmitted

DEADLINE_TOLERANCE_S = 1e-3
"""``deadline_ts - ts`` is rebuilt from the delay in floats: equal delays may differ by ~1e-7 s."""


def _asked(event: TaskSubmitted) -> TaskSubmitted:
    """The submission without what differs between two tries of one request."""
    return msgspec.structs.replace(event, id="", ts=0.0, deadline_ts=None, causation_id="")


def _delay(event: TaskSubmitted) -> float | None:
    return None if event.deadline_ts is None else event.deadline_ts - event.ts


def same_submission(stored: TaskSubmitted, requested: TaskSubmitted) -> bool:
    """Whether `requested` asks for exactly what `stored` holds (so it is a retry of it)."""
    if _asked(stored) != _asked(requested):
        return False
    stored_delay, requested_delay = _delay(stored), _delay(requested)
    if stored_delay is None or requested_delay is None:
        return stored_delay is requested_delay
    return math.isclose(stored_delay, requested_delay, rel_tol=0.0, abs_tol=DEADLINE_TOLERANCE_S)
