"""Forged reports: no agent changes the state of a task it does not hold, nor of another agent.

A real nats-server with Hive's users (credentials required, as ``hive up`` runs it), the router and
recovery under their own users, agents under theirs. Agent ``a`` attacks the tasks agent ``b`` holds
as issue 12 found it possible: reports naming ``b`` (refused by NATS, nothing stored), reports
naming itself (stored, changed nothing), a body naming ``b`` on its own subject (refused by every
reader), a push consumer delivering where it likes (no consumer may be created).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats.errors
import nats.js.errors
import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from services.recovery.service import RecoveryService
from services.router.service import RouterService
from shared.agent.inbox import open_inbox
from shared.agent.sdk import Agent, TaskContext
from shared.bus import EventBus
from shared.credentials import CredentialStore
from shared.denials import PermissionDenied
from shared.domain.breakers import admits
from shared.embedded import EmbeddedNats
from shared.events import (
    AnyEvent,
    BreakerOpened,
    TaskAttemptFailed,
    TaskCompleted,
    TaskFailed,
    TaskProgress,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
    encode_event,
)
from shared.permissions import ADMIN, SERVICES, agent_user
from shared.subjects import DLQ_STREAM, EVENTS_STREAM, HEALTH_PING, aggregate_subjects, dlq_subject
from tests.conftest import EventLog, running
from tests.integration.test_nats_permissions import connect_to, refused, service_settings

TASKS = 12
"""As many reports as opened a breaker in the issue (BREAKER_MIN_CALLS is 10)."""


@pytest.fixture
def store(tmp_path: Path) -> CredentialStore:
    credentials = CredentialStore(tmp_path / "home")
    credentials.ensure([ADMIN, *SERVICES, agent_user("a"), agent_user("b")])
    return credentials


@pytest.fixture
def secured(tmp_path: Path, store: CredentialStore) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path / "nats", port=0, users_file=store.users_conf).start()
    yield server
    server.stop()


@pytest.fixture
async def admin(secured: EmbeddedNats, store: CredentialStore) -> AsyncIterator[EventBus]:
    bus = await connect_to(secured.url, store, ADMIN)
    await bus.ensure_streams()
    yield bus
    await bus.close()


@pytest.fixture
async def forger(secured: EmbeddedNats, store: CredentialStore, admin: EventBus) -> AsyncIterator[EventBus]:
    """Agent a's own NATS connection, used by hand."""
    bus = await connect_to(secured.url, store, agent_user("a"))
    yield bus
    await bus.close()


class Victim:
    """Agent b holding TASKS tasks until released; agent a registered beside it (other work)."""

    def __init__(self, secured: EmbeddedNats, store: CredentialStore, admin: EventBus) -> None:
        self.secured, self.store, self.admin = secured, store, admin
        self.release = asyncio.Event()
        self.log = EventLog(admin)
        self.agents = [
            Agent("b", self.work, capabilities=["x"], capacity=TASKS),
            Agent("a", self.work, capabilities=["y"], capacity=1),
        ]

    async def work(self, context: TaskContext) -> str:
        await self.release.wait()
        return "done"

    async def start(self) -> None:
        await self.log.start()
        for agent in self.agents:
            credentials = self.store.credentials(agent_user(agent.agent_id))
            await agent.start(nats_url=self.secured.url, user=credentials.user, password=credentials.password)
        for index in range(TASKS):
            await self.admin.append(TaskSubmitted(task_id=f"t{index}", task_type="x"), expected=0)
        await self.log.wait_for(lambda evs: started_by(evs, "b") == TASKS)

    async def finish(self) -> None:
        """Let b finish: every task completes, by b, once."""
        self.release.set()
        await self.log.wait_for(
            lambda evs: len({e.task_id for e in evs if isinstance(e, TaskCompleted)}) == TASKS
        )
        completions = self.log.of_type(TaskCompleted)
        assert sorted(e.task_id for e in completions) == sorted(f"t{index}" for index in range(TASKS))
        assert {e.agent_id for e in completions} == {"b"}

    async def stop(self) -> None:
        for agent in self.agents:
            await agent.stop()
        await self.log.stop()


def started_by(events: list[AnyEvent], agent_id: str) -> int:
    return len({e.task_id for e in events if isinstance(e, TaskStarted) and e.agent_id == agent_id})


@pytest.fixture
async def victim(secured: EmbeddedNats, store: CredentialStore, admin: EventBus) -> AsyncIterator[Victim]:
    hive = Victim(secured, store, admin)
    yield hive
    await hive.stop()


async def test_an_agent_cannot_fail_another_agents_task_nor_open_either_breaker(
    secured: EmbeddedNats,
    store: CredentialStore,
    admin: EventBus,
    forger: EventBus,
    victim: Victim,
    tmp_path: Path,
) -> None:
    router_settings = service_settings(secured, store, tmp_path, "router")
    recovery_settings = service_settings(secured, store, tmp_path, "recovery")
    async with (
        running(RouterService, router_settings) as router,
        running(RecoveryService, recovery_settings) as recovery,
    ):
        await victim.start()
        # Naming the holder, as the issue did: NATS refuses it, nothing is stored.
        before = await admin.last_sequence()
        for index in range(TASKS):
            forged = TaskAttemptFailed(
                task_id=f"t{index}", agent_id="b", attempt=1, retryable=False, error="forged by a"
            )
            with pytest.raises(PermissionDenied, match="agent-a"):
                await forger.append(forged, expected=None)
        assert await admin.last_sequence() == before
        # Naming itself, on its own subject: stored (NATS cannot know who holds a task), and nothing
        # takes it: the task stays b's, no failure is charged to b or to a, no breaker opens.
        for index in range(TASKS):
            own = TaskAttemptFailed(
                task_id=f"t{index}", agent_id="a", attempt=1, retryable=index % 2 == 0, error="forged by a"
            )
            last = await forger.append(own, expected=None)
        progress = await forger.append(
            TaskProgress(task_id="t0", agent_id="a", attempt=1, percent=99), expected=None
        )
        assert progress.seq > last.seq
        await recovery.view.wait_for(progress.seq)
        await router.view.wait_for(progress.seq)
        await recovery.tick(full=True)  # the breakers judged now, on everything stored
        # The router reads no starts (its decisions do not use them): its tasks stay assigned.
        for view, status in ((recovery.view.state, "running"), (router.view.state, "assigned")):
            tasks = [view.fleet.tasks[f"t{index}"] for index in range(TASKS)]
            assert {(task.status, task.agent_id, task.attempt) for task in tasks} == {(status, "b", 1)}
            assert view.fleet.tasks["t0"].progress == 0.0
            assert view.fleet.agents["a"].failed == view.fleet.agents["b"].failed == 0
            assert admits(view.breakers, "a") is None and admits(view.breakers, "b") is None
        assert recovery.view.state.outcomes.agents.get("a") is None
        assert router.view.state.performance.outcomes == 0
        await victim.finish()
    stored = victim.log.events
    assert not [e for e in stored if isinstance(e, BreakerOpened | TaskRequeued | TaskFailed)]


async def test_a_body_naming_another_agent_on_its_own_subject_is_refused_by_every_reader(
    secured: EmbeddedNats,
    store: CredentialStore,
    admin: EventBus,
    forger: EventBus,
    victim: Victim,
    tmp_path: Path,
) -> None:
    letters = await admin.js.subscribe(dlq_subject("recovery"), stream=DLQ_STREAM)
    router_settings = service_settings(secured, store, tmp_path, "router")
    recovery_settings = service_settings(secured, store, tmp_path, "recovery")
    async with (
        running(RouterService, router_settings) as router,
        running(RecoveryService, recovery_settings) as recovery,
    ):
        await victim.start()
        forged = TaskAttemptFailed(
            task_id="t0", agent_id="b", attempt=1, retryable=False, error="forged by a"
        )
        own_subject = forged.subject.removesuffix(".b") + ".a"
        # NATS sees the subject, not the body: it is stored...
        ack = await forger.js.publish(own_subject, encode_event(forged))
        # ...and every reader refuses it: recovery's work consumer dead-letters it with the reason.
        letter = await letters.next_msg(timeout=10)
        assert own_subject in letter.data.decode() and "does not match" in letter.data.decode()
        await recovery.view.wait_for(ack.seq)
        await router.view.wait_for(ack.seq)
        await recovery.tick(full=True)
        for view, status in ((recovery.view.state, "running"), (router.view.state, "assigned")):
            task = view.fleet.tasks["t0"]  # the router reads no starts: its task stays assigned
            assert (task.status, task.agent_id, task.attempt) == (status, "b", 1)
            assert view.fleet.agents["b"].failed == 0
            assert admits(view.breakers, "b") is None
        await victim.finish()
    assert not [e for e in victim.log.events if isinstance(e, TaskAttemptFailed | TaskRequeued | TaskFailed)]


async def test_an_agent_creates_no_consumer_so_none_delivers_where_it_likes(
    secured: EmbeddedNats, store: CredentialStore, admin: EventBus, forger: EventBus
) -> None:
    """A push consumer delivers to its ``deliver_subject``, which is in the request body: an agent
    able to create its own consumer could have the server publish on another's subjects (here the
    services' health requests). Agents may create none; their inbox is opened for them."""
    push = ConsumerConfig(
        name="agent-a",
        durable_name="agent-a",
        deliver_subject=HEALTH_PING,
        ack_policy=AckPolicy.NONE,
        filter_subject=aggregate_subjects("agent", "a"),
    )
    with pytest.raises(nats.errors.TimeoutError):
        await forger.js.add_consumer(EVENTS_STREAM, push, timeout=0.5)
    create = f"$JS.API.CONSUMER.CREATE.{EVENTS_STREAM}.agent-a.{aggregate_subjects('agent', 'a')}"
    assert await refused(forger, create)
    with pytest.raises(nats.js.errors.NotFoundError):
        await admin.js.consumer_info(EVENTS_STREAM, "agent-a")
    # Its inbox, opened for it, is a pull consumer it may neither replace nor delete.
    await open_inbox(admin.js, "a", registered_seq=0, capacity=1)
    with pytest.raises(nats.errors.TimeoutError):
        await forger.nc.request(f"$JS.API.CONSUMER.DELETE.{EVENTS_STREAM}.agent-a", b"", timeout=0.5)
    assert await refused(forger, f"$JS.API.CONSUMER.DELETE.{EVENTS_STREAM}.agent-a")
    info = await admin.js.consumer_info(EVENTS_STREAM, "agent-a")
    assert info.config.deliver_subject is None


async def test_a_guessed_message_id_swallows_neither_the_holders_reports_nor_a_services_decision(
    secured: EmbeddedNats,
    store: CredentialStore,
    admin: EventBus,
    forger: EventBus,
    victim: Victim,
    tmp_path: Path,
) -> None:
    """The server de-duplicates message ids across the whole stream: whoever stores a key first
    makes a later append with the same key a "duplicate" that is never stored. Agent a stores its
    own reports under the keys b's completions and a service's decisions would have used."""
    router_settings = service_settings(secured, store, tmp_path, "router")
    recovery_settings = service_settings(secured, store, tmp_path, "recovery")
    async with (
        running(RouterService, router_settings),
        running(RecoveryService, recovery_settings) as recovery,
    ):
        await victim.start()
        for index in range(TASKS):
            for key in (f"task.completed:t{index}:1", f"task.started:t{index}:1"):
                own = TaskProgress(task_id=f"t{index}", agent_id="a", attempt=1, percent=1)
                await forger.append(own, expected=None, msg_id=key)
        # A service's shared key, taken first: its decision is stored all the same, under its own id.
        taken = TaskProgress(task_id="t0", agent_id="a", attempt=1, percent=2)
        await forger.append(taken, expected=None, msg_id="requeue:t0:2")
        requeue = TaskRequeued(task_id="t0", attempt=2, previous_agent_id="b", reason="test")
        stored = await recovery.bus.append(requeue, expected=None, msg_id="requeue:t0:2")
        assert not stored.duplicate
        assert await admin.subject_at(stored.seq) == requeue.subject
        victim.release.set()
        # Every completion of b's that still counts is stored, under keys nobody could guess.
        await victim.log.wait_for(
            lambda evs: (
                {e.task_id for e in evs if isinstance(e, TaskCompleted) and e.agent_id == "b"}
                >= {f"t{index}" for index in range(1, TASKS)}
            )
        )
