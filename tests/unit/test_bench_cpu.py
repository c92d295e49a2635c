"""CPU per task as the benchmarks report it: read from /proc, per process and per task."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import pytest

from services.cli.bench.cpu import CpuMeter, cpu_seconds, per_task_ms
from services.cli.bench.scale import figures, median_pair, positive_int, service_of, system_change
from services.cli.bench.throughput import ThroughputResult, counted_between, deliveries_per_task


def burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_a_process_s_cpu_time_grows_with_the_work_it_does() -> None:
    before = cpu_seconds(os.getpid())
    burn(0.2)
    after = cpu_seconds(os.getpid())
    assert before is not None and after is not None
    assert after - before >= 0.15


def test_a_process_that_is_gone_has_no_cpu_time() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert cpu_seconds(child.pid) is None


def test_the_meter_charges_each_label_with_its_own_processes_only() -> None:
    idle = subprocess.Popen(
        [sys.executable, "-c", "import time; print('asleep', flush=True); time.sleep(5)"],
        stdout=subprocess.PIPE,
    )
    try:
        assert idle.stdout is not None
        assert idle.stdout.readline() == b"asleep\n"  # its start-up CPU is spent before the window
        meter = CpuMeter({"me": [os.getpid()], "idle": [idle.pid]})
        meter.start()
        burn(0.2)
        spent = meter.stop()
    finally:
        idle.kill()
        idle.wait()
    assert spent["me"] >= 0.15
    assert spent["idle"] < 0.05


def test_a_process_that_dies_during_the_window_counts_up_to_its_last_sample() -> None:
    script = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    worker = subprocess.Popen([sys.executable, "-c", script])
    meter = CpuMeter({"worker": [worker.pid]})
    meter.start()
    deadline = time.monotonic() + 10
    while (cpu_seconds(worker.pid) or 0.0) < 0.2 and time.monotonic() < deadline:
        time.sleep(0.01)
    meter.sample()
    worker.wait()
    spent = meter.stop()  # gone by now: what it spent up to the sample still counts
    assert spent["worker"] >= 0.1


def test_per_task_figures_divide_by_the_completed_tasks() -> None:
    assert per_task_ms({"router": 2.0, "nats": 0.5}, 1000) == {"router": 2.0, "nats": 0.5}
    assert per_task_ms({"router": 2.0}, 0) == {"router": 0.0}


def test_deliveries_per_task_count_only_what_arrived_in_the_window() -> None:
    before = {"router-0": {"projection:router": 100, "work:router": 10}}
    after = {
        "router-0": {"projection:router": 500, "work:router": 110},
        "router-1": {"projection:router": 400},
    }
    assert deliveries_per_task(before, after, 100) == {
        "router-0": {"projection:router": 4.0, "work:router": 1.0},
        "router-1": {"projection:router": 4.0},
    }
    assert deliveries_per_task(before, after, 0) == {}


def result(
    cpu: dict[str, float],
    delivered: dict[str, dict[str, float]],
    decided: dict[str, int],
    refused: dict[str, int] | None = None,
) -> ThroughputResult:
    return ThroughputResult(
        services=["router", "recovery"],
        agents=1,
        capacity=1,
        tasks=100,
        outstanding=10,
        completed=100,
        elapsed_s=1.0,
        sustained_per_s=100.0,
        overall_per_s=100.0,
        cpus=2,
        cpu_ms_per_task=cpu,
        delivered_per_task=delivered,
        decided=decided,
        refused=refused or {},
    )


def test_the_scale_model_sums_a_services_instances_and_shares_its_decisions_among_them() -> None:
    one = result({"router-0": 1.0, "recovery-0": 0.2, "nats-server": 0.5}, {}, {"router-0": 100})
    many = result(
        {"router-0": 0.6, "router-1": 0.55, "recovery-0": 0.2, "recovery-1": 0.2, "nats-server": 0.6},
        {"router-0": {"projection:router": 2.0, "work:router": 0.5}, "router-1": {"projection:router": 2.0}},
        {"router-0": 30, "router-1": 70, "recovery-0": 0, "recovery-1": 0},
        {"router-0": 6, "router-1": 7},
    )
    router = figures("router", one, many)
    assert (router.instances, router.one_cpu_ms_per_task) == (2, 1.0)
    assert abs(router.many_cpu_ms_per_task - 1.15) < 1e-9 and abs(router.change - 0.15) < 1e-9
    assert [(f.instance, f.read_per_task, f.share, f.refused) for f in router.per_instance] == [
        ("router-0", 2.5, 0.3, 0.2),
        ("router-1", 2.0, 0.7, 0.1),
    ]
    recovery = figures("recovery", one, many)
    assert [f.share for f in recovery.per_instance] == [None, None], "nothing decided: no share"
    assert [f.refused for f in recovery.per_instance] == [None, None], "not a router: no refusals"
    assert service_of("router-12") == "router"


def test_several_rounds_detail_the_pair_whose_whole_system_change_is_the_median() -> None:
    def pair(one_ms: float, many_ms: float) -> tuple[ThroughputResult, ThroughputResult]:
        return result({"router-0": one_ms, "bench client": 9.0}, {}, {}), result(
            {"router-0": many_ms}, {}, {}
        )

    rounds = [pair(2.0, 3.0), pair(2.0, 2.2), pair(2.0, 2.6)]  # +50%, +10%, +30%: the client not counted
    assert [round(system_change(*p), 2) for p in rounds] == [0.5, 0.1, 0.3]
    assert median_pair(rounds) is rounds[2]
    assert median_pair(rounds[:2]) is rounds[1], "an even count: the lower middle one"
    with pytest.raises(ValueError):
        median_pair([])


@pytest.mark.parametrize("text", ["0", "-2", "two"])
def test_rounds_must_be_a_whole_number_of_at_least_one(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        positive_int(text)
    assert positive_int("3") == 3


def test_counts_between_two_health_readings_start_from_zero_for_an_instance_new_in_the_second() -> None:
    assert counted_between({"router-0": 5}, {"router-0": 9, "router-1": 3}) == {"router-0": 4, "router-1": 3}
