"""Message ids must keep their exact form across versions: a decision appended by an old instance and
again by an upgraded one is stored once only if both build the same id."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from shared.domain import message_ids as ids

PINNED: list[tuple[Callable[..., str], tuple[object, ...], str]] = [
    (ids.assign_msg_id, ("t1", 2), "assign:t1:2"),
    (ids.queued_msg_id, ("t1", 1), "queued:t1:1"),
    (ids.key_hold_msg_id, ("t1", 1, "rate_limited"), "queued:t1:1:rate_limited"),
    (ids.key_claim_msg_id, ("claim", "t1", 2), "claim:t1:2"),
    (ids.requeue_msg_id, ("t1", 3), "requeue:t1:3"),
    (ids.failed_msg_id, ("t1",), "failed:t1"),
    (ids.cancel_msg_id, ("t1",), "cancel:t1"),
    (ids.notice_msg_id, ("t1", 2), "cancel-request:t1:2"),
    (ids.report_msg_id, ("task.completed", "t1", 2), "task.completed:t1:2"),
    (ids.workflow_task_msg_id, ("w1--s1",), "wf-task:w1--s1"),
    (ids.workflow_start_msg_id, ("w1",), "wf-start:w1"),
    (ids.step_dispatch_msg_id, ("w1", "s1"), "wf-dispatch:w1:s1"),
    (ids.step_skip_msg_id, ("w1", "s1"), "wf-skip:w1:s1"),
    (ids.workflow_end_msg_id, ("w1",), "wf-end:w1"),
    (ids.schedule_fire_msg_id, ("nightly", 1753731000000), "fire:nightly:1753731000000"),
    (ids.schedule_skip_msg_id, ("nightly", 1753731000000), "skip:nightly:1753731000000"),
    (
        ids.schedule_submit_msg_id,
        ("nightly-1753731000000-0123456789ab",),
        "sched-submit:nightly-1753731000000-0123456789ab",
    ),
    (ids.liveness_msg_id, ("unresponsive", "a1", 17), "unresponsive:a1:17"),
    (ids.liveness_msg_id, ("recovered", "a1", 18), "recovered:a1:18"),
    (ids.liveness_msg_id, ("stalled", "a1", 19), "stalled:a1:19"),
    (ids.quarantine_msg_id, ("i1",), "quarantine:i1"),
    (ids.restart_msg_id, ("i1",), "restart:i1"),
    (ids.breaker_msg_id, ("a1", 9, "opened"), "breaker:a1:9:opened"),
    (ids.breaker_reset_msg_id, ("a1", 9), "breaker-reset:a1:9"),
    (ids.recovery_action_msg_id, ("i1",), "recovery-action:i1"),
    (ids.rebalanced_msg_id, ("auto-42",), "rebalanced:auto-42"),
    (ids.scale_msg_id, ("scale-testing", 5), "scale:scale-testing:5"),
    (ids.dead_letter_msg_id, ("router", 12), "dlq:router:12"),
    (ids.alert_msg_id, ("target-workflow_completion_rate", 7), "alert:target-workflow_completion_rate:7"),
]


@pytest.mark.parametrize(("build", "args", "expected"), PINNED, ids=[p[2] for p in PINNED])
def test_each_message_id_keeps_its_exact_form(
    build: Callable[..., str], args: tuple[object, ...], expected: str
) -> None:
    assert build(*args) == expected


def test_every_message_id_builder_is_pinned() -> None:
    builders = {name for name in dir(ids) if name.endswith("_msg_id")}
    assert builders == {build.__name__ for build, _args, _expected in PINNED}
