"""Command-line agents with real programs (``tests/integration/programs/exec_task.py``) and real
services: outcome and progress, exit codes, the task's timeout, cancellation, a program that ignores
SIGTERM, and ``hive agent exec`` itself."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.recovery.service import RecoveryService
from services.router.service import RouterService
from shared.agent import Agent
from shared.agent.process import ProcessSpec, process_handler
from shared.bus import EventBus
from shared.events import (
    AgentDeregistered,
    AgentRegistered,
    RetryPolicy,
    TaskAttemptFailed,
    TaskCancelRequested,
    TaskCompleted,
    TaskFailed,
    TaskProgress,
    TaskRequeued,
    TaskSubmitted,
)
from shared.settings import Settings
from tests.conftest import EventLog, running, watching_logs

PROGRAM = Path(__file__).parent / "programs" / "exec_task.py"
ROOT = Path(__file__).resolve().parents[2]


def exec_agent(capacity: int = 1, kill_grace_s: float = 5.0) -> Agent:
    spec = ProcessSpec(
        [sys.executable, str(PROGRAM)],
        kill_grace_s=kill_grace_s,
        env=dict(os.environ, NATS_PASSWORD="agent-secret"),  # what the program must not see
    )
    return Agent("cli-1", process_handler(spec), capabilities={"review": 0.9}, capacity=capacity)


@pytest.fixture
async def hive(settings: Settings, bus: EventBus) -> AsyncIterator[None]:
    """Router and recovery, stopped before the test's connection closes."""
    async with running(RouterService, settings), running(RecoveryService, settings):
        yield


def submit(task_id: str, *, timeout_s: float = 60.0, attempts: int = 3, **payload: Any) -> TaskSubmitted:
    return TaskSubmitted(
        task_id=task_id,
        task_type="review",
        payload=payload,
        retry=RetryPolicy(max_attempts=attempts, initial_backoff_s=0.01),
        timeout_s=timeout_s,
    )


def gone(pid: int) -> bool:
    """The process no longer runs (reaped, or a zombie waiting for its parent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


async def test_a_program_completes_a_task_with_its_outcome_and_progress(
    hive: None, bus: EventBus, event_log: EventLog
) -> None:
    agent = exec_agent()
    await agent.start(bus)
    try:
        await bus.append(submit("t", mode="ok", diff="+x"), expected=0)
        await event_log.wait_for(lambda evs: any(isinstance(e, TaskCompleted) for e in evs))
    finally:
        await agent.stop()
    [completed] = event_log.of_type(TaskCompleted)
    assert completed.quality == 0.7
    task, env = completed.result["task"], completed.result["env"]
    assert (task["task_id"], task["task_type"], task["attempt"], task["agent_id"]) == (
        "t",
        "review",
        1,
        "cli-1",
    )
    assert task["payload"] == {"mode": "ok", "diff": "+x"} and task["timeout_s"] == 60.0
    assert env == {
        "HIVE_TASK_ID": "t",
        "HIVE_TASK_TYPE": "review",
        "HIVE_ATTEMPT": "1",
        "NATS_PASSWORD": None,
    }
    assert [(p.percent, p.message) for p in event_log.of_type(TaskProgress)] == [(40.0, "halfway")]


async def test_exit_code_2_fails_the_task_for_good_and_others_are_retried(
    hive: None, bus: EventBus, event_log: EventLog
) -> None:
    agent = exec_agent(capacity=2)
    await agent.start(bus)
    try:
        await bus.append(submit("bad", mode="exit", code=2), expected=0)
        await bus.append(submit("flaky", mode="flaky"), expected=0)
        await event_log.wait_for(
            lambda evs: (
                any(isinstance(e, TaskFailed) for e in evs) and any(isinstance(e, TaskCompleted) for e in evs)
            )
        )
    finally:
        await agent.stop()
    failures = {(e.task_id, e.attempt): e for e in event_log.of_type(TaskAttemptFailed)}
    assert failures[("bad", 1)].retryable is False
    assert "exited with 2: failing with 2 (exit code 2: not retryable)" in failures[("bad", 1)].error
    assert (
        failures[("flaky", 1)].retryable is True
        and "exited with 3: transient trouble" in failures[("flaky", 1)].error
    )
    assert [(e.task_id, e.attempt) for e in event_log.of_type(TaskRequeued)] == [("flaky", 2)]
    assert [(e.task_id, e.attempt) for e in event_log.of_type(TaskCompleted)] == [("flaky", 2)]
    assert [e.task_id for e in event_log.of_type(TaskFailed)] == ["bad"]


async def test_plain_output_is_the_result_when_no_outcome_line_comes(
    hive: None, bus: EventBus, event_log: EventLog
) -> None:
    agent = exec_agent()
    await agent.start(bus)
    try:
        await bus.append(submit("t", mode="text"), expected=0)
        await event_log.wait_for(lambda evs: any(isinstance(e, TaskCompleted) for e in evs))
    finally:
        await agent.stop()
    [completed] = event_log.of_type(TaskCompleted)
    assert (completed.result, completed.quality) == ("LGTM, two nits", None)


async def test_a_program_past_the_task_timeout_is_stopped_and_the_attempt_times_out(
    hive: None, bus: EventBus, event_log: EventLog, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    with watching_logs("process_terminated") as logs:
        agent = exec_agent()
        await agent.start(bus)
        try:
            task = submit("t", mode="hang", pidfile=str(pidfile), timeout_s=1.0, attempts=1)
            await bus.append(task, expected=0)
            await event_log.wait_for(lambda evs: any(isinstance(e, TaskFailed) for e in evs))
            await asyncio.wait_for(logs.arrived.wait(), 10)
        finally:
            await agent.stop()
    [attempt] = event_log.of_type(TaskAttemptFailed)
    assert attempt.failure_type == "task_timeout"
    assert gone(int(pidfile.read_text()))


async def test_a_cancelled_attempt_stops_its_program(
    hive: None, bus: EventBus, event_log: EventLog, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    with watching_logs("task_cancelled") as logs:
        agent = exec_agent()
        await agent.start(bus)
        try:
            await bus.append(submit("t", mode="hang", pidfile=str(pidfile)), expected=0)
            await event_log.wait_for(lambda evs: any(isinstance(e, TaskProgress) for e in evs))
            await bus.append(
                TaskCancelRequested(agent_id="cli-1", task_id="t", attempt=1, reason="recovery"),
                expected=None,
            )
            await asyncio.wait_for(logs.arrived.wait(), 10)
        finally:
            await agent.stop()
    assert [entry["signal"] for entry in logs.named("process_terminated")] == ["SIGTERM"]
    assert gone(int(pidfile.read_text()))
    assert event_log.of_type(TaskAttemptFailed) == [] and event_log.of_type(TaskCompleted) == []


async def test_a_program_ignoring_sigterm_is_killed_after_the_grace(
    hive: None, bus: EventBus, event_log: EventLog, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    with watching_logs("task_cancelled") as logs:
        agent = exec_agent(kill_grace_s=0.5)
        await agent.start(bus)
        try:
            await bus.append(submit("t", mode="stubborn", pidfile=str(pidfile)), expected=0)
            await event_log.wait_for(lambda evs: any(isinstance(e, TaskProgress) for e in evs))
            asked = time.monotonic()
            await bus.append(
                TaskCancelRequested(agent_id="cli-1", task_id="t", attempt=1, reason="recovery"),
                expected=None,
            )
            await asyncio.wait_for(logs.arrived.wait(), 10)
            took = time.monotonic() - asked
        finally:
            await agent.stop()
    [killed] = logs.named("process_killed")
    assert killed["signal"] == "SIGKILL" and took >= 0.5
    assert gone(int(pidfile.read_text()))


async def test_hive_agent_exec_registers_runs_tasks_and_drains_on_sigterm(
    hive: None, settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    env = {**os.environ, "NATS_URL": settings.nats_url}
    for name in ("NATS_USER", "NATS_PASSWORD", "HIVE_AGENT_CREDENTIALS"):
        env.pop(name, None)
    command = ["agent", "exec", "--id", "cli-9", "--capability", "review=0.8", "--capacity", "2"]
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli.main", *command, "--", sys.executable, str(PROGRAM),
        env=env, cwd=ROOT,
    )  # fmt: skip
    try:
        await event_log.wait_for(lambda evs: any(isinstance(e, AgentRegistered) for e in evs), timeout=30)
        await bus.append(submit("t", mode="ok"), expected=0)
        await event_log.wait_for(lambda evs: any(isinstance(e, TaskCompleted) for e in evs), timeout=30)
        agent.send_signal(signal.SIGTERM)
        await event_log.wait_for(lambda evs: any(isinstance(e, AgentDeregistered) for e in evs), timeout=30)
        assert await asyncio.wait_for(agent.wait(), 30) == 0
    finally:
        if agent.returncode is None:
            agent.kill()
            await agent.wait()
    [registered] = event_log.of_type(AgentRegistered)
    assert (registered.agent_id, registered.capabilities, registered.capacity) == (
        "cli-9",
        {"review": 0.8},
        2,
    )
    assert registered.metadata == {"kind": "exec", "command": os.path.basename(sys.executable)}
    [completed] = event_log.of_type(TaskCompleted)
    assert completed.agent_id == "cli-9" and completed.quality == 0.7


async def test_hive_agent_exec_refuses_a_missing_program_and_a_missing_command() -> None:
    for tail, complaint in (
        (["--", "no-such-program-anywhere"], "is not an executable program"),
        ([], "give the program to run after '--'"),
        (["--capability", "Bad Name", "--", "true"], "invalid capabilities"),
    ):
        command = ["agent", "exec", "--id", "x", "--capability", "r", *tail]
        refused = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cli.main", *command, stderr=asyncio.subprocess.PIPE, cwd=ROOT
        )
        _, err = await asyncio.wait_for(refused.communicate(), 30)
        assert refused.returncode == 2 and complaint in err.decode(), err.decode()
