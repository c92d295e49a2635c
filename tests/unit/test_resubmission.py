"""A retried task/assign is the same request when it asks for what is stored (pure)."""

from __future__ import annotations

import msgspec

from services.gateway.resubmission import same_submission
from shared.events import TaskSubmitted


def submission(ts: float, **fields: object) -> TaskSubmitted:
    base = TaskSubmitted(task_id="t", task_type="x", submitted_by="gateway", correlation_id="t", ts=ts)
    return msgspec.structs.replace(base, **fields)


def test_a_retry_differs_only_in_its_event_id_and_time() -> None:
    first = submission(1000.0, deadline_ts=1060.0)
    retry = submission(1003.7, deadline_ts=1063.7)  # the same 60 s deadline, asked 3.7 s later
    assert first.id != retry.id
    assert same_submission(first, retry)


def test_other_content_under_the_same_id_is_not_a_retry() -> None:
    first = submission(1000.0)
    assert not same_submission(first, submission(1001.0, priority="high"))
    assert not same_submission(first, submission(1001.0, payload={"file": "b.py"}))
    assert not same_submission(first, submission(1001.0, deadline_ts=1061.0))
    assert not same_submission(submission(1000.0, deadline_ts=1060.0), submission(1001.0, deadline_ts=1071.0))
    assert not same_submission(first, submission(1001.0, submitted_by="someone-else"))


def test_a_delayed_task_retried_is_the_same_whether_its_start_was_a_time_or_a_delay() -> None:
    at_a_time = submission(1000.0, not_before_ts=5000.0)
    assert same_submission(at_a_time, submission(1004.2, not_before_ts=5000.0))  # not_before
    after_a_delay = submission(1000.0, not_before_ts=1300.0)
    assert same_submission(after_a_delay, submission(1004.2, not_before_ts=1304.2))  # delay_seconds


def test_a_delayed_task_with_another_start_is_not_a_retry() -> None:
    delayed = submission(1000.0, not_before_ts=1300.0)
    assert not same_submission(delayed, submission(1001.0, not_before_ts=1400.0))
    assert not same_submission(delayed, submission(1001.0))
    assert not same_submission(submission(1000.0), submission(1001.0, not_before_ts=1301.0))
