"""When an attempt started, and when nothing may yet take it as unstarted. Pure.

``task.started`` is optional (since the lazy start): the SDK appends it only for work still
running ``START_REPORT_AFTER_S`` after it began, or before its first progress report, and then
with the time the work began (``ts``). An attempt that ends sooner says it ran by its
``task.completed`` (or ``task.attempt_failed``) alone: one message fewer per task for the server and
every reader. So:

* a completion (or an agent's failure) accepted straight from ``assigned`` implies the start:
  ``implied_start_ts`` puts it at the report's ``ts - duration_s`` (what the agent measured of its
  handler), never before the assignment nor after the report;
* an ``assigned`` attempt younger than ``START_REPORTED_WITHIN_S`` may be running with its start
  report still to come, so nothing takes it as unstarted before (the balancer's move of
  unstarted work, recovery's ``reassign_unstarted``). The SDK reports the start of work still
  running ``START_REPORT_AFTER_S`` after it began, and at the latest ``START_REPORT_LATE_S`` after
  the assignment; an assignment received later than that (a lagging agent: the case the balancer
  is for) is reported before its handler runs, as every agent did before. So the start of running
  work lands by ``START_REPORT_LATE_S`` + one append after the assignment (or right after a late
  receipt); ``START_REPORTED_WITHIN_S`` (1 s) leaves 0.5 s for that append and a busy event loop,
  and is half the balancer's default ``REBALANCE_AFTER_S`` (2 s). A race lost all the same is
  harmless: the move is appended against the task's sequence, the agent's start against the same,
  so one of them is refused; a refused start stops the handler and the attempt runs on the target.

Clocks: the assignment's ``ts`` is the router's clock, the age is read on the agent's. An agent whose
clock runs behind sees its assignments younger than they are and still reports within
``START_REPORT_AFTER_S`` of receiving them.
"""

from __future__ import annotations

from typing import Final

from shared.events import TaskAttemptFailed, TaskCompleted

START_REPORT_AFTER_S: Final = 0.25
"""How long work runs before the SDK reports its ``task.started``. A quarter
second: most no-op and short tasks end sooner (no start event: ~1/4 of the events and messages per
task), while a task that runs longer shows ``running`` within a quarter second, a delay no person
watching the dashboard notices and far below every threshold that reads starts (the balancer's
``REBALANCE_AFTER_S``, 2 s; recovery's task timeouts, counted from the reported start time which is
the time the work began)."""

START_REPORT_LATE_S: Final = 0.5
"""The latest, after its assignment, an SDK agent reports the start of work still running; an
assignment received older than this is reported before its handler runs."""

START_REPORTED_WITHIN_S: Final = 1.0
"""An ``assigned`` attempt younger than this may be running unreported: never taken as unstarted."""


def start_report_delay(assigned_ts: float, now: float) -> float:
    """How long an agent that received an assignment (made at `assigned_ts`) at `now` lets the work
    run before reporting ``task.started``: ``START_REPORT_AFTER_S``, cut short so the report is
    sent by ``START_REPORT_LATE_S`` after the assignment. 0: report before running the handler
    (an old assignment, which others may be about to take as unstarted; the append is also the
    fence that refuses an attempt superseded meanwhile)."""
    age = max(0.0, now - assigned_ts)
    return max(0.0, min(START_REPORT_AFTER_S, START_REPORT_LATE_S - age))


def implied_start_ts(report: TaskCompleted | TaskAttemptFailed, assigned_ts: float | None) -> float | None:
    """When the work of an attempt that ended without ``task.started`` began: the report's time
    less the handler's duration, between the assignment and the report. None for a failure of no
    duration (recovery's timeouts and lost agents say nothing about the work having run)."""
    if isinstance(report, TaskAttemptFailed) and report.duration_s <= 0:
        return None
    began = report.ts - max(0.0, report.duration_s)
    if assigned_ts is not None:
        began = max(began, min(assigned_ts, report.ts))
    return began


def may_run_unreported(assigned_ts: float | None, now: float) -> bool:
    """Whether an ``assigned`` attempt is young enough to be running with its start unreported."""
    return assigned_ts is not None and now - assigned_ts < START_REPORTED_WITHIN_S
