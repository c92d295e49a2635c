"""``hive bench all``: every benchmark in turn, a progress bar on stderr, one table of figures.

Each benchmark runs on a private Hive of its own (own nats-server, temp folder), exactly as its own
``hive bench <kind>`` does, with the sizes the targets are stated for: assignment at 1,000 tasks/s
offered, the full lifecycle sustained, routing accuracy (offline replay: deterministic), load
balancing (20 agents, 100 tasks, 10 concurrent clients, and 10,000 tasks), recovery from killed
agents and workflow completion under failures. For the default routing strategy it shows accuracy
(seeds 1-3), efficiency among equal agents (offline and live) and efficiency among agents of
truly different skill (reported: concentrating on the better ones is right there). The table
shows, for each figure, the reference target, what was measured and whether it is met; nothing is
tuned to meet a target. A benchmark that fails is shown as such and the others still run.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict
from types import ModuleType

from services.cli.bench import assign, balance, recovery, routing, throughput, workflow
from services.cli.bench.common import on_private_stack, percentile
from services.cli.bench.report import Progress, Row, render_table
from shared.logging import configure_logging

ASSIGN_RATE = 1000.0


def defaults(module: ModuleType, kind: str, *argv: str) -> argparse.Namespace:
    """The arguments `hive bench <kind> <argv>` would get."""
    parser = argparse.ArgumentParser()
    module.add_parser(parser.add_subparsers(dest="bench"))
    return parser.parse_args([kind, *argv])


def run_assign(quick: bool) -> list[Row]:
    tasks = 2000 if quick else 5000
    result = on_private_stack(
        lambda stack: assign.measure_assignment(
            stack, agents=20, tasks=tasks, rate=ASSIGN_RATE, capacity=10, work_ms=50.0
        ),
        services=("router", "recovery"),
    )
    return [
        Row(
            f"assignment latency p99, {tasks} tasks offered at {ASSIGN_RATE:,.0f}/s "
            f"(p50 {result.p50_ms:.1f} ms)",
            f"< {result.target_p99_ms:.0f} ms",
            f"{result.p99_ms:.1f} ms ({result.assigned}/{result.tasks} assigned, "
            f"{result.throughput_per_s:.0f} tasks/s)",
            result.met,
        )
    ]


def run_throughput(quick: bool) -> list[Row]:
    args = defaults(throughput, "throughput", "--tasks", "3000" if quick else "10000")
    result = throughput.run_throughput(args)
    return [
        Row(
            f"full-lifecycle throughput, sustained, all five services, {result.cpus} CPU(s)",
            f">= {result.target_per_s:,.0f} tasks/s",
            f"{result.sustained_per_s:.0f} tasks/s ({result.completed}/{result.tasks} completed)",
            bool(result.met),
        ),
        Row(
            "CPU per completed task, all five services + nats-server + agents (from /proc)",
            f"<= {result.target_cpu_ms:g} ms",
            f"{result.system_cpu_ms_per_task:.2f} ms ("
            + ", ".join(
                f"{label} {ms:.2f}"
                for label, ms in sorted(result.cpu_ms_per_task.items(), key=lambda item: -item[1])
                if label != throughput.CLIENT
            )
            + ")",
            result.system_cpu_ms_per_task <= result.target_cpu_ms,
        ),
    ]


def run_routing(quick: bool) -> list[Row]:
    args = defaults(routing, "routing", "--offline", *(["--equal-tasks", "1000"] if quick else []))
    report = routing.run_routing(args)
    seeds = list(report.runs)
    accuracies = ", ".join(f"{f.accuracy:.2%}" for f in report.runs.values())
    skilled = [f.efficiency for f in report.runs.values() if f.efficiency is not None]
    utilisation = sum(f.utilisation for f in report.runs.values()) / max(1, len(report.runs))
    by_load: dict[float, list[float]] = {}
    for run in report.equal:
        if run.figures.efficiency is not None:
            by_load.setdefault(run.offered_utilisation, []).append(run.figures.efficiency)
    evenness = ", ".join(f"{min(found):.4f} at {load:.0%}" for load, found in by_load.items())
    span = f"seeds {seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else f"seed {seeds[0]}"
    return [
        Row(
            f"routing accuracy, offline, {args.tasks} tasks, {span}, adaptive (default) "
            "(within 5% of the best free agent)",
            f">= {report.runs[seeds[0]].target:.0%}",
            accuracies,
            report.accuracy_met,
        ),
        Row(
            f"load-balancing efficiency, offline, {args.equal_agents} equal agents, "
            f"{args.equal_tasks} tasks, adaptive (default), lowest of {len(seeds)} seed(s)",
            f">= {report.equal_target}",
            evenness or "n/a",
            report.equal_met,
        ),
        Row(
            f"load-balancing efficiency, offline, {args.agents} agents of different skill "
            "(the accuracy runs), adaptive (default)",
            "(reported: concentration is right)",
            f"{min(skilled):.4f} to {max(skilled):.4f} at {utilisation:.0%} utilisation"
            if skilled
            else "n/a",
            None,
        ),
    ]


def run_balance(quick: bool) -> list[Row]:
    args = defaults(balance, "balance", "--heavy-tasks", "2000" if quick else "10000")
    result = balance.run_balance(args)
    rows = []
    labels = {
        "light": f"{result.agents} equal agents, {args.tasks} tasks, {args.concurrency} in flight, "
        "load_balanced",
        "heavy": f"{result.agents} equal agents, {args.heavy_tasks:,} tasks, {args.concurrency} clients, "
        "load_balanced",
        "light-adaptive": f"{result.agents} equal agents, {args.tasks} tasks, {args.concurrency} in flight, "
        "adaptive (default)",
        "heavy-adaptive": f"{result.agents} equal agents, {args.heavy_tasks:,} tasks, {args.concurrency} "
        "clients, adaptive (default)",
        "varied": f"{result.agents} agents of varied personas, {args.tasks} tasks, {args.concurrency} in "
        "flight, load_balanced",
        "skilled": f"{result.agents} agents of different skill, {args.skilled_tasks:,} tasks, "
        f"{args.concurrency} in flight, adaptive (default)",
    }
    for phase in result.phases:
        if phase.name in labels:
            measured = "n/a" if phase.efficiency is None else f"{phase.efficiency:.4f}"
            target = result.target_of(phase)
            rows.append(
                Row(
                    f"load-balancing efficiency, {labels[phase.name]}",
                    "(reported: concentration is right)" if target is None else f">= {target}",
                    f"{measured} at {phase.mean_utilisation:.0%} utilisation "
                    f"({phase.completed}/{phase.tasks} completed)",
                    None if target is None else phase.efficiency is not None and phase.efficiency >= target,
                )
            )
        elif phase.name == "stalled":
            worst = max(phase.rescue_s, default=float("nan"))
            rows.append(
                Row(
                    f"work left unstarted by {args.stalled} stalled agents: assignment -> started "
                    "elsewhere, max",
                    f"(REBALANCE_AFTER_S = {result.rebalance_after_s:g} s)",
                    f"{worst:.2f} s ({phase.moves} moved, {phase.completed}/{phase.tasks} completed)",
                    None,
                )
            )
    return rows


def run_recovery(quick: bool) -> list[Row]:
    rounds = 2 if quick else 3
    result = on_private_stack(
        lambda stack: recovery.measure_recovery(stack, rounds=rounds, victims=2, capacity=2),
        services=("router", "recovery"),
    )
    killed, hung = result.running("kill"), result.running("hang")
    return [
        Row(
            f"recovery: agent killed -> all its tasks running elsewhere, max of {len(killed)} rounds",
            f"< {recovery.TARGET_S:g} s",
            f"{max(killed, default=float('nan')):.3f} s (p50 {percentile(killed, 50):.3f} s)",
            result.met,
        ),
        Row(
            f"recovery: agent hung (heartbeats only) -> tasks running elsewhere, max of {len(hung)} rounds",
            "(3 missed beats = 1.5 s, then reassignment)",
            f"{max(hung, default=float('nan')):.3f} s",
            None,
        ),
    ]


def run_workflow(quick: bool) -> list[Row]:
    args = defaults(workflow, "workflow", *(["--workflows", "20"] if quick else []))
    result = on_private_stack(
        lambda stack: workflow.measure_workflows(stack, args),
        services=("router", "recovery", "workflow"),
        work_ack_wait_s=5.0,
    )
    return [
        Row(
            f"workflow completion, {result.workflows} x {result.tasks_per_workflow} tasks, "
            f"{result.fail_rate:.0%} of attempts failing, {result.agents_killed} agent(s) killed",
            "100%",
            f"{result.completion_rate:.1%} ({result.completed}/{result.workflows}, "
            f"{result.workflows_per_s:.2f} workflows/s){incomplete_workflows(result)}",
            bool(result.completed == result.workflows),
        )
    ]


def incomplete_workflows(result: workflow.WorkflowBenchResult) -> str:
    """What kept workflows from completing, so a missed target can be looked into."""
    if result.completed == result.workflows:
        return ""
    reasons = "; ".join(result.failure_reasons[:2]) or "none failed"
    return f"; {result.failed} failed, {result.unfinished} unfinished: {reasons}"


STEPS: list[tuple[str, float, Callable[[bool], list[Row]]]] = [
    ("assign", 12.0, run_assign),
    ("throughput", 35.0, run_throughput),
    ("routing", 20.0, run_routing),
    ("balance", 130.0, run_balance),
    ("recovery", 35.0, run_recovery),
    ("workflow", 40.0, run_workflow),
]
"""(kind, expected seconds: the progress bar's weights, runner)."""


def bench_all(args: argparse.Namespace) -> int:
    configure_logging("error", service="bench")
    chosen = [step for step in STEPS if step[0] not in set(args.skip)]
    rows: list[Row] = []
    with Progress([(name, weight) for name, weight, _run in chosen]) as progress:
        for name, _weight, runner in chosen:
            progress.step(name)
            try:
                rows += runner(args.quick)
            except Exception as exc:  # one broken benchmark must not hide the others' figures
                rows.append(Row(f"{name} benchmark", "-", f"failed: {type(exc).__name__}: {exc}", False))
    if args.json:
        print(json.dumps([asdict(row) for row in rows]))
        return 0
    print(render_table(rows))
    judged = [row for row in rows if row.met is not None]
    print(f"\n{sum(1 for row in judged if row.met)} of {len(judged)} targets met.")
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    bench = commands.add_parser("all", help="every benchmark, with a progress bar and a table of figures")
    bench.add_argument(
        "--quick", action="store_true", help="smaller runs (a first look, not the targets' sizes)"
    )
    bench.add_argument(
        "--skip", action="append", default=[], choices=[name for name, _w, _r in STEPS], help="leave one out"
    )
    bench.add_argument("--json", action="store_true", help="the rows as one JSON list instead of a table")
    bench.set_defaults(func=bench_all)
