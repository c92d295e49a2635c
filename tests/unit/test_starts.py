"""When the SDK reports task.started, and what a completion without one implies."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shared.domain.starts import (
    START_REPORT_AFTER_S,
    START_REPORT_LATE_S,
    START_REPORTED_WITHIN_S,
    may_run_unreported,
    start_report_delay,
)


def test_a_fresh_assignment_lets_the_work_run_the_whole_bound_before_reporting_its_start() -> None:
    assert start_report_delay(assigned_ts=100.0, now=100.01) == START_REPORT_AFTER_S
    # The router's clock ahead of the agent's: never more than the bound.
    assert start_report_delay(assigned_ts=105.0, now=100.0) == START_REPORT_AFTER_S


def test_the_report_is_due_by_the_late_bound_and_an_old_assignment_is_reported_before_it_runs() -> None:
    assert abs(start_report_delay(assigned_ts=100.0, now=100.4) - 0.1) < 1e-9
    assert start_report_delay(assigned_ts=100.0, now=100.0 + START_REPORT_LATE_S) == 0.0
    assert start_report_delay(assigned_ts=100.0, now=130.0) == 0.0


@given(age=st.floats(min_value=0.0, max_value=10.0))
def test_running_work_is_reported_before_anything_may_take_it_as_unstarted(age: float) -> None:
    """Received at any age, the start of running work is sent by the late bound (or at once), well
    inside the window in which nothing takes an assigned attempt as unstarted."""
    sent_at_age = age + start_report_delay(0.0, age)
    assert sent_at_age <= max(age, START_REPORT_LATE_S) + 1e-9
    assert START_REPORT_LATE_S + 0.5 <= START_REPORTED_WITHIN_S
    if age < START_REPORT_LATE_S:
        assert may_run_unreported(0.0, sent_at_age - 1e-6)


def test_an_assignment_may_run_unreported_only_while_young() -> None:
    assert may_run_unreported(100.0, 100.0 + START_REPORTED_WITHIN_S - 0.001)
    assert not may_run_unreported(100.0, 100.0 + START_REPORTED_WITHIN_S)
    assert not may_run_unreported(None, 100.0)
