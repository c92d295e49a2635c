"""An agent in another language: the JavaScript example (``examples/js-agent``), written from
``docs/agent-protocol.md``, against real services on a nats-server that requires credentials. It
registers under its own user, reads the inbox the router opens for it, takes tasks, reports on
subjects naming itself, is fenced after a takeover like a Python agent but not by another agent's
reports, and a malformed report it sends is dead-lettered while the services go on. Without
credentials it opens its inbox itself."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.msg import Msg

from services.recovery.service import RecoveryService
from services.router.service import RouterService
from shared.bus import DeadLetter, EventBus
from shared.credentials import CredentialStore
from shared.domain.heartbeats import Heartbeat, decode_heartbeat
from shared.embedded import EmbeddedNats
from shared.events import (
    AgentDeregistered,
    AgentDraining,
    AgentRegistered,
    AgentStalled,
    AgentUnresponsive,
    RetryPolicy,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCompleted,
    TaskFailed,
    TaskProgress,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
)
from shared.permissions import ADMIN, agent_durable, agent_user
from shared.settings import Settings, load_settings
from shared.subjects import DLQ_STREAM, EVENTS_STREAM, dlq_subject, heartbeat_subject
from tests.conftest import EventLog, running

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "js-agent"
AGENT = "js-1"
FORGER = "forger"


@pytest.fixture(scope="module")
def node() -> str:
    """``node``, with the example's npm dependencies installed (``npm ci``) if they are missing."""
    found = shutil.which("node")
    if found is None:
        pytest.skip("node is not installed: the JavaScript agent cannot run here")
    if not (EXAMPLE / "node_modules" / "@nats-io" / "jetstream").is_dir():
        npm = shutil.which("npm")
        assert npm is not None, "npm is needed to install the example's dependencies"
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=EXAMPLE, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    return found


@pytest.fixture
def store(tmp_path: Path) -> CredentialStore:
    credentials = CredentialStore(tmp_path / "home")
    credentials.ensure([ADMIN, "router", "recovery", agent_user(AGENT), agent_user(FORGER)])
    return credentials


@pytest.fixture
def secured(tmp_path: Path, store: CredentialStore) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path / "nats", port=0, users_file=store.users_conf).start()
    yield server
    server.stop()


@pytest.fixture
async def admin(secured: EmbeddedNats, store: CredentialStore) -> AsyncIterator[EventBus]:
    credentials = store.credentials(ADMIN)
    bus = await EventBus.connect(secured.url, "admin", user=credentials.user, password=credentials.password)
    await bus.ensure_streams()
    yield bus
    await bus.close()


@pytest.fixture
async def log(admin: EventBus) -> AsyncIterator[EventLog]:
    events = await EventLog(admin).start()
    yield events
    await events.stop()


def service_settings(server: EmbeddedNats, store: CredentialStore, tmp_path: Path, service: str) -> Settings:
    credentials = store.credentials(service)
    return load_settings(
        {},
        nats_url=server.url,
        nats_user=credentials.user,
        nats_password=credentials.password,
        hive_home=str(tmp_path / "home"),
        heartbeat_interval_s=0.2,
    )


@pytest.fixture
async def hive(
    secured: EmbeddedNats, store: CredentialStore, admin: EventBus, tmp_path: Path
) -> AsyncIterator[None]:
    """Router and recovery, each as its own NATS user."""
    router = service_settings(secured, store, tmp_path, "router")
    recovery = service_settings(secured, store, tmp_path, "recovery")
    async with running(RouterService, router), running(RecoveryService, recovery):
        yield


class NodeAgent:
    """``node main.js`` as agent ``js-1``, under its own NATS user when a credential store is given;
    its JSON log lines kept."""

    def __init__(self, node: str, server: EmbeddedNats, store: CredentialStore | None) -> None:
        self.command = [node, str(EXAMPLE / "main.js")]
        self.env = {
            **{
                k: v
                for k, v in os.environ.items()
                if k not in ("NATS_USER", "NATS_PASSWORD", "HIVE_AGENT_CREDENTIALS")
            },
            **({"HIVE_AGENT_CREDENTIALS": str(store.agents_path)} if store is not None else {}),
            "NATS_URL": server.url,
            "HIVE_AGENT_ID": AGENT,
            "HIVE_CAPABILITIES": "code_review=0.8",
            "HIVE_CAPACITY": "2",
            "HEARTBEAT_INTERVAL_S": "0.2",
        }
        self.lines: list[dict[str, Any]] = []
        self.output: list[str] = []
        self.changed = asyncio.Event()

    async def __aenter__(self) -> NodeAgent:
        self.process = await asyncio.create_subprocess_exec(
            *self.command,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self.reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        await self.reader

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while raw := await self.process.stdout.readline():
            text = raw.decode(errors="replace").rstrip()
            self.output.append(text)
            with contextlib.suppress(ValueError):  # not a log line of its own (a runtime warning)
                self.lines.append(json.loads(text))
            self.changed.set()

    async def logged(self, event: str, timeout: float = 15.0) -> dict[str, Any]:
        """The first log line of `event`, waiting for it."""

        async def scan() -> dict[str, Any]:
            while True:
                for line in self.lines:
                    if line.get("event") == event:
                        return line
                self.changed.clear()
                await self.changed.wait()

        try:
            return await asyncio.wait_for(scan(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"no {event!r} logged within {timeout}s:\n" + "\n".join(self.output[-20:])
            ) from None

    async def drain(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), 30)


def review(task_id: str, **payload: Any) -> TaskSubmitted:
    return TaskSubmitted(
        task_id=task_id,
        task_type="code_review",
        payload=payload,
        retry=RetryPolicy(max_attempts=3, initial_backoff_s=0.01),
    )


def ended(task_id: str, kind: type[Any]) -> Any:
    return lambda evs: any(isinstance(e, kind) and e.task_id == task_id for e in evs)


async def test_a_javascript_agent_registers_takes_tasks_reports_and_drains(
    node: str, hive: None, secured: EmbeddedNats, store: CredentialStore, admin: EventBus, log: EventLog
) -> None:
    async with NodeAgent(node, secured, store) as agent:
        await log.wait_for(lambda evs: any(isinstance(e, AgentRegistered) for e in evs), timeout=30)
        await admin.append(review("good", diff="+x = 1\n+y = 2  # TODO: name"), expected=0)
        await admin.append(review("flaky", diff="", fail="once"), expected=0)
        await admin.append(review("doomed", fail="always"), expected=0)
        for task_id, kind in (("good", TaskCompleted), ("flaky", TaskCompleted), ("doomed", TaskFailed)):
            await log.wait_for(ended(task_id, kind), timeout=20)
        beats: asyncio.Queue[Heartbeat] = asyncio.Queue()

        async def on_beat(msg: Msg) -> None:
            await beats.put(decode_heartbeat(msg.subject, msg.data))

        heard = await admin.nc.subscribe(heartbeat_subject(AGENT), cb=on_beat)
        beat = await asyncio.wait_for(beats.get(), 10)
        await heard.unsubscribe()
        assert await agent.drain() == 0
        await log.wait_for(lambda evs: any(isinstance(e, AgentDeregistered) for e in evs))
    [registered] = log.of_type(AgentRegistered)
    assert (registered.agent_id, registered.capabilities, registered.capacity) == (
        AGENT,
        {"code_review": 0.8},
        2,
    )
    assert registered.persona.cognitive_style == "meticulous"
    completed = {e.task_id: e for e in log.of_type(TaskCompleted)}
    assert (
        completed["good"].result == {"comments": ["+y = 2  # TODO: name"]}
        and completed["good"].quality == 0.8
    )
    assert completed["flaky"].attempt == 2
    failures = {(e.task_id, e.attempt): e for e in log.of_type(TaskAttemptFailed)}
    assert failures[("flaky", 1)].retryable and "the model timed out" in failures[("flaky", 1)].error
    assert failures[("doomed", 1)].retryable is False
    assert any(isinstance(e, TaskProgress) and e.task_id == "good" and e.percent == 50 for e in log.events)
    kinds = [type(e) for e in log.events]
    assert kinds.index(AgentDraining) < kinds.index(AgentDeregistered)
    assert log.of_type(AgentUnresponsive) == [], "its heartbeats kept it alive"
    assert "Violation" not in secured.log_path.read_text(), "it did only what its permissions allow"
    # Its beats say it read every assignment (all were started before the beat was heard).
    seqs = zip(log.events, log.seqs, strict=True)
    last_assigned = max(seq for e, seq in seqs if isinstance(e, TaskAssigned))
    assert beat.received_seq is not None and beat.received_seq >= last_assigned
    assert log.of_type(AgentStalled) == []


async def test_a_javascript_agent_is_fenced_after_a_takeover(
    node: str,
    hive: None,
    secured: EmbeddedNats,
    store: CredentialStore,
    admin: EventBus,
    log: EventLog,
    tmp_path: Path,
) -> None:
    release = tmp_path / "release"
    async with NodeAgent(node, secured, store) as agent:
        await log.wait_for(lambda evs: any(isinstance(e, AgentRegistered) for e in evs), timeout=30)
        await admin.append(review("t", diff="+TODO", hold_until=str(release)), expected=0)
        await log.wait_for(ended("t", TaskProgress))
        # The attempt is taken over behind the agent's back (what recovery does to a silent agent).
        await admin.append(
            TaskRequeued(task_id="t", attempt=2, reason="agent_unresponsive"),
            expected=await admin.aggregate_version("task", "t"),
        )
        release.touch()
        refused = await agent.logged("report_refused")
    assert (refused["type"], refused["attempt"]) == ("task.completed", 1)
    assert refused["reason"] == "attempt 1 superseded by attempt 2"
    assert [e.attempt for e in log.of_type(TaskStarted)] == [1]
    assert log.of_type(TaskCompleted) == [], "the late result was refused: nothing stored"


async def test_a_malformed_report_from_a_javascript_agent_is_dead_lettered_and_hive_goes_on(
    node: str, hive: None, secured: EmbeddedNats, store: CredentialStore, admin: EventBus, log: EventLog
) -> None:
    letters = await admin.js.subscribe(dlq_subject("recovery"), stream=DLQ_STREAM)
    async with NodeAgent(node, secured, store):
        await log.wait_for(lambda evs: any(isinstance(e, AgentRegistered) for e in evs), timeout=30)
        await admin.append(review("odd", diff="+TODO", malformed=True), expected=0)
        letter = msgspec.json.decode((await letters.next_msg(timeout=20)).data, type=DeadLetter)
        # Recovery goes on: a later failure is still handled (retried) and the task completes.
        await admin.append(review("later", diff="", fail="once"), expected=0)
        await log.wait_for(ended("later", TaskCompleted), timeout=20)
    assert letter.subject == f"hive.evt.task.odd.attempt_failed.{AGENT}" and "retryable" in letter.reason
    assert [(e.task_id, e.attempt) for e in log.of_type(TaskRequeued)] == [("later", 2)]


async def test_another_agents_reports_on_its_attempt_do_not_make_a_javascript_agent_give_up(
    node: str,
    hive: None,
    secured: EmbeddedNats,
    store: CredentialStore,
    admin: EventBus,
    log: EventLog,
    tmp_path: Path,
) -> None:
    release = tmp_path / "release"
    async with NodeAgent(node, secured, store) as agent:
        await log.wait_for(lambda evs: any(isinstance(e, AgentRegistered) for e in evs), timeout=30)
        await admin.append(review("t", diff="+TODO", hold_until=str(release)), expected=0)
        await log.wait_for(ended("t", TaskProgress))
        # Another agent reports on js-1's attempt, under its own name (all its permissions allow):
        # stored, so js-1's next report is refused (the task's sequence moved) and it reads the task.
        credentials = store.credentials(agent_user(FORGER))
        forger = await EventBus.connect(
            secured.url, FORGER, user=credentials.user, password=credentials.password
        )
        try:
            await forger.append(
                TaskCompleted(task_id="t", agent_id=FORGER, attempt=1, result="forged"), expected=None
            )
            await forger.append(
                TaskAttemptFailed(task_id="t", agent_id=FORGER, attempt=1, error="forged", retryable=False),
                expected=None,
            )
        finally:
            await forger.close()
        release.touch()
        await log.wait_for(lambda evs: any(isinstance(e, TaskCompleted) and e.agent_id == AGENT for e in evs))
    assert "report_refused" not in [line.get("event") for line in agent.lines]
    assert [(e.agent_id, e.result) for e in log.of_type(TaskCompleted)] == [
        (FORGER, "forged"),
        (AGENT, {"comments": ["+TODO"]}),
    ]
    assert log.of_type(TaskRequeued) == [] and log.of_type(TaskFailed) == [], "the forgery changed nothing"


async def test_without_credentials_a_javascript_agent_opens_its_own_inbox(
    node: str, nats_server: EmbeddedNats, settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    async with (
        running(RouterService, settings),
        running(RecoveryService, settings),
        NodeAgent(node, nats_server, None) as agent,
    ):
        await event_log.wait_for(lambda evs: any(isinstance(e, AgentRegistered) for e in evs), timeout=30)
        await bus.append(review("solo", diff="+TODO"), expected=0)
        await event_log.wait_for(ended("solo", TaskCompleted), timeout=20)
        inbox = await bus.js.consumer_info(EVENTS_STREAM, agent_durable(AGENT))
    assert inbox.config.filter_subject == f"hive.evt.agent.{AGENT}.>" and not inbox.config.deliver_subject
    assert "waiting_for_inbox" not in [line.get("event") for line in agent.lines]
