"""``hive replay``: the event log as a timeline, projections as they were, decisions re-run."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import msgspec

from services.router.rerun import explain_task
from services.workflow.view import WORKFLOW_VIEW
from shared.bus import EventBus
from shared.domain.routing.view import ROUTER_VIEW
from shared.logging import configure_logging
from shared.projection import rebuild
from shared.projection_spec import ProjectionSpec
from shared.replay import (
    ReplayError,
    TimelineFilter,
    as_json,
    describe,
    parse_time,
    seq_at,
    timeline,
)
from shared.service import run_async
from shared.settings import load_settings
from shared.subjects import AGGREGATES


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "replay",
        help="read the event log: timeline, state at a point (--at), re-run a routing decision (explain)",
        description="Filters combine. Times are ISO 8601 (UTC unless an offset is given) "
        "or relative (10m, 2h).",
    )
    parser.add_argument("--aggregate", choices=AGGREGATES, help="only events of this aggregate")
    parser.add_argument("--id", dest="aggregate_id", help="only events of this aggregate id")
    parser.add_argument(
        "--type",
        dest="types",
        action="append",
        default=[],
        help="event type, e.g. task.completed or completed (repeatable)",
    )
    parser.add_argument("--since", help="events at or after this time")
    parser.add_argument("--until", help="events at or before this time")
    parser.add_argument("--from-seq", type=int, default=1, help="first stream sequence")
    parser.add_argument("--to-seq", type=int, help="last stream sequence")
    parser.add_argument("--format", choices=("table", "json"), default="table", help="table or JSON lines")
    parser.add_argument("--at", help="instead of a timeline: the projections as they were at SEQ or TIME")
    parser.add_argument(
        "--view",
        choices=("fleet", "breakers", "workflows"),
        default="fleet",
        help="which projection --at shows",
    )
    sub = parser.add_subparsers(dest="replay_command")
    explain = sub.add_parser("explain", help="re-run the router's decision(s) for a task and compare")
    explain.add_argument("task_id")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    configure_logging("warning", service="replay")
    try:
        return run_async(_main(args))
    except ReplayError as exc:
        print(f"hive replay: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # NATS unreachable or credentials refused
        print(f"hive replay: cannot reach NATS: {exc}", file=sys.stderr)
        return 1


async def _main(args: argparse.Namespace) -> int:
    settings = load_settings()
    user, password = settings.nats_credentials
    bus = await EventBus.connect(settings.nats_url, "replay", connect_timeout=5, user=user, password=password)
    try:
        if getattr(args, "replay_command", None) == "explain":
            return await _explain(bus, args.task_id)
        if args.at:
            return await _at(bus, args.at, args.view, args.format)
        return await _timeline(bus, args)
    finally:
        await bus.close()


async def _timeline(bus: EventBus, args: argparse.Namespace) -> int:
    now = time.time()
    selection = TimelineFilter(
        aggregate=args.aggregate,
        aggregate_id=args.aggregate_id,
        types=frozenset(args.types),
        since_ts=parse_time(args.since, now) if args.since else None,
        until_ts=parse_time(args.until, now) if args.until else None,
        from_seq=args.from_seq,
        to_seq=args.to_seq,
    )
    if selection.aggregate_id is not None and selection.aggregate is None:
        raise ReplayError("--id needs --aggregate")
    shown = 0
    async for recorded in timeline(bus, selection):
        print(as_json(recorded) if args.format == "json" else describe(recorded))
        shown += 1
    if args.format == "table":
        print(f"-- {shown} event(s)")
    return 0


def _spec(view: str) -> ProjectionSpec[Any]:
    return WORKFLOW_VIEW if view == "workflows" else ROUTER_VIEW


async def _at(bus: EventBus, point: str, view: str, output: str) -> int:
    seq = await seq_at(bus, point)
    state, applied = await rebuild(bus, _spec(view), stop_seq=seq)
    if output == "json":
        part = state if view == "workflows" else getattr(state, "fleet" if view == "fleet" else "breakers")
        print(json.dumps({"seq": applied, "view": view, "state": msgspec.to_builtins(part)}))
        return 0
    print(f"{view} as of sequence {applied}")
    if view == "fleet":
        fleet = state.fleet
        print(f"{'agent':<24} {'status':<13} {'load':>9} {'done':>6} {'failed':>6}")
        for agent in sorted(fleet.agents.values(), key=lambda a: a.agent_id):
            print(
                f"{agent.agent_id:<24} {agent.status:<13} {agent.load:>4}/{agent.capacity:<4} "
                f"{agent.completed:>6} {agent.failed:>6}"
            )
        print(f"queue: {len(fleet.queue)} waiting {[key[2] for key in fleet.queue[:10]]}")
        print(f"tasks: {dict(sorted(fleet.totals.items()))}")
    elif view == "breakers":
        breakers = state.breakers.breakers
        if not breakers:
            print("no breaker ever left closed")
        for breaker in sorted(breakers.values(), key=lambda b: b.agent_id):
            print(
                f"{breaker.agent_id:<24} {breaker.status:<10} failure_rate={breaker.failure_rate:.2f} "
                f"opened {breaker.times_opened}x {breaker.reason}"
            )
    else:
        print(json.dumps(msgspec.to_builtins(state), indent=2)[:20_000])
    return 0


async def _explain(bus: EventBus, task_id: str) -> int:
    explanations = await explain_task(bus, task_id)
    if not explanations:
        print(f"task {task_id!r} was never assigned")
        return 1
    reproduced = True
    for item in explanations:
        print(
            f"attempt {item.attempt}: recorded at seq {item.seq}: agent {item.recorded_agent} "
            f"(score {item.recorded_score:.3f}, {item.recorded_strategy})"
        )
        if item.rerun_agent is None:
            print(f"  re-run on the view at seq {item.view_seq}: no assignment - {item.note}")
        else:
            print(
                f"  re-run on the view at seq {item.view_seq}: agent {item.rerun_agent} "
                f"(score {item.rerun_score:.3f})"
            )
            print(f"  breakdown: {json.dumps(item.breakdown)}")
            for other in item.rejected:
                print(f"  not {other.agent_id}: {other.reason} (score {other.score:.3f})")
            if item.note:
                print(f"  note: {item.note}")
        verdict = "reproduces the recorded choice" if item.reproduced else "DIFFERS from the recorded choice"
        print(f"  -> {verdict}")
        reproduced = reproduced and item.reproduced
    return 0 if reproduced else 1
