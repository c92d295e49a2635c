"""A projection read in bursts takes stored messages as bytes, and ends where the message objects led.

``ProjectionRunner`` hands ``follow_raw`` a handler of (sequence, subject, payload), which Hive's
client feeds straight from the wire (``deliver_stored``): no message object, no headers. Runners
reading the same log, poison included, the old way (every message an object, its sequence read off
it) and this way, end with the same snapshot bytes, counters and dead letters.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.cli.bench.history import History, history_chunks, write_straight
from services.gateway.view import GATEWAY_VIEW
from services.recovery.view import RECOVERY_VIEW
from shared.bus import EventBus
from shared.projection import ProjectionRunner
from shared.projection_spec import ProjectionSpec
from shared.settings import Settings
from shared.subjects import ALL_EVENTS

DEEP = b"[" * 100 + b"]" * 100
POISON: list[tuple[str, bytes, dict[str, str] | None]] = [
    (
        "hive.evt.task.deep.submitted",
        b'{"type": "task.submitted", "task_id": "deep", "task_type": "x", "payload": {"a": ' + DEEP + b"}}",
        None,
    ),
    ("hive.evt.task.t1.completed", b"[1, 2, 3]", {"Status": "404"}),  # a stored Status header
    ("hive.evt.task.hist-0000001.submitted", b"{not json", None),
    ("hive.evt.task.other.submitted", b'{"type": "task.submitted", "task_id": "t9", "task_type": "x"}', None),
    ("hive.evt.task.t5.progress", b"", None),
]


class MessageObjects(ProjectionRunner[Any]):
    """Reads as before ``deliver_stored``: every stored message built and handed over as an object."""

    async def _pump(self) -> None:
        await self.bus.follow_raw(
            self._on_msg,
            self._stopping,
            subject_filter=self.filters or ALL_EVENTS,
            start_seq=self.seq + 1,
            label="old lane",
            pace=self._pace if self.linger_s > 0 else None,
        )


async def _read(
    settings: Settings, runner_type: type[ProjectionRunner[Any]], spec: ProjectionSpec[Any], last: int
) -> tuple[bytes, int, int, list[tuple[str, bytes, str, int | None]], int]:
    bus = await EventBus.connect(settings.nats_url, "readpath")
    letters: list[tuple[str, bytes, str, int | None]] = []
    built: list[str] = []
    build = bus.nc._build_message

    def counting(sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any) -> Any:
        built.append(subject.decode())
        return build(sid, subject, reply, data, headers)

    async def dead_letter(subject: str, data: bytes, reason: str, stream_seq: int | None = None) -> None:
        letters.append((subject, data, reason, stream_seq))

    bus.nc._build_message = counting  # type: ignore[method-assign]
    bus.dead_letter = dead_letter  # type: ignore[method-assign]
    runner = runner_type(bus, spec, linger_s=0.02)
    try:
        await runner.start()
        await runner.wait_for(last, timeout=60)
        stored_built = sum(1 for subject in built if subject.startswith("hive.evt."))
        return runner.encode_snapshot(), runner.delivered, runner.ignored, letters, stored_built
    finally:
        await runner.stop(snapshot=False)
        await bus.close()


@pytest.mark.parametrize("spec", [RECOVERY_VIEW, GATEWAY_VIEW], ids=lambda spec: spec.name)
async def test_a_view_read_as_bytes_ends_as_one_read_as_message_objects(
    bus: EventBus, settings: Settings, spec: ProjectionSpec[Any]
) -> None:
    history = History(tasks=300)
    chunks = list(history_chunks(history))
    last = await write_straight(bus, chunks[:5])
    for subject, data, headers in POISON:
        await bus.js.publish(subject, data, headers=headers)
    last = await write_straight(bus, chunks[5:])

    old, new = await asyncio.gather(
        _read(settings, MessageObjects, spec, last), _read(settings, ProjectionRunner, spec, last)
    )
    old_snapshot, old_delivered, old_ignored, old_letters, old_built = old
    new_snapshot, new_delivered, new_ignored, new_letters, new_built = new
    assert new_snapshot == old_snapshot
    assert (new_delivered, new_ignored) == (old_delivered, old_ignored)
    assert new_delivered == last
    assert sorted(new_letters) == sorted(old_letters) and len(new_letters) >= len(POISON) - 1
    assert old_built == last  # the old way built every stored message
    assert new_built == 0  # this way, none: only the statuses ending each burst
