"""Fair priority across the whole queue, with aging. Pure.

One queue holds every waiting task of every workflow, tenant and submitter, ordered by a *virtual
time*: the time the task became routable, less ``PRIORITY_AGING_S`` per priority level above
``low``. A ``critical`` task therefore goes before a ``low`` one submitted up to three aging periods
earlier, and no later: a task waiting that long has aged up to the top level, and every task that
arrives after that goes behind it. A low-priority task's wait is so bounded by the work submitted
before its virtual time plus ``3 * PRIORITY_AGING_S`` of arrivals, whatever the load of higher
priority. Within one virtual time, the older submission goes first.

The order is fixed when the task enters the queue (nothing is re-sorted as time passes): aging is
the head start of higher levels, not a clock ticking inside the queue, so the order is the same in
every service and on every replay.
"""

from __future__ import annotations

from typing import Final

from shared.events import PRIORITY_RANK

PRIORITY_AGING_S: Final = 60.0
"""Seconds of waiting worth one priority level: a ``high`` task submitted at t goes before a
``normal`` one submitted after t - 60 s, after one submitted earlier."""

MAX_RANK: Final = max(PRIORITY_RANK.values())


def virtual_time(priority: str, routable_ts: float, aging_s: float = PRIORITY_AGING_S) -> float:
    """Where a task of `priority`, routable from `routable_ts`, sorts in the queue (lower: sooner)."""
    return routable_ts - PRIORITY_RANK[priority] * aging_s


def overtaking_window_s(aging_s: float = PRIORITY_AGING_S) -> float:
    """How long after a ``low`` task's submission a task of any priority may still go before it."""
    return MAX_RANK * aging_s
