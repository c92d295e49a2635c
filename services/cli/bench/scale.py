"""``hive bench scale``: what an added instance of each service costs and takes on.

The throughput benchmark runs twice on private Hives: one instance of every service, then
``--instances`` of the router, recovery, balancer and workflow (one gateway: it answers HTTP and
keeps the read model, and scales by being put behind a load balancer). For each service it prints
the CPU per completed task of all its instances together in both runs (adding instances should
cost at most 15% more in total), and per instance its CPU and the messages it read per task and
its share of the service's decisions (each should fall as 1/N). Those per-instance figures are
what the README's model of a 16- and 64-core deployment is built from. On a 2-core machine the
instances share the same cores: the figures are costs, not speed-ups.

The whole system's change moves by tens of percent from one pair of runs to the next on a shared
machine, so ``--rounds N`` runs N pairs, one instance then several, alternately, prints each pair's
change and their median, and details the pair whose change is the median.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass

from services.cli.bench.common import quiet
from services.cli.bench.throughput import AGENTS, CLIENT, ThroughputResult, parse_services, run_throughput
from services.cli.stack import SERVICE_NAMES

SCALED = ("router", "recovery", "balancer", "workflow")
"""Services run with several instances (the gateway stays one)."""
TOTAL_WITHIN = 0.15
"""An added instance may cost this much more CPU per task in total, at most (the issue's target)."""


@dataclass
class InstanceFigures:
    instance: str
    cpu_ms_per_task: float
    read_per_task: float
    """Messages its consumers received per completed task (projection and work together)."""
    share: float | None
    """Its part of the service's decisions (None when the service decided nothing)."""
    refused: float | None = None
    """A router's decisions the server refused, per decision it made (None: not a router, or it
    made none): racing instances that gave work to the same agent refuse each other."""


@dataclass
class ServiceFigures:
    service: str
    instances: int
    one_cpu_ms_per_task: float
    """All of it, with one instance."""
    many_cpu_ms_per_task: float
    """All its instances together."""
    per_instance: list[InstanceFigures]

    @property
    def change(self) -> float:
        """How much more (or less) the service costs per task with its instances than with one."""
        return self.many_cpu_ms_per_task / self.one_cpu_ms_per_task - 1 if self.one_cpu_ms_per_task else 0.0


@dataclass
class ScaleResult:
    one: ThroughputResult
    many: ThroughputResult
    services: list[ServiceFigures]
    rounds: list[float] | None = None
    """The whole system's change in each pair of runs, in the order run (``--rounds``)."""

    @property
    def change(self) -> float:
        """How much more (or less) the whole system costs per task with the added instances."""
        return system_change(self.one, self.many)


def system_change(one: ThroughputResult, many: ThroughputResult) -> float:
    one_ms = one.system_cpu_ms_per_task
    return many.system_cpu_ms_per_task / one_ms - 1 if one_ms else 0.0


def median_pair(
    pairs: list[tuple[ThroughputResult, ThroughputResult]],
) -> tuple[ThroughputResult, ThroughputResult]:
    """The pair whose whole-system change is the median (the lower middle one of an even count)."""
    if not pairs:
        raise ValueError("no pair of runs to choose from")
    ranked = sorted(range(len(pairs)), key=lambda index: system_change(*pairs[index]))
    return pairs[ranked[(len(ranked) - 1) // 2]]


def service_of(instance: str) -> str:
    return instance.rsplit("-", 1)[0]


def figures(service: str, one: ThroughputResult, many: ThroughputResult) -> ServiceFigures:
    """One service's costs in both runs, and each of its instances' share in the second."""
    mine = sorted(label for label in many.cpu_ms_per_task if service_of(label) == service)
    decided = {label: many.decided.get(label, 0) for label in mine}
    total = sum(decided.values())
    return ServiceFigures(
        service=service,
        instances=len(mine),
        one_cpu_ms_per_task=sum(
            ms for label, ms in one.cpu_ms_per_task.items() if service_of(label) == service
        ),
        many_cpu_ms_per_task=sum(many.cpu_ms_per_task[label] for label in mine),
        per_instance=[
            InstanceFigures(
                instance=label,
                cpu_ms_per_task=many.cpu_ms_per_task[label],
                read_per_task=sum(many.delivered_per_task.get(label, {}).values()),
                share=decided[label] / total if total else None,
                refused=(
                    many.refused[label] / decided[label] if label in many.refused and decided[label] else None
                ),
            )
            for label in mine
        ],
    )


def run_scale(args: argparse.Namespace) -> ScaleResult:
    scaled = {name: args.instances for name in SCALED if name in args.services}
    pairs = [(run_throughput(args), run_throughput(args, scale=scaled)) for _ in range(args.rounds)]
    one, many = median_pair(pairs)
    services = [figures(name, one, many) for name in args.services]
    rounds = [system_change(*pair) for pair in pairs] if len(pairs) > 1 else None
    return ScaleResult(one=one, many=many, services=services, rounds=rounds)


def bench_scale(args: argparse.Namespace) -> int:
    result = run_scale(args)
    if args.json:
        changes = {s.service: s.change for s in result.services}
        print(json.dumps(asdict(result) | {"changes": changes, "change": result.change}))
        return 0
    one, many = result.one, result.many
    if result.rounds is not None:
        ordered = sorted(result.rounds)
        print(
            f"scale: {len(result.rounds)} pairs of runs, whole system's change "
            f"{', '.join(f'{change:+.0%}' for change in result.rounds)} (in the order run); "
            f"median {ordered[(len(ordered) - 1) // 2]:+.0%}, detailed below"
        )
    print(
        f"scale: {one.tasks} tasks kept {one.outstanding} deep, {one.agents} agents x capacity "
        f"{one.capacity}; 1 instance of each service, then {args.instances} of "
        f"{', '.join(name for name in SCALED if name in args.services)}; {one.cpus} CPU(s) shared by all"
    )
    print(
        f"  whole system CPU ms/task  {one.system_cpu_ms_per_task:.2f} -> "
        f"{many.system_cpu_ms_per_task:.2f}   "
        f"tasks/s {one.sustained_per_s:.0f} -> {many.sustained_per_s:.0f}   "
        f"completed {one.completed}/{one.tasks}, {many.completed}/{many.tasks}"
    )
    print(
        f"  {'service':<10} {'CPU ms/task (1 -> all)':>24} {'change':>8}   "
        "per instance: CPU ms/task, read/task, share[, refused per decision]"
    )
    for service in result.services:
        within = "" if service.instances < 2 or service.change <= TOTAL_WITHIN else "  (over +15%)"
        each = ", ".join(
            f"{figure.instance} {figure.cpu_ms_per_task:.2f} {figure.read_per_task:.2f} "
            + (f"{figure.share:.0%}" if figure.share is not None else "-")
            + (f" refused {figure.refused:.0%}" if figure.refused is not None else "")
            for figure in service.per_instance
        )
        print(
            f"  {service.service:<10} {service.one_cpu_ms_per_task:>11.2f} -> "
            f"{service.many_cpu_ms_per_task:<9.2f} "
            f"{service.change:>+7.0%}   {each}{within}"
        )
    for label in ("nats-server", AGENTS, CLIENT):
        print(
            f"  {label:<10} {one.cpu_ms_per_task.get(label, 0.0):>11.2f} -> "
            f"{many.cpu_ms_per_task.get(label, 0.0):<9.2f}"
        )
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    bench = commands.add_parser("scale", help="what added instances of each service cost and take on")
    bench.add_argument(
        "--instances", type=int, default=2, help="instances of router, recovery, balancer, workflow"
    )
    bench.add_argument("--tasks", type=int, default=3000)
    bench.add_argument("--outstanding", type=int, default=400, help="tasks submitted and not completed")
    bench.add_argument("--agents", type=int, default=20)
    bench.add_argument("--capacity", type=int, default=50)
    bench.add_argument(
        "--services",
        type=parse_services,
        default=SERVICE_NAMES,
        help="comma-separated services to run (default: all five, as hive up)",
    )
    bench.add_argument(
        "--rounds",
        type=positive_int,
        default=1,
        help="pairs of runs (one instance, then several), alternately; the median pair is detailed",
    )
    bench.add_argument("--json", action="store_true", help="one JSON line instead of a table")
    bench.set_defaults(func=quiet(bench_scale))


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value
