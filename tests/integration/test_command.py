"""Commands against a real nats-server: append against the version read, decide again after a
conflict, give up after the bound naming what kept changing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shared.bus import EventBus
from shared.command import Change, KeepsChanging, command, retry_on_conflict
from shared.domain.fleet import FLEET_SPEC, FleetState
from shared.events import TaskCancelled, TaskProgress, TaskSubmitted
from shared.projection import ProjectionRunner


@pytest.fixture
async def view(bus: EventBus) -> AsyncIterator[ProjectionRunner[FleetState]]:
    runner = ProjectionRunner(bus, FLEET_SPEC)
    await runner.start()
    yield runner
    await runner.stop(snapshot=False)


async def submitted(bus: EventBus, view: ProjectionRunner[FleetState], task_id: str) -> int:
    result = await bus.append(TaskSubmitted(task_id=task_id, task_type="x"), expected=0)
    await view.wait_for(result.seq)
    return result.seq


def progress(task_id: str, percent: float) -> TaskProgress:
    return TaskProgress(task_id=task_id, agent_id="a", attempt=1, percent=percent)


async def test_a_command_appends_against_the_version_it_decided_on(
    bus: EventBus, view: ProjectionRunner[FleetState]
) -> None:
    seq = await submitted(bus, view, "t")
    versions: list[int] = []

    async def decide(version: int) -> Change:
        versions.append(version)
        return Change(TaskCancelled(task_id="t", reason="no longer needed"), msg_id="cancel:t")

    done = await command(bus, view, "task", "t", decide)
    assert done is not None
    change, result = done
    assert versions == [seq] and isinstance(change.event, TaskCancelled)
    assert await bus.aggregate_version("task", "t") == result.seq
    again = await bus.append(change.event, expected=None, msg_id="cancel:t")
    assert again.duplicate  # the message id given with the change was used


async def test_a_command_refused_by_the_server_catches_up_and_decides_again(
    bus: EventBus, view: ProjectionRunner[FleetState]
) -> None:
    first = await submitted(bus, view, "t")
    versions: list[int] = []

    async def decide(version: int) -> Change:
        versions.append(version)
        if len(versions) == 1:  # another writer gets there between our read and our append
            await bus.append(progress("t", 10), expected=None)
        return Change(TaskCancelled(task_id="t", reason="stop"))

    done = await command(bus, view, "task", "t", decide)
    assert done is not None
    assert len(versions) == 2 and versions[0] == first and versions[1] > first
    events, _last = await bus.read_aggregate("task", "t")
    assert [type(r.event).__name__ for r in events] == ["TaskSubmitted", "TaskProgress", "TaskCancelled"]


async def test_a_command_on_an_aggregate_that_keeps_changing_gives_up_and_names_it(
    bus: EventBus, view: ProjectionRunner[FleetState]
) -> None:
    await submitted(bus, view, "busy")
    decided = 0

    async def decide(_version: int) -> Change:
        nonlocal decided
        decided += 1
        await bus.append(progress("busy", decided), expected=None)
        return Change(TaskCancelled(task_id="busy", reason="stop"))

    with pytest.raises(KeepsChanging) as refused:
        await command(bus, view, "task", "busy", decide, attempts=3)
    assert decided == 3
    assert refused.value.what == "task 'busy'" and refused.value.attempts == 3
    assert str(refused.value).startswith("task 'busy' kept changing: 3 decisions in a row were refused")
    events, _last = await bus.read_aggregate("task", "busy")
    assert not any(isinstance(r.event, TaskCancelled) for r in events)


async def test_a_command_with_nothing_to_do_appends_nothing(
    bus: EventBus, view: ProjectionRunner[FleetState]
) -> None:
    seq = await submitted(bus, view, "t")

    async def decide(_version: int) -> Change | None:
        return None

    assert await command(bus, view, "task", "t", decide) is None
    assert await bus.aggregate_version("task", "t") == seq


async def test_a_refusal_from_the_decision_itself_is_not_retried(
    bus: EventBus, view: ProjectionRunner[FleetState]
) -> None:
    await submitted(bus, view, "t")
    decided = 0

    async def decide(_version: int) -> Change:
        nonlocal decided
        decided += 1
        raise LookupError("no such thing")

    with pytest.raises(LookupError):
        await command(bus, view, "task", "t", decide)
    assert decided == 1


async def test_conflicts_are_counted_and_the_loop_stops_at_the_first_success(
    bus: EventBus, view: ProjectionRunner[FleetState]
) -> None:
    first = await submitted(bus, view, "t")
    conflicts = 0
    expected = [first, first, None]

    def counted() -> None:
        nonlocal conflicts
        conflicts += 1

    async def attempt() -> int:
        stale = expected.pop(0)
        if stale is not None:
            await bus.append(progress("t", len(expected)), expected=None)
        return (await bus.append(progress("t", 99), expected=stale)).seq

    seq = await retry_on_conflict(attempt, view.catch_up, what="task 't'", on_conflict=counted)
    assert conflicts == 2 and seq == await bus.aggregate_version("task", "t")
