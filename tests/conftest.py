"""Shared fixtures: a real nats-server per test (free port, file storage in a temp dir)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest
import structlog
from hypothesis import settings as hypothesis_settings

from shared.bus import EventBus
from shared.embedded import EmbeddedNats
from shared.events import AnyEvent
from shared.logging import configure_logging
from shared.recorded import Recorded
from shared.service import Service
from shared.settings import Settings, load_settings

configure_logging("warning")

WORKERS_PER_CORE = 2
"""A test spends most of its time waiting on a real nats-server, services and agents: in one process
the suite kept 0.7 to 1.2 of 2 cores busy (over the run, and over a sampled minute); four workers
kept them about 88% busy."""


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (the default, in ``pyproject.toml``): two workers per core this process may use."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return WORKERS_PER_CORE * cores


SHRINK_LIMIT_S = 300
"""How long Hypothesis shrinks a failing example at most (its own limit, not a setting)."""
PROPERTY_TIMEOUT_S = SHRINK_LIMIT_S + 120
"""A property test's timeout: past the shrinking, so a failure is reported with its example instead
of a bare "Timeout" (the default 180 s once cut one off mid-shrink)."""

hypothesis_settings.register_profile("hive", print_blob=True)
hypothesis_settings.load_profile("hive")
"""Every failure prints its ``@reproduce_failure`` blob: CI keeps no example database."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Property tests get ``PROPERTY_TIMEOUT_S`` unless they set their own timeout."""
    for item in items:
        test = getattr(item, "obj", None)
        if getattr(test, "is_hypothesis_test", False) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(PROPERTY_TIMEOUT_S))


ServiceT = TypeVar("ServiceT", bound=Service)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path / "nats", port=0).start()
    yield server
    server.stop()


@pytest.fixture
def settings(tmp_path: Path, nats_server: EmbeddedNats) -> Settings:
    return load_settings(
        {},
        nats_url=nats_server.url,
        hive_home=str(tmp_path / "home"),
        gateway_port=0,
        assign_wait_ms=2000,
        work_ack_wait_s=5.0,
    )


@pytest.fixture
async def bus(settings: Settings) -> AsyncIterator[EventBus]:
    connection = await EventBus.connect(settings.nats_url, "test")
    await connection.ensure_streams()
    yield connection
    await connection.close()


@asynccontextmanager
async def running(
    service_cls: type[ServiceT], settings: Settings, **overrides: Any
) -> AsyncIterator[ServiceT]:
    """Run a service in this event loop (its own NATS connection), stopped gracefully after."""
    merged = msgspec.structs.replace(settings, **overrides) if overrides else settings
    service = service_cls(merged)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


class EventLog:
    """Every event stored in the stream while it listens, read through JetStream.

    Core NATS subscribers also see publications the stream refused (duplicates, stale appends),
    so the log is read the way services read it: with an ordered JetStream consumer.
    """

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.events: list[AnyEvent] = []
        self.seqs: list[int] = []
        self._conditions: list[tuple[Callable[[list[AnyEvent]], bool], asyncio.Event]] = []
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> EventLog:
        def on_event(recorded: Recorded) -> None:
            self.events.append(recorded.event)
            self.seqs.append(recorded.seq)
            for predicate, flag in self._conditions:
                if not flag.is_set() and predicate(self.events):
                    flag.set()

        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self.bus.follow(on_event, self._stopping, start_seq=1))
        return self

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def wait_for(self, predicate: Callable[[list[AnyEvent]], bool], timeout: float = 10.0) -> None:
        """Wait until `predicate(events)` holds; fail with a clear message after `timeout`."""
        flag = asyncio.Event()
        if predicate(self.events):
            return
        self._conditions.append((predicate, flag))
        try:
            await asyncio.wait_for(flag.wait(), timeout)
        except TimeoutError:
            seen = ", ".join(
                f"{e.type_name()} {getattr(e, 'task_id', '')}".rstrip() for e in self.events[-30:]
            )
            raise AssertionError(
                f"condition not met within {timeout}s; {len(self.events)} events seen, the last: {seen}"
            ) from None
        finally:
            self._conditions.remove((predicate, flag))

    def of_type(self, cls: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, cls)]


@pytest.fixture
async def event_log(bus: EventBus) -> AsyncIterator[EventLog]:
    log = await EventLog(bus).start()
    yield log
    await log.stop()


class LogWatch(structlog.testing.LogCapture):
    """Keeps every log entry of this process and says when one named `awaited` arrived."""

    def __init__(self, awaited: str) -> None:
        super().__init__()
        self.awaited = awaited
        self.arrived = asyncio.Event()

    def __call__(self, logger: Any, method_name: str, event_dict: Any) -> Any:
        if event_dict.get("event") == self.awaited:
            self.arrived.set()
        return super().__call__(logger, method_name, event_dict)

    def named(self, event: str) -> list[dict[str, Any]]:
        return [entry for entry in self.entries if entry.get("event") == event]


@contextmanager
def watching_logs(awaited: str) -> Iterator[LogWatch]:
    """Route every log entry, of every level, to a LogWatch for the duration (the usual output and
    level are restored after). Loggers bound before it keep the configuration they were bound with."""
    watch = LogWatch(awaited)
    config = structlog.get_config()
    processors, wrapper = config["processors"], config["wrapper_class"]
    structlog.configure(
        processors=[watch], wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG)
    )
    try:
        yield watch
    finally:
        structlog.configure(processors=processors, wrapper_class=wrapper)
