"""The public SDK with real services: a handler per task type, a task no handler takes, and an
agent that finds its server and credentials in the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.recovery.service import RecoveryService
from services.router.service import RouterService
from shared.agent import Agent, TaskContext, TaskOutcome
from shared.bus import EventBus
from shared.credentials import CredentialStore
from shared.embedded import EmbeddedNats
from shared.events import AgentRegistered, TaskAttemptFailed, TaskCompleted, TaskFailed, TaskSubmitted
from shared.permissions import ADMIN, agent_user
from shared.settings import Settings
from tests.conftest import EventLog, running, watching_logs


async def test_each_task_type_runs_on_its_own_handler(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    agent = Agent("reviewer-1", capacity=2)

    @agent.handles("code_review", proficiency=0.9)
    async def review(task: TaskContext) -> TaskOutcome:
        await task.progress(50, "reading the diff")
        return TaskOutcome(result={"reviewed": task.payload["file"]}, quality=0.9)

    @agent.handles("testing", proficiency=0.6)
    async def test(task: TaskContext) -> str:
        return f"tested {task.payload['file']}"

    async with running(RouterService, settings), running(RecoveryService, settings):
        await agent.start(bus)
        await bus.append(
            TaskSubmitted(task_id="r", task_type="code_review", payload={"file": "a.py"}), expected=0
        )
        await bus.append(
            TaskSubmitted(task_id="t", task_type="testing", payload={"file": "b.py"}), expected=0
        )
        await event_log.wait_for(lambda evs: sum(isinstance(e, TaskCompleted) for e in evs) == 2)
        await agent.stop()
    [registered] = event_log.of_type(AgentRegistered)
    assert registered.capabilities == {"code_review": 0.9, "testing": 0.6}
    results = {e.task_id: (e.result, e.quality) for e in event_log.of_type(TaskCompleted)}
    assert results == {"r": ({"reviewed": "a.py"}, 0.9), "t": ("tested b.py", None)}


async def test_a_task_of_a_type_without_handler_fails_for_good_naming_the_missing_handler(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    with watching_logs("no_handler") as logs:  # before the agent binds its logger
        agent = Agent("reviewer-1", capabilities=["code_review", "testing"])

        @agent.handles("code_review")
        async def review(task: TaskContext) -> str:
            return "ok"

        async with running(RouterService, settings), running(RecoveryService, settings):
            await agent.start(bus)
            await bus.append(TaskSubmitted(task_id="t", task_type="testing"), expected=0)
            await event_log.wait_for(lambda evs: any(isinstance(e, TaskFailed) for e in evs))
            await agent.stop()
    [attempt] = event_log.of_type(TaskAttemptFailed)
    assert attempt.retryable is False
    assert "agent 'reviewer-1' has no handler for task type 'testing'" in attempt.error
    assert [entry["task_type"] for entry in logs.named("no_handler")] == ["testing"]
    assert len(event_log.of_type(TaskFailed)) == 1


async def test_an_agent_started_without_arguments_connects_where_nats_url_says(
    settings: Settings, bus: EventBus, event_log: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NATS_URL", settings.nats_url)
    for name in ("NATS_USER", "NATS_PASSWORD", "HIVE_AGENT_CREDENTIALS"):
        monkeypatch.delenv(name, raising=False)
    agent = Agent("from-env", capabilities=["x"])
    agent.handles("x")(_done)
    await agent.start()
    try:
        await event_log.wait_for(lambda evs: any(isinstance(e, AgentRegistered) for e in evs))
        assert agent.bus is not None and agent.bus is not bus
    finally:
        await agent.stop()


async def test_an_agent_connects_as_its_own_user_with_the_password_file_of_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CredentialStore(tmp_path / "home")
    store.ensure([ADMIN, agent_user("a")])
    server = EmbeddedNats(tmp_path / "nats", port=0, users_file=store.users_conf).start()
    admin_credentials = store.credentials(ADMIN)
    admin = await EventBus.connect(
        server.url, "admin", user=admin_credentials.user, password=admin_credentials.password
    )
    monkeypatch.setenv("NATS_URL", server.url)
    monkeypatch.setenv("HIVE_AGENT_CREDENTIALS", str(store.agents_path))
    monkeypatch.delenv("NATS_USER", raising=False)
    agent = Agent("a")
    agent.handles("x")(_done)
    try:
        await admin.ensure_streams()
        await agent.start()
        assert agent.bus is not None and agent.bus.user == "agent-a"
        registered = [r.event async for r in admin.read() if isinstance(r.event, AgentRegistered)]
        assert [e.agent_id for e in registered] == ["a"]
    finally:
        await agent.stop()
        await admin.close()
        server.stop()


async def _done(task: TaskContext) -> str:
    return "done"
