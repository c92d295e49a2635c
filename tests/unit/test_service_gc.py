"""A service process collects reference cycles rarely: its projection is large and long-lived."""

from __future__ import annotations

import gc
from collections.abc import Coroutine
from typing import Any

import pytest

import shared.service as service_module
from shared.service import GC_THRESHOLDS, Service, _run_service
from shared.settings import load_settings


class _Idle(Service):
    name = "idle"


def test_a_service_process_runs_with_the_services_gc_thresholds(
    restored_gc: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    gc.set_threshold(700, 10, 10)  # CPython's defaults
    seen: list[tuple[int, int, int]] = []

    def run_async(main: Coroutine[Any, Any, Any]) -> None:
        seen.append(gc.get_threshold())
        main.close()  # never started: only what the process was set up with matters

    monkeypatch.setattr(service_module, "run_async", run_async)
    monkeypatch.setattr(service_module, "configure_logging", lambda *args, **kwargs: None)  # the tests'
    _run_service(_Idle, load_settings())
    assert seen == [GC_THRESHOLDS]


def test_young_collections_are_rarer_than_cpythons_default() -> None:
    young, middle, full = GC_THRESHOLDS
    assert young >= 10_000 and middle >= 10 and full >= 10
