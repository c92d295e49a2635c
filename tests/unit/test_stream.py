"""The live stream's pieces: tickets, frames, a subscriber that falls behind, the shipped files."""

from __future__ import annotations

import asyncio
import json
import tomllib
from fnmatch import fnmatch
from pathlib import Path

from services.gateway.routes.ui import UI_DIR
from services.gateway.stream import MAX_EVENT_BYTES, StreamHub, event_frame, sse_frame
from services.gateway.tickets import issue_ticket, ticket_is_valid
from shared.events import TaskSubmitted
from shared.recorded import Recorded
from shared.replay import TimelineFilter

ROOT = Path(__file__).resolve().parents[2]


def submitted(seq: int, task_id: str = "t1", **fields: object) -> Recorded:
    event = TaskSubmitted(task_id=task_id, task_type="x", **fields)  # type: ignore[arg-type]
    return Recorded(seq=seq, subject=f"hive.evt.task.{task_id}.submitted", event=event)


def parse(frame: bytes) -> tuple[str, dict[str, object]]:
    lines = dict(line.split(": ", 1) for line in frame.decode().strip().split("\n"))
    return lines["event"], json.loads(lines["data"])


def test_a_ticket_is_valid_until_it_expires_and_only_under_its_own_secret() -> None:
    ticket, expires = issue_ticket("secret", now=1000.0, ttl_s=60)
    assert expires == 1060
    assert ticket_is_valid("secret", ticket, now=1059.0)
    assert not ticket_is_valid("secret", ticket, now=1061.0)
    assert not ticket_is_valid("other", ticket, now=1000.0)
    signature = ticket.split(".", 1)[1]
    assert not ticket_is_valid("secret", f"2000.{signature}", now=1000.0)  # a later expiry, same signature
    for malformed in ("", ".", "1060", "1060.", "abc.def", "-5.x", "9" * 40 + ".x"):
        assert not ticket_is_valid("secret", malformed, now=1000.0), malformed


def test_an_event_frame_names_its_sequence_and_leaves_out_a_large_body() -> None:
    frame = event_frame(submitted(7))
    assert frame.startswith(b"id: 7\nevent: event\ndata: ")
    kind, data = parse(frame)
    assert kind == "event"
    assert data["aggregate"] == "task" and data["id"] == "t1" and data["type"] == "task.submitted"
    assert isinstance(data["event"], dict) and not data["truncated"]
    _, large = parse(event_frame(submitted(8, payload={"blob": "x" * MAX_EVENT_BYTES})))
    assert large["event"] is None and large["truncated"] is True


async def test_a_stream_that_falls_behind_is_told_to_resync_and_goes_on() -> None:
    hub = StreamHub(lambda: 42, queue_size=3, keepalive_s=5)
    stream = hub.frames(TimelineFilter(aggregate="task"))
    assert (await anext(stream)).startswith(b"retry:")
    assert parse(await anext(stream)) == ("hello", {"seq": 42})
    for seq in range(1, 6):  # five events while the client reads nothing: more than its queue holds
        hub.on_event(submitted(seq, task_id=f"t{seq}"))
    kind, data = parse(await asyncio.wait_for(anext(stream), 1))
    assert kind == "resync" and data["seq"] == 42
    hub.on_event(submitted(6, task_id="t6"))
    kind, data = parse(await asyncio.wait_for(anext(stream), 1))
    assert kind == "event" and data["seq"] == 6
    hub.close()
    assert [frame async for frame in stream] == []
    assert not hub.subscriptions


async def test_a_stream_gets_only_the_events_its_filter_passes_and_keeps_alive_when_idle() -> None:
    hub = StreamHub(lambda: 0, keepalive_s=0.05)
    stream = hub.frames(TimelineFilter(aggregate="task", aggregate_id="mine"))
    await anext(stream)
    await anext(stream)
    hub.on_event(submitted(1, task_id="theirs"))
    hub.on_event(submitted(2, task_id="mine"))
    assert parse(await asyncio.wait_for(anext(stream), 1))[1]["seq"] == 2
    assert await asyncio.wait_for(anext(stream), 1) == b": keep-alive\n\n"
    await stream.aclose()
    assert not hub.subscriptions


def test_a_frame_is_one_event_with_one_line_of_data() -> None:
    assert sse_frame("hello", b'{"seq":1}') == b'event: hello\ndata: {"seq":1}\n\n'


def test_every_file_of_the_dashboard_ships_in_the_package() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["services.gateway"]
    package = ROOT / "services" / "gateway"
    files = [path.relative_to(package).as_posix() for path in UI_DIR.iterdir() if path.is_file()]
    assert {"ui/index.html", "ui/app.js", "ui/style.css"} <= set(files)
    for name in files:
        assert any(fnmatch(name, pattern) for pattern in patterns), f"{name} would not be installed"
