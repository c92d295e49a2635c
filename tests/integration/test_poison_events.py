"""Poison events in the real stack: every service dead-letters what it cannot decode, once, and goes on."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import httpx
import msgspec
import pytest

from services.balancer.service import BalancerService
from services.gateway.service import GatewayService
from services.recovery.service import RecoveryService
from services.router.service import RouterService
from services.workflow.service import WorkflowService
from shared.agent.sdk import Agent, TaskContext
from shared.bus import DEAD_LETTER_DATA_MAX, DeadLetter, EventBus
from shared.events import TaskCompleted, TaskSubmitted
from shared.projection import ProjectionRunner
from shared.service import Service
from shared.settings import Settings
from shared.subjects import ALL_DLQ, DLQ_STREAM, EVENTS_STREAM, reads
from tests.conftest import EventLog, running

SERVICES: tuple[type[Service], ...] = (
    RouterService,
    BalancerService,
    RecoveryService,
    WorkflowService,
    GatewayService,
)
DEEP = b"[" * 20_000 + b"]" * 20_000
POISON = {
    "hive.evt.task.deep.submitted": (
        b'{"type": "task.submitted", "task_id": "deep", "task_type": "x", "payload": {"a": ' + DEEP + b"}}",
        "nested too deeply",
    ),
    "hive.evt.task.t1.completed": (b"[1, 2, 3]", "not a JSON object"),
    "hive.evt.task.t2.exploded": (b'{"type": "task.exploded", "task_id": "t2"}', "task.exploded"),
    "hive.evt.task.t3.progress": (os.urandom(900_000), "not a JSON object"),
    "hive.evt.task.t4.queued": (b"\x00garbage{{", "not a JSON object"),
    "hive.evt.workflow.w1.step_added": (b"{not json", "not a JSON object"),
}


async def echo(context: TaskContext) -> dict[str, str]:
    return {"done": context.task_id}


class Letters:
    """Every dead letter stored in HIVE_DLQ, read through JetStream as it arrives."""

    def __init__(self) -> None:
        self.received: list[DeadLetter] = []
        self.changed = asyncio.Event()

    async def on_msg(self, msg: object) -> None:
        self.received.append(msgspec.json.decode(msg.data, type=DeadLetter))  # type: ignore[attr-defined]
        self.changed.set()

    async def wait_for(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            self.changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{len(self.received)} dead letters, expected {count}")
            await asyncio.wait_for(self.changed.wait(), remaining)


@pytest.fixture
async def letters(bus: EventBus) -> AsyncIterator[Letters]:
    found = Letters()
    sub = await bus.js.subscribe(ALL_DLQ, stream=DLQ_STREAM, cb=found.on_msg)
    yield found
    await sub.unsubscribe()


async def settled(bus: EventBus, durable: str, timeout: float = 10.0) -> None:
    """Wait until a work consumer has nothing pending and nothing unacknowledged."""
    deadline = time.monotonic() + timeout
    while True:
        info = await bus.js.consumer_info(EVENTS_STREAM, durable)
        if info.num_pending == 0 and info.num_ack_pending == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{durable}: {info.num_pending} pending, {info.num_ack_pending} unacked")
        await asyncio.sleep(0.05)


def reads_it(service: Service, subject: str) -> bool:
    """Whether any of the service's projections or work consumers decodes what is stored on
    `subject`: is handed it and does not skip it undecoded (``ProjectionSpec.ignores``, asked of
    the projection's state now: none of the poison is about a task a skip depends on)."""
    return any(
        (runner.filters is None or reads(runner.filters, subject))
        and (runner.spec.ignores is None or not runner.spec.ignores(runner.state, subject))
        for runner in service.runners
    ) or any(reads(spec.filters, subject) for spec in service.work_specs)


async def test_each_poison_event_is_dead_lettered_once_by_every_service_and_each_goes_on(
    settings: Settings, bus: EventBus, event_log: EventLog, letters: Letters
) -> None:
    async with AsyncExitStack() as stack:
        services = [await stack.enter_async_context(running(cls, settings)) for cls in SERVICES]
        agent = Agent("worker", echo, capabilities=["x"], capacity=2)
        await agent.start(bus)
        stack.push_async_callback(agent.stop)
        seqs = {}
        for subject, (data, _reason) in POISON.items():
            seqs[(await bus.js.publish(subject, data)).seq] = subject

        # Each service letters what it reads (its projections and work consumers): a service whose
        # projection reads only some event types is handed no other, poisoned or not.
        expected = Counter(
            {(s.name, seq): 1 for s in services for seq, subject in seqs.items() if reads_it(s, subject)}
        )
        assert {name for name, _seq in expected} == {s.name for s in services}
        assert sum(1 for s in services if sum(reads_it(s, subject) for subject in POISON) >= 4) >= 3
        await letters.wait_for(len(expected))
        by_service = Counter((letter.service, letter.stream_seq) for letter in letters.received)
        assert by_service == expected
        for letter in letters.received:
            assert letter.subject == seqs[letter.stream_seq or 0]
            assert POISON[letter.subject][1] in letter.reason, (letter.service, letter.reason)
            assert letter.size == len(POISON[letter.subject][0])
            assert len(letter.data.encode()) <= 3 * DEAD_LETTER_DATA_MAX

        # Every service goes on: a task submitted over HTTP after the poison is routed and completed.
        gateway = services[-1]
        assert isinstance(gateway, GatewayService)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}", timeout=10) as http:
            reply = await http.post(
                "/api/v1/orchestration/task/assign", json={"task_id": "good", "task_type": "x"}
            )
            assert reply.status_code in (200, 202), reply.text
            await event_log.wait_for(
                lambda evs: any(isinstance(e, TaskCompleted) and e.task_id == "good" for e in evs)
            )
            last = await bus.last_sequence()
            assert (await http.get("/api/v1/tasks/good", params={"after_seq": last})).json()["status"] == (
                "completed"
            )
            assert (await http.get("/api/v1/tasks/deep")).status_code == 404
            health = (await http.get("/api/v1/orchestration/health")).json()
            assert health["status"] == "ok", health
        for service in services:
            for runner in service.runners:
                assert isinstance(runner, ProjectionRunner)
                await runner.catch_up()
                assert runner.seq >= last, service.name
            for spec in service.work_specs:
                await settled(bus, spec.durable)
                info = await bus.js.consumer_info(EVENTS_STREAM, spec.durable)
                assert info.num_redelivered == 0, (spec.durable, info)

        # Once: a second router with no snapshot reads the poison again; its letters are the same ones.
        async with running(
            RouterService, settings, instance="router-fresh", hive_home=settings.hive_home + "-fresh"
        ) as fresh:
            await fresh.view.catch_up()
            assert fresh.view.seq >= last
        stored = await bus.js.stream_info(DLQ_STREAM, subjects_filter=ALL_DLQ)
        assert stored.state.messages == len(expected)
        assert dict(stored.state.subjects or {}) == dict(
            Counter(f"hive.dlq.{name}" for name, _seq in expected)
        )
        assert not any(isinstance(e, TaskSubmitted) and e.task_id == "deep" for e in event_log.events)
