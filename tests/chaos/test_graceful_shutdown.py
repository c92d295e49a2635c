"""SIGTERM: every service finishes what it holds, snapshots its projections and exits cleanly."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from services.cli.stack import SERVICE_NAMES, local_stack
from shared.bus import EventBus
from shared.events import AgentRegistered, TaskSubmitted

pytestmark = pytest.mark.chaos


def log_events(path: Path) -> list[str]:
    events = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            events.append(str(json.loads(line).get("event")))
        except ValueError:
            continue
    return events


async def every_service_has_read_to(bus: EventBus, seq: int, timeout_s: float = 30.0) -> None:
    """Ask for health until every service reports its projections at `seq` or past it: a reader in
    bursts may not have read what was just appended, and a service that read nothing has nothing
    to snapshot."""
    deadline = time.monotonic() + timeout_s
    behind: set[str] = set(SERVICE_NAMES)
    while time.monotonic() < deadline:
        replies = await bus.gather_health(0.5, expect=frozenset(SERVICE_NAMES))
        behind = set(SERVICE_NAMES) - {
            str(r.get("service")) for r in replies if int(r.get("projection_seq") or 0) >= seq
        }
        if not behind:
            return
    raise AssertionError(f"{sorted(behind)} did not read to sequence {seq} within {timeout_s} s")


async def test_every_service_stops_cleanly_on_sigterm_and_restarts_from_its_snapshot(tmp_path: Path) -> None:
    stack = local_stack(tmp_path / "hive")
    stack.start()
    try:
        bus = await EventBus.connect(stack.nats_url, "shutdown")
        await bus.append(AgentRegistered(agent_id="a", capabilities={"x": 1.0}), expected=None)
        for index in range(20):
            await bus.append(TaskSubmitted(task_id=f"t{index}", task_type="x"), expected=0)
        await every_service_has_read_to(bus, await bus.last_sequence())
        await bus.close()
        for name in SERVICE_NAMES:
            record = stack.processes[f"{name}-0"]
            record.process.send_signal(signal.SIGTERM)
            assert record.process.wait(30) == 0, f"{name} did not exit cleanly"
            record.log_file.flush()
            events = log_events(Path(record.log_file.name))
            assert events.index("service_stopping") < events.index("service_stopped")
            restarted = stack.spawn(name, 0)
        stack.wait_ready(60)
        for name in SERVICE_NAMES:
            restarted = stack.processes[f"{name}-0"]
            assert restarted.restarts == 1
            assert "snapshot_loaded" in log_events(Path(restarted.log_file.name)), name
    finally:
        stack.stop()
