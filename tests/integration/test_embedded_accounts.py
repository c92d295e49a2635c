"""The embedded nats-server's HIVE account: a store from before it keeps its events."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from shared.bus import EventBus
from shared.embedded import GO_MAX_PROCS, EmbeddedNats, machine_cores, server_procs
from shared.events import TaskSubmitted


async def test_a_store_written_under_the_global_account_is_adopted_with_its_events(tmp_path: Path) -> None:
    store = tmp_path / "nats"
    with EmbeddedNats(store, port=0, system_events=False) as old:
        bus = await EventBus.connect(old.url, "before")
        await bus.ensure_streams()
        await bus.append(TaskSubmitted(task_id="kept", task_type="x"), expected=0)
        await bus.close()
    assert (store / "jetstream" / "$G").is_dir()
    with EmbeddedNats(store, port=0) as new:
        bus = await EventBus.connect(new.url, "after")
        events, _ = await bus.read_aggregate("task", "kept")
        await bus.close()
    assert [r.event.task_id for r in events] == ["kept"]  # type: ignore[union-attr]
    assert (store / "jetstream" / "HIVE").is_dir() and not (store / "jetstream" / "$G").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_embedded_server_runs_go_code_on_half_the_cores(tmp_path: Path) -> None:
    with EmbeddedNats(tmp_path / "nats", port=0) as server:
        assert server.process is not None
        environ = Path(f"/proc/{server.process.pid}/environ").read_bytes().split(b"\0")
    expected = os.environ.get(GO_MAX_PROCS, str(server_procs(machine_cores())))
    assert f"{GO_MAX_PROCS}={expected}".encode() in environ
