"""The pieces of the responses the specification shows, without NATS: ISO-8601 times, the host's
CPU and memory from /proc, predictions over a time horizon, and advice for missed targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.gateway.host import HostUsage, cpu_times, memory_percent
from services.gateway.timestamps import epoch_of, iso_utc
from shared.domain.performance_metrics import Figure, OrchestrationFigures
from shared.domain.performance_targets import check_targets, recommendations, targets
from shared.domain.prediction import REFERENCE_HORIZON_MIN, Prediction, over_horizon

STAT = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\n"
LATER = "cpu  160 0 70 840 50 0 0 0 0 0\n"
MEMINFO = "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    250 kB\n"


def test_times_are_iso_8601_utc_and_read_back_from_iso_or_epoch() -> None:
    assert iso_utc(1_753_731_000.0) == "2025-07-28T19:30:00.000Z"
    assert epoch_of(iso_utc(1_753_731_000.25)) == 1_753_731_000.25
    assert epoch_of("2025-07-28T21:30:00+02:00") == epoch_of("2025-07-28T19:30:00") == 1_753_731_000.0
    assert epoch_of("1753731000") == epoch_of(1_753_731_000) == 1_753_731_000.0
    for bad in ("soon", -1.0, float("nan")):
        with pytest.raises(ValueError):
            epoch_of(bad)


def test_cpu_is_busy_time_over_total_between_two_readings_and_memory_is_what_is_not_available(
    tmp_path: Path,
) -> None:
    assert cpu_times(STAT) == (150, 1000)
    assert memory_percent(MEMINFO) == 75.0
    (tmp_path / "stat").write_text(STAT)
    (tmp_path / "meminfo").write_text(MEMINFO)
    host = HostUsage(tmp_path)
    assert host.cpu_percent() == 15.0, "the first reading: since boot"
    (tmp_path / "stat").write_text(LATER)
    host._last_at -= 1.0  # as if a second had passed since the first request
    assert host.cpu_percent() == 66.67, "(230 - 150) busy of (1120 - 1000) jiffies"
    assert host.memory_percent() == 75.0


def test_without_proc_the_host_figures_are_null(tmp_path: Path) -> None:
    host = HostUsage(tmp_path / "missing")
    assert host.cpu_percent() is None and host.memory_percent() is None


def test_a_prediction_stretches_to_its_horizon_with_a_constant_hazard() -> None:
    base = Prediction(agent_id="a", status="active", probability=0.2, risk="medium", factors=[])
    assert over_horizon(base, REFERENCE_HORIZON_MIN) == base
    assert over_horizon(base, 60.0).probability == pytest.approx(1 - 0.8**2, abs=1e-4)
    assert over_horizon(base, 1440.0).risk == "high"
    assert over_horizon(base, 1.0).probability < 0.2
    gone = Prediction(agent_id="b", status="unresponsive", probability=1.0, risk="high", factors=[])
    assert over_horizon(gone, 1.0).probability == 1.0


def test_each_missed_target_gets_one_recommendation_naming_it_and_met_or_unmeasured_ones_none() -> None:
    found = OrchestrationFigures(
        window_s=60.0,
        task_assignment_latency_ms=Figure(value=50.0, samples=10),
        load_balancing_efficiency=Figure(value=0.99, samples=10),
        routing_accuracy_percent=Figure(value=None, samples=0),
        failure_recovery_time_ms=Figure(value=None, samples=0),
        system_throughput_tasks_per_second=Figure(value=5.0, samples=10),
        workflow_completion_rate=Figure(value=1.0, samples=2),
        assignment_latency_ms={},
        recovery_time_ms={},
    )
    checks = check_targets(
        found,
        targets(
            assignment_latency_ms=20.0,
            load_balancing_efficiency=0.97,
            routing_accuracy_percent=95.0,
            recovery_time_ms=1500.0,
            throughput_tps=2000.0,
            workflow_completion_rate=1.0,
        ),
    )
    advice = recommendations(checks)
    assert [line.split(" ", 1)[0] for line in advice] == [
        "task_assignment_latency_ms",
        "system_throughput_tasks_per_second",
    ]
    assert "target < 20" in advice[0]
