"""``hive agent`` collects reference cycles as rarely as a service, and never walks its startup heap
again: its agents allocate a few dozen short-lived objects per task."""

from __future__ import annotations

import argparse
import gc
from collections.abc import Coroutine
from typing import Any

import pytest

from services.cli import agents as agents_module
from shared.service import GC_THRESHOLDS


def test_the_agents_process_runs_with_the_services_gc_thresholds_and_a_frozen_startup_heap(
    restored_gc: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    gc.set_threshold(700, 10, 10)  # CPython's defaults
    gc.unfreeze()
    seen: list[tuple[tuple[int, int, int], int]] = []

    def run_async(main: Coroutine[Any, Any, Any]) -> None:
        seen.append((gc.get_threshold(), gc.get_freeze_count()))
        main.close()  # never started: only what the process was set up with matters

    monkeypatch.setattr(agents_module, "run_async", run_async)
    monkeypatch.setattr(agents_module, "configure_logging", lambda *args, **kwargs: None)  # the tests'
    args = argparse.Namespace(
        count=2, prefix="gc", capabilities="x", capacity=1, work_ms=0.0, fail_rate=0.0, seed=7
    )
    assert agents_module.run(args) == 0
    [(thresholds, frozen)] = seen
    assert thresholds == GC_THRESHOLDS
    assert frozen > 0
