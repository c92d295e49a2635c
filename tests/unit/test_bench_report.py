"""What `hive bench all` shows: its table, its progress lines, and the figures benchmarks derive."""

from __future__ import annotations

import argparse
import io

import pytest

from services.cli.bench import balance, throughput
from services.cli.bench.report import Progress, Row, bar, render_table
from services.cli.bench.suite import STEPS, defaults, incomplete_workflows
from services.cli.bench.throughput import sustained_rate
from services.cli.bench.workflow import WorkflowBenchResult


def test_the_table_lines_up_metric_target_measured_and_met() -> None:
    table = render_table(
        [
            Row("assignment latency p99", "< 20 ms", "14.2 ms", True),
            Row("throughput", ">= 2,000 tasks/s", "420 tasks/s", False),
            Row("hung agent", "(info)", "1.5 s", None),
        ]
    ).splitlines()
    assert table[0].split() == ["metric", "reference", "target", "measured", "met"]
    assert table[2].endswith("yes") and table[3].endswith("NO") and table[4].endswith("-")
    assert table[2].index("14.2 ms") == table[3].index("420 tasks/s") == table[0].index("measured")


def test_progress_without_a_terminal_prints_one_line_per_step_and_the_total() -> None:
    out = io.StringIO()
    with Progress([("assign", 1.0), ("balance", 3.0)], out=out) as progress:
        progress.step("assign")
        progress.step("balance")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(bar(0.0)) and "1/2 assign" in lines[0]
    assert lines[1].startswith(bar(0.25)) and "2/2 balance" in lines[1]
    assert lines[2].startswith(bar(1.0)) and "2/2 done" in lines[2]
    assert "\r" not in out.getvalue(), "no cursor tricks in a log"


def test_sustained_rate_leaves_out_the_ramp_up_and_the_drain() -> None:
    steady = [float(i) / 1000 for i in range(1000)]  # 1000 completions per second
    slow_edges = [-5.0, -4.0, *steady, 10.0, 11.0]
    assert abs(sustained_rate(steady) - 1000.0) < 5
    assert abs(sustained_rate(slow_edges) - 1000.0) < 10
    assert sustained_rate([1.0, 2.0]) == 0.0


def test_the_suite_runs_every_kind_with_the_sizes_the_targets_are_stated_for() -> None:
    assert [name for name, _weight, _run in STEPS] == [
        "assign",
        "throughput",
        "routing",
        "balance",
        "recovery",
        "workflow",
    ]
    heavy = defaults(balance, "balance")
    assert (heavy.agents, heavy.tasks, heavy.concurrency, heavy.heavy_tasks) == (20, 100, 10, 10_000)
    assert defaults(throughput, "throughput").services == (
        "router",
        "balancer",
        "recovery",
        "workflow",
        "gateway",
    )


@pytest.mark.parametrize(
    ("services", "why"),
    [
        ("router,brain", "services among"),
        ("recovery,balancer", "router included"),
        ("router,gateway", "beside all four"),
    ],
)
def test_a_bad_service_list_is_refused_with_the_reason(services: str, why: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=why):
        throughput.parse_services(services)


def test_the_workflow_row_says_what_kept_workflows_from_completing() -> None:
    def result(completed: int, failed: int, unfinished: int, reasons: list[str]) -> WorkflowBenchResult:
        return WorkflowBenchResult(
            workflows=40, tasks_per_workflow=20, template="t", agents=10, agents_killed=2, fail_rate=0.1,
            completed=completed, failed=failed, unfinished=unfinished, elapsed_s=1.0, workflows_per_s=40.0,
            tasks_per_s=800.0, p50_s=0.1, p95_s=0.2, attempts_failed=3, requeued_after_restart=1,
            failure_reasons=reasons,
        )  # fmt: skip

    assert incomplete_workflows(result(40, 0, 0, [])) == ""
    assert incomplete_workflows(result(39, 1, 0, ["wf-7: step t3 failed"])) == (
        "; 1 failed, 0 unfinished: wf-7: step t3 failed"
    )
    assert incomplete_workflows(result(38, 0, 2, [])) == "; 0 failed, 2 unfinished: none failed"
