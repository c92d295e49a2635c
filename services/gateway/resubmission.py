"""Is a task submission the one already stored under its id? Pure.

A client that got no answer (a timeout, a 503 while nats-server restarted) retries ``task/assign``
with the same task id; the first try may have been stored. The retry is the same request when the
stored ``task.submitted`` equals the one it would append in everything the client asked for: the
event's own id and time differ between tries, a deadline is compared as the delay the client
gave (seconds after the submission), not as a point in time, and a delayed task's start either
way (``not_before`` is a point in time, ``delay_seconds`` a delay).
"""

from __future__ import annotations

import math

import msgspec

from shared.events import TaskSubmitted

DEADLINE_TOLERANCE_S = 1e-3
"""``deadline_ts - ts`` is rebuilt from the delay in floats: equal delays may differ by ~1e-7 s."""


def _asked(event: TaskSubmitted) -> TaskSubmitted:
    """The submission without what differs between two tries of one request."""
    return msgspec.structs.replace(
        event, id="", ts=0.0, deadline_ts=None, not_before_ts=None, causation_id=""
    )


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=0.0, abs_tol=DEADLINE_TOLERANCE_S)


def _same_moment(stored: TaskSubmitted, requested: TaskSubmitted, field: str, *, as_time: bool) -> bool:
    """Whether the moment `field` names is the same request: both absent, the same delay after the
    submission or (`as_time`) the same point in time."""
    mine, theirs = getattr(stored, field), getattr(requested, field)
    if mine is None or theirs is None:
        return mine is theirs
    return _close(mine - stored.ts, theirs - requested.ts) or (as_time and _close(mine, theirs))


def same_submission(stored: TaskSubmitted, requested: TaskSubmitted) -> bool:
    """Whether `requested` asks for exactly what `stored` holds (so it is a retry of it)."""
    return (
        _asked(stored) == _asked(requested)
        and _same_moment(stored, requested, "deadline_ts", as_time=False)
        and _same_moment(stored, requested, "not_before_ts", as_time=True)
    )
