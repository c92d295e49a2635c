"""nats-server with Hive's users: each role may publish what it decides and nothing else.

A real nats-server per test, configured as ``hive up`` configures it (generated users and
permissions, credentials required).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import nats.errors
import pytest
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig

from services.router.service import RouterService
from shared.agent.inbox import open_inbox
from shared.agent.sdk import Agent, TaskContext
from shared.bus import EventBus, NatsAuthError
from shared.credentials import CredentialStore
from shared.denials import PermissionDenied
from shared.domain.heartbeats import Heartbeat
from shared.embedded import (
    ClusterSpec,
    EmbeddedCluster,
    EmbeddedNats,
    EmbeddedNatsError,
    nats_server_binary,
    server_config,
)
from shared.events import (
    AgentRegistered,
    BreakerOpened,
    TaskAssigned,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
    WorkflowCompleted,
)
from shared.permissions import ADMIN, SERVICES, agent_user
from shared.settings import Settings, load_settings
from shared.subjects import EVENTS_STREAM, heartbeat_subject
from tests.conftest import EventLog, running

AGENTS = ("a", "b")


@pytest.fixture
def store(tmp_path: Path) -> CredentialStore:
    credentials = CredentialStore(tmp_path / "home")
    credentials.ensure([ADMIN, *SERVICES, *(agent_user(agent_id) for agent_id in AGENTS)])
    return credentials


@pytest.fixture
def secured(tmp_path: Path, store: CredentialStore) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path / "nats", port=0, users_file=store.users_conf).start()
    yield server
    server.stop()


async def connect(server: EmbeddedNats, store: CredentialStore, user: str) -> EventBus:
    return await connect_to(server.url, store, user)


@pytest.fixture
async def admin(secured: EmbeddedNats, store: CredentialStore) -> AsyncIterator[EventBus]:
    bus = await connect(secured, store, ADMIN)
    await bus.ensure_streams()
    yield bus
    await bus.close()


@pytest.fixture
async def agent_a(secured: EmbeddedNats, store: CredentialStore, admin: EventBus) -> AsyncIterator[EventBus]:
    bus = await connect(secured, store, agent_user("a"))
    yield bus
    await bus.close()


async def refused(bus: EventBus, subject: str) -> bool:
    """Whether the server refuses `subject` to this connection (it says so, asynchronously)."""
    assert bus.denials is not None
    try:
        await bus.denials.refusal(subject, timeout=5)
    except TimeoutError:
        return False
    return True


def heartbeat(agent_id: str) -> bytes:
    beat = Heartbeat(agent_id=agent_id, session="s", ts=time.time(), in_flight=0, capacity=1)
    return msgspec.json.encode(beat)


async def test_an_agent_may_not_publish_another_agents_heartbeat(
    secured: EmbeddedNats, store: CredentialStore, agent_a: EventBus
) -> None:
    recovery = await connect(secured, store, "recovery")
    beats: asyncio.Queue[str] = asyncio.Queue()

    async def on_beat(msg: Msg) -> None:
        await beats.put(msg.subject)

    await recovery.nc.subscribe("hive.hb.*", cb=on_beat)
    await recovery.nc.flush()
    await agent_a.nc.publish(heartbeat_subject("b"), heartbeat("b"))  # posing as b
    await agent_a.nc.publish(heartbeat_subject("a"), heartbeat("a"))
    # One connection's messages arrive in order: had b's passed, it would come first.
    assert await asyncio.wait_for(beats.get(), 5) == "hive.hb.a"
    assert await refused(agent_a, "hive.hb.b")
    assert beats.empty()
    await recovery.close()


async def test_an_agent_may_not_append_what_services_decide_and_nothing_is_stored(
    admin: EventBus, agent_a: EventBus
) -> None:
    await admin.append(TaskSubmitted(task_id="t", task_type="x"), expected=0)
    before = await admin.last_sequence()
    forgeries = [
        TaskAssigned(agent_id="a", task_id="t", attempt=1, task_seq=before),  # its own aggregate
        TaskRequeued(task_id="t", attempt=2, reason="agent_unresponsive"),
        AgentRegistered(agent_id="b", capabilities={"x": 1.0}, session="s"),  # another agent
    ]
    for forged in forgeries:
        started = time.monotonic()
        with pytest.raises(PermissionDenied) as denied:
            await agent_a.append(forged, expected=None)
        assert time.monotonic() - started < 4, "refused at once, not after the append timeout"
        assert "agent-a" in str(denied.value) and forged.subject in str(denied.value)
        assert "nothing was stored" in str(denied.value)
    assert await admin.last_sequence() == before
    # What an agent does decide is allowed.
    await agent_a.append(AgentRegistered(agent_id="a", capabilities={"x": 1.0}, session="s"), expected=None)
    await agent_a.append(TaskStarted(task_id="t", agent_id="a", attempt=1), expected=None)
    assert await admin.last_sequence() == before + 2


async def test_an_agent_reads_only_its_own_assignments_and_acks_only_its_own_deliveries(
    admin: EventBus, agent_a: EventBus
) -> None:
    js = agent_a.js
    # Its inbox is opened for it (by the router; here by the admin): an agent creates no consumer.
    await open_inbox(admin.js, "a", registered_seq=0, capacity=1)
    assert (await js.consumer_info(EVENTS_STREAM, "agent-a")).config.filter_subject == "hive.evt.agent.a.>"
    for name, filter_subject in [
        ("agent-a", "hive.evt.agent.a.*"),  # even its own durable
        ("agent-a", "hive.evt.>"),  # its own durable, but everything
        ("agent-b", "hive.evt.agent.b.*"),  # another agent's assignments
        ("spy", "hive.evt.agent.b.*"),
    ]:
        config = ConsumerConfig(
            name=name, durable_name=name, ack_policy=AckPolicy.EXPLICIT, filter_subject=filter_subject
        )
        with pytest.raises(nats.errors.TimeoutError):
            await js.add_consumer(EVENTS_STREAM, config, timeout=0.5)
        assert await refused(agent_a, f"$JS.API.CONSUMER.CREATE.{EVENTS_STREAM}.{name}.{filter_subject}")
    # Another consumer's work: neither pulled nor acknowledged.
    await admin.js.add_consumer(
        EVENTS_STREAM, ConsumerConfig(name="router", durable_name="router", ack_policy=AckPolicy.EXPLICIT)
    )
    await agent_a.nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{EVENTS_STREAM}.router", b'{"batch": 1}')
    await agent_a.nc.publish(f"$JS.ACK.{EVENTS_STREAM}.router.1.1.1.1.0", b"+ACK")
    assert await refused(agent_a, f"$JS.API.CONSUMER.MSG.NEXT.{EVENTS_STREAM}.router")
    assert await refused(agent_a, f"$JS.ACK.{EVENTS_STREAM}.router.1.1.1.1.0")


async def test_a_service_may_append_only_the_events_it_decides(
    secured: EmbeddedNats, store: CredentialStore, admin: EventBus
) -> None:
    router = await connect(secured, store, "router")
    gateway = await connect(secured, store, "gateway")
    try:
        await gateway.append(TaskSubmitted(task_id="t", task_type="x"), expected=0)
        seq = await router.aggregate_version("task", "t")
        await router.append(TaskAssigned(agent_id="a", task_id="t", attempt=1, task_seq=seq), expected=None)
        with pytest.raises(PermissionDenied):
            await router.append(WorkflowCompleted(workflow_id="w"), expected=None)
        with pytest.raises(PermissionDenied):
            await router.append(BreakerOpened(agent_id="a", failure_rate=1.0, calls=10), expected=None)
        retry = TaskAssigned(agent_id="a", task_id="t", attempt=2, task_seq=seq)
        with pytest.raises(PermissionDenied):
            await gateway.append(retry, expected=None)
    finally:
        await router.close()
        await gateway.close()


async def test_connections_without_or_with_wrong_credentials_are_refused_clearly(
    secured: EmbeddedNats,
) -> None:
    started = time.monotonic()
    with pytest.raises(NatsAuthError, match="without credentials"):
        await EventBus.connect(secured.url, "anonymous", connect_timeout=10)
    with pytest.raises(NatsAuthError, match="refused user 'agent-a'"):
        await EventBus.connect(secured.url, "wrong", user="agent-a", password="guess", connect_timeout=10)
    assert time.monotonic() - started < 8, "a refusal is reported at once, not after the connect timeout"


async def test_an_agent_under_its_own_user_works_and_is_fenced_through_its_reader(
    secured: EmbeddedNats, store: CredentialStore, admin: EventBus, tmp_path: Path
) -> None:
    """The SDK's every call passes its permissions: register, assignments, reports, history read."""
    release = asyncio.Event()

    async def slow(context: TaskContext) -> str:
        await release.wait()
        return "late"

    settings = service_settings(secured, store, tmp_path, "router")
    log = await EventLog(admin).start()
    agent = Agent("a", slow, capabilities=["x"], capacity=1)
    credentials = store.credentials(agent_user("a"))
    try:
        async with running(RouterService, settings):
            await agent.start(nats_url=secured.url, user=credentials.user, password=credentials.password)
            await admin.append(TaskSubmitted(task_id="t", task_type="x"), expected=0)
            await log.wait_for(lambda evs: any(isinstance(e, TaskStarted) for e in evs))
            await admin.append(
                TaskRequeued(task_id="t", attempt=2, reason="agent_unresponsive"),
                expected=await admin.aggregate_version("task", "t"),
            )
            release.set()
            await agent.wait_idle(timeout=10)
            assert agent.stats.fenced == 1, "the report was refused and the history read said why"
            assert agent.bus is not None and agent.bus.denials is not None
            assert list(agent.bus.denials.refused) == []
    finally:
        await agent.stop()
        await log.stop()


def service_settings(server: EmbeddedNats, store: CredentialStore, tmp_path: Path, service: str) -> Settings:
    credentials = store.credentials(service)
    return load_settings(
        {},
        nats_url=server.url,
        nats_user=credentials.user,
        nats_password=credentials.password,
        hive_home=str(tmp_path / "home"),
        gateway_port=0,
    )


async def test_agents_added_while_running_are_let_in_after_a_reload_and_others_stay_connected(
    secured: EmbeddedNats, store: CredentialStore, agent_a: EventBus
) -> None:
    credentials = store.ensure_agents(["late"])
    with pytest.raises(NatsAuthError):
        await EventBus.connect(secured.url, "late", user="agent-late", password=credentials["agent-late"])
    secured.reload()
    late = await EventBus.connect(secured.url, "late", user="agent-late", password=credentials["agent-late"])
    await late.append(AgentRegistered(agent_id="late", capabilities={"x": 1.0}, session="s"), expected=None)
    await agent_a.append(AgentRegistered(agent_id="a", capabilities={"x": 1.0}, session="s"), expected=None)
    with pytest.raises(PermissionDenied):
        await late.append(AgentRegistered(agent_id="a", capabilities={"x": 1.0}, session="s"), expected=None)
    await late.close()


async def test_a_users_file_the_server_cannot_read_is_refused_and_the_old_users_stay(
    secured: EmbeddedNats, store: CredentialStore, agent_a: EventBus
) -> None:
    store.users_conf.write_text("users: [ {user: broken")
    with pytest.raises(EmbeddedNatsError, match="kept its configuration"):
        secured.reload()
    await agent_a.append(AgentRegistered(agent_id="a", capabilities={"x": 1.0}, session="s"), expected=None)


async def test_a_three_node_cluster_requires_the_same_credentials_on_every_node(
    tmp_path: Path, store: CredentialStore
) -> None:
    cluster = EmbeddedCluster(tmp_path / "cluster", users_file=store.users_conf).start()
    buses: list[EventBus] = []
    try:
        for node in cluster.nodes:
            with pytest.raises(NatsAuthError):
                await EventBus.connect(node.url, "anonymous")
        router = await connect_to(cluster.url, store, "router")
        gateway = await connect_to(cluster.nodes[2].url, store, "gateway")
        agent = await connect_to(cluster.nodes[1].url, store, agent_user("a"))
        buses += [router, gateway, agent]
        await router.ensure_streams(replicas=3)  # routes authenticated: the replicas find each other
        info = await router.js.stream_info(EVENTS_STREAM)
        assert info.config.num_replicas == 3 and info.cluster is not None
        await gateway.append(TaskSubmitted(task_id="t", task_type="x"), expected=0)
        requeue = TaskRequeued(task_id="t", attempt=2, reason="agent_unresponsive")
        with pytest.raises(PermissionDenied):
            await agent.append(requeue, expected=None)
        assert await router.last_sequence() == 1
    finally:
        for bus in buses:
            await bus.close()
        cluster.stop()


async def connect_to(url: str, store: CredentialStore, user: str) -> EventBus:
    credentials = store.credentials(user)
    return await EventBus.connect(url, user, user=credentials.user, password=credentials.password)


@pytest.mark.parametrize("with_users", [False, True])
def test_the_generated_server_configuration_is_valid_and_requires_credentials_only_with_users(
    tmp_path: Path, store: CredentialStore, with_users: bool
) -> None:
    include = os.path.relpath(store.users_conf, tmp_path) if with_users else None
    password = "r" if with_users else ""
    routes = ("127.0.0.1:6222", "127.0.0.1:6223")
    cluster = ClusterSpec(name="hive", listen=routes[0], routes=routes, route_password=password)
    text = server_config(
        name="n", host="127.0.0.1", port=4222, store_dir=str(tmp_path), users_include=include, cluster=cluster
    )
    config = tmp_path / "test.conf"
    config.write_text(text)
    checked = subprocess.run(
        [nats_server_binary(), "-t", "-c", str(config)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr
    assert ("no_auth_user" in text) is not with_users
    assert ("authorization: {user: route" in text) is with_users
    assert ("nats://route:r@127.0.0.1:6223" in text) is with_users
