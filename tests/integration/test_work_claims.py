"""Claimed work events against a real nats-server: an instance keeps what it claimed for as long as
it lives, settles each event once, and a dead instance's claims go to another within the wait."""

from __future__ import annotations

import asyncio
import time

import pytest

from shared.bus import EventBus
from shared.events import TaskSubmitted
from shared.recorded import Recorded
from shared.settings import Settings
from shared.subjects import EVENTS_STREAM, events_of_type
from shared.work import Ticket, WorkConsumer, WorkSpec

ACK_WAIT_S = 1.0


class Claimer:
    """An instance that claims every submission it is delivered and settles them when told."""

    def __init__(self) -> None:
        self.tickets: list[Ticket] = []
        self.arrived = asyncio.Event()
        self.handled: list[int] = []

    async def claim(self, recorded: Recorded, ticket: Ticket) -> bool:
        self.tickets.append(ticket)
        self.arrived.set()
        return True

    async def handle(self, recorded: Recorded) -> None:
        self.handled.append(recorded.seq)

    def spec(self) -> WorkSpec:
        return WorkSpec(
            durable="claims",
            filters=[events_of_type("task", TaskSubmitted.event_type())],
            handler=self.handle,
            claim=self.claim,
            ack_wait_s=ACK_WAIT_S,
        )


async def instance(settings: Settings, name: str) -> tuple[EventBus, WorkConsumer, Claimer]:
    bus = await EventBus.connect(settings.nats_url, "claims", name=name)
    claimer = Claimer()
    consumer = WorkConsumer(bus, claimer.spec())
    await consumer.start()
    return bus, consumer, claimer


async def test_a_claimed_event_is_kept_past_its_ack_wait_while_its_instance_lives(
    settings: Settings, bus: EventBus
) -> None:
    owner_bus, owner, claimer = await instance(settings, "owner")
    try:
        stored = await bus.append(TaskSubmitted(task_id="t1", task_type="x"), expected=0)
        await asyncio.wait_for(claimer.arrived.wait(), 5)
        claimer.arrived.clear()
        with pytest.raises(TimeoutError):  # told "in progress" in time: never delivered again
            await asyncio.wait_for(claimer.arrived.wait(), ACK_WAIT_S * 2.5)
        assert [ticket.recorded.seq for ticket in claimer.tickets] == [stored.seq]
        assert claimer.handled == []
        await claimer.tickets[0].ack()
        await claimer.tickets[0].retry()  # settled already: nothing happens
        await owner_bus.nc.flush()
        for _ in range(500):  # the server applies an acknowledgement on its own time
            info = await bus.js.consumer_info(EVENTS_STREAM, "claims")
            if not info.num_ack_pending:
                break
            await asyncio.sleep(0.01)
        assert info.num_ack_pending == 0 and info.num_redelivered == 0
        with pytest.raises(TimeoutError):  # neither handed back nor delivered again
            await asyncio.wait_for(claimer.arrived.wait(), 0.5)
    finally:
        await owner.stop()
        await owner_bus.close()


async def test_a_dead_instances_claims_go_to_another_within_two_seconds(
    settings: Settings, bus: EventBus
) -> None:
    dead_bus, dead, dead_claimer = await instance(settings, "dies")
    stored = [
        (await bus.append(TaskSubmitted(task_id=f"t{index}", task_type="x"), expected=0)).seq
        for index in range(3)
    ]
    while len(dead_claimer.tickets) < 3:
        await asyncio.wait_for(dead_claimer.arrived.wait(), 5)
        dead_claimer.arrived.clear()
    heir_bus, heir, heir_claimer = await instance(settings, "heir")
    try:
        killed = time.monotonic()
        await dead_bus.nc.close()  # no goodbye: its claims are neither acknowledged nor handed back
        while len(heir_claimer.tickets) < 3:
            await asyncio.wait_for(heir_claimer.arrived.wait(), 5)
            heir_claimer.arrived.clear()
        assert time.monotonic() - killed < 2.0
        assert sorted(ticket.recorded.seq for ticket in heir_claimer.tickets) == stored
    finally:
        await dead.stop()
        await heir.stop()
        await heir_bus.close()


async def test_a_stopping_instance_hands_its_claims_back_at_once(settings: Settings, bus: EventBus) -> None:
    leaving_bus, leaving, leaving_claimer = await instance(settings, "leaves")
    stored = await bus.append(TaskSubmitted(task_id="t1", task_type="x"), expected=0)
    await asyncio.wait_for(leaving_claimer.arrived.wait(), 5)
    heir_bus, heir, heir_claimer = await instance(settings, "heir")
    try:
        await leaving.stop()
        await asyncio.wait_for(heir_claimer.arrived.wait(), ACK_WAIT_S / 2)  # not after its wait
        assert [ticket.recorded.seq for ticket in heir_claimer.tickets] == [stored.seq]
    finally:
        await leaving_bus.close()
        await heir.stop()
        await heir_bus.close()
