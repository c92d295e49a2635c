"""The agent SDK's public surface: one import, handlers per task type, what a result may be, and
where an agent connects. No NATS: the parts that decide."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import shared.agent
from shared.agent import Agent, AgentSetupError, CredentialsError, NonRetryableError, TaskContext, TaskOutcome
from shared.agent.connection import DEFAULT_NATS_URL, Connection, connection_for
from shared.agent.handlers import Handlers, checked_capabilities
from shared.agent.settle import MAX_RESULT_BYTES, Failure, failure_of, missing_handler, settle, timed_out

ROOT = Path(__file__).resolve().parents[2]
SERVER_SIDE = ("prometheus_client", "opentelemetry", "litestar", "uvicorn", "aiosqlite", "services")


async def noop(task: TaskContext) -> None:
    return None


def test_everything_an_author_needs_comes_from_one_import_and_all_is_true() -> None:
    from shared.agent import Persona  # noqa: F401  (the issue's one import line, checked to work)

    assert {"Agent", "TaskContext", "TaskOutcome", "Persona", "NonRetryableError"} <= set(
        shared.agent.__all__
    )
    missing = [name for name in shared.agent.__all__ if not hasattr(shared.agent, name)]
    assert missing == []
    assert sorted(shared.agent.__all__) == shared.agent.__all__


def test_importing_the_sdk_loads_no_server_side_package() -> None:
    probe = (
        "import json, sys; import shared.agent, shared.agent.testing; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
    )
    assert [name for name in SERVER_SIDE if name in loaded] == []


def test_the_context_shows_the_task_but_not_the_assignment_nor_the_fencing_cursor() -> None:
    public = {name for name in dir(TaskContext) if not name.startswith("_")}
    assert {"task_id", "task_type", "payload", "attempt", "deadline", "is_cancelled", "progress"} <= public
    assert not {"assignment", "last_seq", "cancelled", "agent"} & public


def test_capabilities_follow_from_the_handlers_unless_given() -> None:
    agent = Agent("a")

    @agent.handles("code_review", proficiency=0.9)
    async def review(task: TaskContext) -> None: ...

    @agent.handles("testing")
    async def test(task: TaskContext) -> None: ...

    assert agent.capabilities == {"code_review": 0.9, "testing": 1.0}
    assert agent.handler_for("code_review") is review
    assert agent.handler_for("refactoring") is None
    given = Agent("b", capabilities={"code_review": 0.5, "python": 0.8})
    given.handles("code_review")(noop)
    assert given.capabilities == {"code_review": 0.5, "python": 0.8}


def test_a_catch_all_handler_takes_the_types_without_their_own() -> None:
    handlers = Handlers(noop, ["x", "y"])

    async def special(task: TaskContext) -> None: ...

    handlers.add("y", special, 1.0)
    assert handlers.for_type("x") is noop and handlers.for_type("y") is special


@pytest.mark.parametrize(
    ("register", "complaint"),
    [
        (lambda agent: agent.handles("Code Review")(noop), "invalid capabilities"),
        (lambda agent: agent.handles("x", proficiency=1.5)(noop), "invalid capabilities"),
        (lambda agent: agent.handles("x")(lambda task: None), "must be an async function"),
        (lambda agent: [agent.handles("x")(noop), agent.handles("x")(noop)], "already has a handler"),
    ],
)
def test_a_handler_registered_wrongly_is_refused_at_once_saying_what_to_change(
    register: Any, complaint: str
) -> None:
    with pytest.raises(AgentSetupError, match=complaint):
        register(Agent("a"))


def test_a_handler_for_a_type_outside_the_given_capabilities_is_refused() -> None:
    agent = Agent("a", capabilities=["python"])
    with pytest.raises(AgentSetupError, match="do not include it"):
        agent.handles("code_review")(noop)


async def test_an_agent_without_handler_or_capability_refuses_to_start() -> None:
    with pytest.raises(AgentSetupError, match="has no handler"):
        await Agent("idle", capabilities=["x"]).start()
    with pytest.raises(AgentSetupError, match="offers no capability"):
        await Agent("vague", noop).start()


def test_bad_capabilities_and_capacity_are_refused_when_the_agent_is_built() -> None:
    with pytest.raises(AgentSetupError, match="invalid capabilities"):
        Agent("a", noop, capabilities={"x": 2.0})
    with pytest.raises(AgentSetupError, match="not the string"):
        checked_capabilities("code_review")
    with pytest.raises(AgentSetupError, match="capacity"):
        Agent("a", noop, capabilities=["x"], capacity=0)


def test_what_a_handler_returns_becomes_a_completion() -> None:
    assert settle({"comments": 3}) == TaskOutcome(result={"comments": 3})
    assert settle(TaskOutcome(result="ok", quality=1)) == TaskOutcome(result="ok", quality=1.0)
    assert settle(None) == TaskOutcome()


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        (TaskOutcome(result="ok", quality=1.5), "quality must be from 0 to 1"),
        (TaskOutcome(result="ok", quality=True), "quality must be from 0 to 1"),
        (object(), "not JSON-encodable"),
        ("x" * (MAX_RESULT_BYTES + 1), "more than"),
    ],
)
def test_a_result_hive_could_not_store_fails_the_attempt_for_good(value: Any, complaint: str) -> None:
    failure = settle(value)
    assert isinstance(failure, Failure) and not failure.retryable
    assert complaint in failure.error


def test_only_a_non_retryable_error_or_a_missing_handler_fails_a_task_for_good() -> None:
    assert failure_of(RuntimeError("flaky")) == Failure("RuntimeError: flaky", "agent_error", True)
    assert failure_of(NonRetryableError("bad input")).retryable is False
    assert timed_out(2.5) == Failure(
        "TimeoutError: the attempt ran past its timeout of 2.5 s", "task_timeout"
    )
    missing = missing_handler("r1", "testing", ["code_review"])
    assert not missing.retryable
    assert "no handler for task type 'testing'" in missing.error and "code_review" in missing.error


def test_an_agent_connects_as_told_else_as_the_environment_says(tmp_path: Path) -> None:
    assert connection_for("a", env={}) == Connection(DEFAULT_NATS_URL)
    assert connection_for("a", env={"NATS_URL": "nats://n:1"}) == Connection("nats://n:1")
    env = {"NATS_URL": "nats://n:1", "NATS_USER": "agent-a", "NATS_PASSWORD": "pw"}
    assert connection_for("a", env=env) == Connection("nats://n:1", "agent-a", "pw")
    assert connection_for("a", url="nats://x:2", user="u", password="p", env=env) == Connection(
        "nats://x:2", "u", "p"
    )
    passwords = tmp_path / "agents.json"
    passwords.write_text(json.dumps({"agent-a": "secret"}))
    env["HIVE_AGENT_CREDENTIALS"] = str(passwords)
    assert connection_for("a", env=env) == Connection("nats://n:1", "agent-a", "secret")
    with pytest.raises(CredentialsError, match="hive auth agent b"):
        connection_for("b", env=env)
