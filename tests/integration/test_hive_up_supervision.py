"""``hive up`` supervises what it starts: nats-server and the ``hive agent`` process come back after
a kill -9, each with a line saying so, and Hive goes on working with the same store and users."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from shared.bus import EventBus
from shared.credentials import CredentialStore
from shared.embedded import free_port
from shared.events import AgentRegistered, AnyEvent, TaskCompleted
from shared.permissions import ADMIN
from tests.conftest import EventLog
from tests.integration.test_cli_auth import read_until

ASSIGN = "/api/v1/orchestration/task/assign"


def children(pid: int) -> dict[int, list[str]]:
    """The direct child processes of `pid` and their command lines (Linux /proc)."""
    found: dict[int, list[str]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(OSError):
                found[int(child)] = Path(f"/proc/{child}/cmdline").read_text().split("\0")
    return found


def child_running(pid: int, predicate: str) -> int:
    """The one child of `pid` whose command line contains `predicate`."""
    matches = [child for child, cmd in children(pid).items() if any(predicate in part for part in cmd)]
    assert len(matches) == 1, f"{predicate!r} among {children(pid)}"
    return matches[0]


def reaped_or_alive(pid: int) -> bool:
    """True while `pid` is still a process (a zombie included); False once it was reaped."""
    return Path(f"/proc/{pid}").exists()


async def submit(http: httpx.AsyncClient, task_id: str) -> None:
    """Submit through an outage the way a client should: the same task id until it is answered."""
    for _ in range(100):
        reply = await http.post(ASSIGN, json={"task_id": task_id, "task_type": "testing"})
        if reply.status_code in (200, 202):
            return
        assert reply.status_code == 503, reply.text
        await asyncio.sleep(0.2)  # the client's retry pause, not a synchronisation
    raise AssertionError(f"task {task_id} never accepted")


def completed(task_id: str) -> Callable[[list[AnyEvent]], bool]:
    return lambda evs: any(isinstance(e, TaskCompleted) and e.task_id == task_id for e in evs)


def registrations(events: list[AnyEvent]) -> set[str]:
    return {e.session for e in events if isinstance(e, AgentRegistered) and e.agent_id == "sim-0"}


async def test_hive_up_restarts_a_killed_nats_server_and_a_killed_agent_process(tmp_path: Path) -> None:
    home = tmp_path / "hive"
    nats_url = f"nats://127.0.0.1:{free_port()}"
    port = free_port()
    env = dict(os.environ, HIVE_HOME=str(home), NATS_URL=nats_url, GATEWAY_PORT=str(port))
    for var in ("NATS_USER", "NATS_PASSWORD", "HIVE_AGENT_CREDENTIALS", "HIVE_API_TOKEN"):
        env.pop(var, None)
    up = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "services.cli.main", "up", "--agents", "1"],
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert up.stdout is not None
    bus: EventBus | None = None
    log: EventLog | None = None
    try:
        await read_until(up.stdout, "Press Ctrl-C to stop.")
        admin = CredentialStore(home).credentials(ADMIN)
        bus = await EventBus.connect(nats_url, "test", user=admin.user, password=admin.password)
        log = await EventLog(bus).start()
        await log.wait_for(lambda evs: len(registrations(evs)) == 1, timeout=30)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            # nats-server killed: restarted on the same store, with the same users, and said so.
            nats_pid = child_running(up.pid, "nats-server")
            os.kill(nats_pid, signal.SIGKILL)
            said = await read_until(up.stdout, "nats-server exited")
            assert "killed by signal 9" in said
            assert "restarted it (same configuration, store and users)" in said
            assert not reaped_or_alive(nats_pid), "the killed nats-server was reaped, no zombie"
            again = await EventBus.connect(nats_url, "again", user=admin.user, password=admin.password)
            await again.close()
            await submit(http, "after-nats")
            await log.wait_for(completed("after-nats"), timeout=60)
            # The hive agent process killed: started again, its agent registers a new session.
            agents_pid = child_running(up.pid, "--prefix")
            os.kill(agents_pid, signal.SIGKILL)
            said = await read_until(up.stdout, "hive agent exited")
            assert "killed by signal 9" in said and "restarted it" in said
            await log.wait_for(lambda evs: len(registrations(evs)) == 2, timeout=30)
            await submit(http, "after-agents")
            await log.wait_for(completed("after-agents"), timeout=60)
        await log.stop()
        await bus.close()
        log = bus = None
        up.send_signal(signal.SIGINT)
        await read_until(up.stdout, "Stopped.")
        assert await asyncio.wait_for(up.wait(), 60) == 0
    finally:
        if log is not None:
            await log.stop()
        if bus is not None:
            with contextlib.suppress(Exception):
                await bus.close()
        if up.returncode is None:
            up.kill()
            with contextlib.suppress(Exception):
                await up.wait()
