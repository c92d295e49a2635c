"""CPU per routing decision, in process: ``python -m services.cli.bench.route_cost``.

Replays what ``hive bench assign`` asks of the router without NATS: 20 agents of capacity 10 offering
one task type, tasks arriving at a fixed cadence (1,000/s and 500/s), each worked 50 ms (+-20%) and
completed with a quality near 0.8, so outcomes are learned between decisions as the router learns
them. After every arrival the completions due are applied and ``plan`` decides what it can, as the
service does after a wake (with the limits of keys kept between plans, as it keeps them); only
``plan`` is timed (``time.process_time``: CPU, not wall time, so
other processes on the machine count little). The digest of every decision made (agent, score,
breakdown, rivals, explanation) lets two versions of the code be compared byte for byte.

CPU time is noisy on a shared machine; instructions are not. Counted by callgrind, only inside
the plans (``--toggle-collect=_operator_call``, see ``replay``)::

    valgrind --tool=callgrind --toggle-collect=_operator_call \
        python -m services.cli.bench.route_cost --tasks 1000 --repeat 1 --rates 1000
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import operator
import random
import sys
import time

import msgspec

from services.router import keyed
from services.router.decide import Assign, Scan, plan
from shared.domain.routing.policy import RoutingConfig
from shared.domain.routing.view import RouterState, apply_router
from shared.events import AgentRegistered, AnyEvent, Persona, TaskAssigned, TaskCompleted, TaskSubmitted
from shared.recorded import Recorded

STYLES = ("analytical", "creative", "pragmatic", "collaborative", "meticulous")
TASK_TYPE = "bench"


class _Log:
    """A router state fed one event at a time, as the router's projection is."""

    def __init__(self) -> None:
        self.state = RouterState()
        self.seq = 0

    def add(self, event: AnyEvent, ts: float) -> None:
        self.seq += 1
        stamped = msgspec.structs.replace(event, ts=ts)
        apply_router(self.state, Recorded(self.seq, stamped.subject, stamped))


def replay(
    *, rate: float, tasks: int, agents: int = 20, capacity: int = 10, work_s: float = 0.05, seed: int = 1
) -> tuple[float, int, str]:
    """CPU seconds spent in ``plan``, decisions made, and the digest of the decisions."""
    rng = random.Random(seed)
    log = _Log()
    for index in range(agents):
        persona_rng = random.Random(seed * 1000 + index)
        log.add(
            AgentRegistered(
                agent_id=f"bench-{index}",
                capabilities={TASK_TYPE: 1.0},
                persona=Persona(
                    cognitive_style=STYLES[index % len(STYLES)],  # type: ignore[arg-type]
                    creativity=round(persona_rng.random(), 2),
                    analytical_depth=round(persona_rng.random(), 2),
                    collaboration=round(persona_rng.random(), 2),
                ),
                capacity=capacity,
                session="bench",
            ),
            0.0,
        )
    config = RoutingConfig()
    limits = keyed.limits_of(log.state, config)  # kept between plans, as the service keeps them
    digest = hashlib.sha256()
    done: list[tuple[float, int, str, str, int]] = []  # (time, order, task id, agent id, attempt)
    order = 0
    spent = 0.0
    decisions = 0
    for index in range(tasks):
        now = index / rate
        while done and done[0][0] <= now:
            at, _order, task_id, agent_id, attempt = heapq.heappop(done)
            quality = min(1.0, max(0.0, rng.gauss(0.8, 0.05)))
            log.add(
                TaskCompleted(
                    task_id=task_id, agent_id=agent_id, attempt=attempt, quality=quality, duration_s=work_s
                ),
                at,
            )
        log.add(TaskSubmitted(task_id=f"bench-task-{index}", task_type=TASK_TYPE), now)
        begin = time.process_time()
        # Called through ``operator.call`` so that callgrind can count the instructions of the plans
        # alone: ``valgrind --tool=callgrind --toggle-collect=_operator_call python -m ...``.
        planned = operator.call(plan, log.state, now, config, scan=Scan(log.state, config, limits))
        spent += time.process_time() - begin
        for item in planned:
            decision = item.decision
            digest.update(msgspec.json.encode(decision))
            if not isinstance(decision, Assign):
                continue
            decisions += 1
            log.add(
                TaskAssigned(
                    agent_id=decision.agent_id,
                    task_id=decision.task_id,
                    attempt=decision.attempt,
                    session=decision.session,
                    strategy=decision.strategy,
                    score=decision.score,
                    breakdown=decision.breakdown,
                    rejected=decision.rejected,
                    explanation=decision.explanation,
                    decided_at_seq=log.seq,
                    decided_at_ts=now,
                ),
                now,
            )
            order += 1
            finish = now + work_s * (1.0 + rng.uniform(-0.2, 0.2))
            heapq.heappush(done, (finish, order, decision.task_id, decision.agent_id, decision.attempt))
    return spent, decisions, digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.cli.bench.route_cost", description=__doc__)
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--rates", default="1000,500", help="comma-separated offered rates per second")
    parser.add_argument("--repeat", type=int, default=3, help="runs per rate (the best is reported)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = []
    for rate in (float(r) for r in args.rates.split(",") if r.strip()):
        runs = [replay(rate=rate, tasks=args.tasks, seed=args.seed) for _ in range(args.repeat)]
        best = min(spent for spent, _n, _d in runs)
        decisions, digest = runs[0][1], runs[0][2]
        results.append(
            {
                "rate": rate,
                "decisions": decisions,
                "us_per_decision": round(best / max(1, decisions) * 1e6, 1),
                "us_per_decision_runs": [round(s / max(1, decisions) * 1e6, 1) for s, _n, _d in runs],
                "digest": digest[:16],
            }
        )
    if args.json:
        sys.stdout.write(json.dumps(results) + "\n")
    else:
        for row in results:
            sys.stdout.write(
                f"rate {row['rate']:>6.0f}/s  decisions {row['decisions']}  "
                f"CPU {row['us_per_decision']} us/decision (runs {row['us_per_decision_runs']})  "
                f"digest {row['digest']}\n"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
