"""Simulated agents for a benchmark, in a ``hive agent`` process of their own.

In production agents run elsewhere; on a benchmark machine they share its cores with the services.
In a process of their own they do not stall the benchmark's clock or its observer, can be niced so
the services come first, can be killed whole (their own process group), and die with the
benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from shared.bus import EventBus
from shared.credentials import without_credentials
from shared.embedded import die_with_parent
from shared.events import AgentRegistered
from shared.recorded import Recorded
from shared.subjects import events_of_type


def spawn_agent_process(
    nats_url: str,
    *,
    prefix: str,
    count: int,
    capacity: int,
    capabilities: str,
    work_ms: float,
    log: Path,
    nice: int = 0,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start `count` agents ``<prefix>-<i>`` against the private server at `nats_url`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "services.cli.main",
                "agent",
                "--count",
                str(count),
                "--prefix",
                prefix,
                "--capacity",
                str(capacity),
                "--capabilities",
                capabilities,
                "--work-ms",
                f"{work_ms:g}",
            ],
            # A private server, without credentials; `env` may override the rest.
            env={
                **without_credentials(os.environ),
                "NATS_URL": nats_url,
                "LOG_LEVEL": "warning",
                **(env or {}),
            },
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: _prepare_child(nice),
        )


def _prepare_child(nice: int) -> None:
    """In the child: die with the benchmark (no orphaned agents), then step back if asked."""
    die_with_parent()
    if nice:
        os.nice(nice)


def stop_agent_process(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM (the agents drain), then SIGKILL if they have not stopped within `timeout`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


async def wait_for_agents(bus: EventBus, count: int, timeout: float = 60.0) -> None:
    """Until `count` agents registered (their process is starting beside us)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        agents: set[str] = set()
        async for item in bus.read(subject_filter=events_of_type("agent", AgentRegistered.event_type())):
            if isinstance(item, Recorded) and isinstance(item.event, AgentRegistered):
                agents.add(item.event.agent_id)
        if len(agents) >= count:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{count} simulated agents did not register within {timeout}s")
