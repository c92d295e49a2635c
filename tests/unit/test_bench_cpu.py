"""CPU per task as the benchmarks report it: read from /proc, per process and per task."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from services.cli.bench.cpu import CpuMeter, cpu_seconds, per_task_ms
from services.cli.bench.throughput import deliveries_per_task


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
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
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
