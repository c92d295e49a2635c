"""``shared.agent.testing``: a handler run without NATS reports what the SDK would have reported."""

from __future__ import annotations

import asyncio

import pytest

from shared.agent import Agent, AttemptSuperseded, NonRetryableError, TaskContext, TaskOutcome
from shared.agent.testing import Progress, TaskEnvironment


async def review(task: TaskContext) -> TaskOutcome:
    await task.progress(50, "reading the diff")
    if not task.payload.get("diff"):
        raise NonRetryableError("nothing to review")
    return TaskOutcome(result={"comments": len(task.payload["diff"])}, quality=0.9)


async def test_a_completed_run_gives_the_result_the_quality_and_the_progress() -> None:
    env = TaskEnvironment("code_review", {"diff": "abc"})
    report = await env.run(review)
    assert report.completed
    assert (report.result, report.quality) == ({"comments": 3}, 0.9)
    assert env.progress == report.progress == [Progress(50.0, "reading the diff")]


async def test_the_context_carries_the_made_up_assignment() -> None:
    seen: list[tuple[str, str, int, float, bool]] = []

    async def look(task: TaskContext) -> str:
        seen.append((task.task_id, task.task_type, task.attempt, task.remaining_s(), task.is_cancelled))
        return "ok"

    await TaskEnvironment("x", task_id="t-9", attempt=3, timeout_s=60).run(look)
    [(task_id, task_type, attempt, remaining, cancelled)] = seen
    assert (task_id, task_type, attempt, cancelled) == ("t-9", "x", 3, False)
    assert 59 < remaining <= 60


async def test_failures_say_whether_hive_would_retry() -> None:
    final = await TaskEnvironment("code_review", {}).run(review)
    assert final.failed and final.retryable is False and "nothing to review" in final.error

    async def flaky(task: TaskContext) -> None:
        raise ConnectionError("model API down")

    again = await TaskEnvironment().run(flaky)
    assert again.failed and again.retryable is True and again.failure_type == "agent_error"


async def test_a_handler_past_the_timeout_is_cancelled_and_the_attempt_times_out() -> None:
    stopped = asyncio.Event()

    async def slow(task: TaskContext) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    report = await TaskEnvironment(timeout_s=0.05).run(slow)
    assert report.failed and report.failure_type == "task_timeout" and report.retryable
    assert stopped.is_set()


async def test_a_handler_raising_its_own_timeout_is_an_ordinary_failure() -> None:
    async def impatient(task: TaskContext) -> None:
        raise TimeoutError("the model did not answer")

    report = await TaskEnvironment(timeout_s=60).run(impatient)
    assert report.failure_type == "agent_error" and "the model did not answer" in report.error


async def test_cancelling_mid_way_cancels_the_handler_and_reports_nothing() -> None:
    after_cancel: list[bool] = []

    async def long(task: TaskContext) -> str:
        await task.progress(10, "started")
        after_cancel.append(task.is_cancelled)  # not reached: the cancellation lands in progress
        await asyncio.Event().wait()
        return "never"

    env = TaskEnvironment(on_progress=lambda update: env.cancel())
    report = await env.run(long)
    assert report.cancelled and report.result is None
    assert after_cancel == [] and report.progress == [Progress(10.0, "started")]


async def test_a_handler_that_notices_the_cancellation_sees_is_cancelled() -> None:
    noticed: list[bool] = []
    waiting = asyncio.Event()

    async def careful(task: TaskContext) -> str:
        try:
            waiting.set()
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            noticed.append(task.is_cancelled)
            raise
        return "never"

    env = TaskEnvironment()
    running = asyncio.ensure_future(env.run(careful))
    await asyncio.wait_for(waiting.wait(), 5)
    env.cancel()
    assert (await running).cancelled and noticed == [True]


async def test_a_cancellation_before_the_run_cancels_the_handler_as_it_starts() -> None:
    env = TaskEnvironment()
    env.cancel()
    assert (await env.run(review)).cancelled


async def test_a_superseded_attempt_refuses_progress_like_the_sdk() -> None:
    refused: list[str] = []

    async def stubborn(task: TaskContext) -> str:
        try:
            await task.progress(10)
        except AttemptSuperseded as exc:
            refused.append(str(exc))
            raise
        return "never"

    env = TaskEnvironment()
    env.supersede("attempt 1 superseded by attempt 2")
    report = await env.run(stubborn)
    assert refused == ["attempt 1 superseded by attempt 2"] and report.failed


async def test_an_agent_is_run_through_the_handler_of_the_task_type() -> None:
    agent = Agent("reviewer-1")
    agent.handles("code_review", proficiency=0.9)(review)
    done = await TaskEnvironment("code_review", {"diff": "x"}).run(agent)
    assert done.completed and done.result == {"comments": 1}
    missing = await TaskEnvironment("testing").run(agent)
    assert missing.failed and missing.retryable is False
    assert "agent 'reviewer-1' has no handler for task type 'testing'" in missing.error


async def test_an_unstorable_result_fails_as_the_sdk_would_fail_it() -> None:
    async def overconfident(task: TaskContext) -> TaskOutcome:
        return TaskOutcome(result="ok", quality=7)

    report = await TaskEnvironment().run(overconfident)
    assert report.failed and report.retryable is False and "quality" in report.error


async def test_progress_is_clamped_to_0_to_100() -> None:
    async def eager(task: TaskContext) -> None:
        await task.progress(150)
        await task.progress(-3, "odd")

    env = TaskEnvironment()
    await env.run(eager)
    assert env.progress == [Progress(100.0, ""), Progress(0.0, "odd")]


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
def test_a_report_says_its_status_by_name(status: str) -> None:
    from shared.agent.testing import RunReport

    report = RunReport(status)  # type: ignore[arg-type]
    assert [report.completed, report.failed, report.cancelled].count(True) == 1
