"""A service process freezes its start-up heap out of later garbage collections and says so."""

from __future__ import annotations

import gc
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest

import shared.service as service_module
from services.router.service import RouterService
from shared.service import Service, _run_service
from shared.settings import Settings, load_settings
from tests.conftest import running


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Give the test process back its collector as it was."""
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()


class _Idle(Service):
    name = "idle"


def test_a_service_run_as_its_process_owns_it(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[Service] = []

    def run_async(main: Coroutine[Any, Any, Any]) -> None:
        started.append(main.cr_frame.f_locals["self"])
        main.close()  # never started: only how the process set it up matters

    monkeypatch.setattr(service_module, "run_async", run_async)
    _run_service(_Idle, load_settings())
    assert [service.owns_process for service in started] == [True]
    assert not _Idle(load_settings()).owns_process  # run inside another program: not its heap


async def test_the_router_freezes_what_it_loaded_once_started(
    settings: Settings, unfrozen: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    router = RouterService(settings)
    router.owns_process = True
    await router.start()
    try:
        frozen = gc.get_freeze_count()

        def walk_of_every_frozen_object() -> int:
            raise AssertionError("a health answer counted the frozen heap again")

        monkeypatch.setattr(gc, "get_freeze_count", walk_of_every_frozen_object)
        health = router.health()
        # counted once, at the freeze: frozen objects freed since only lower the live count
        assert health.gc["frozen"] > 0 and health.gc["frozen"] >= frozen
        monkeypatch.undo()
        assert not any(item is router.view.state for item in gc.get_objects())  # loaded: frozen
        gc.collect()
        assert router.health().gc["pauses"]["2"]["count"] >= 1  # counted while it serves
    finally:
        await router.stop()


async def test_a_service_inside_another_program_leaves_its_heap_alone(
    settings: Settings, unfrozen: None
) -> None:
    async with running(RouterService, settings) as router:
        assert router.health().gc["frozen"] == 0
        assert "hive_gc_pause_seconds_bucket" in router.metrics.render().decode()
