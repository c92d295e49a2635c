"""``hive bench recovery``: time from an agent's death to all of its tasks running elsewhere.

Each round runs agents that hold long tasks, then kills them and times, as an observer of the log
sees it, when they are declared unresponsive, when their tasks are requeued, assigned to another
agent and started there. Two ways to die are measured:

* **kill**: ``hive agent`` processes killed with SIGKILL; their NATS connection closes, which the
  server announces (disconnect advisory) and recovery hears at once;
* **hang**: in-process agents that stop heartbeating but keep their connection (a hung process):
  only missed heartbeats tell, so detection takes HEARTBEAT_MISSED_LIMIT x HEARTBEAT_INTERVAL_S.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from services.cli.bench.agent_process import spawn_agent_process
from services.cli.bench.common import on_private_stack, percentile, quiet, wait_for_services
from services.cli.stack import Stack
from shared.agent.sdk import Agent, TaskContext
from shared.agent.simulated import SimulationProfile, make_simulated_agents
from shared.bus import EventBus
from shared.events import (
    AgentRegistered,
    AgentUnresponsive,
    AnyEvent,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCompleted,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
)
from shared.recorded import Recorded
from shared.settings import Settings

TARGET_S = 1.5


@dataclass
class Round:
    mode: str
    tasks: int
    detected_s: float
    requeued_s: float
    assigned_s: float
    running_s: float


@dataclass
class RecoveryResult:
    heartbeat_interval_s: float
    missed_limit: int
    disconnect_grace_s: float
    rounds: list[Round]

    def running(self, mode: str) -> list[float]:
        return [r.running_s for r in self.rounds if r.mode == mode]

    @property
    def met(self) -> bool:
        """Every killed agent's tasks ran elsewhere within the target."""
        killed = self.running("kill")
        return bool(killed) and max(killed) < TARGET_S


class Watch:
    """Follows the log and notes when (monotonic, as this observer sees it) each fact arrived."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, AnyEvent]] = []
        self._waiters: list[tuple[Callable[[], bool], asyncio.Event]] = []

    def on_event(self, recorded: Recorded) -> None:
        self.seen.append((time.perf_counter(), recorded.event))
        for check, flag in self._waiters:
            if not flag.is_set() and check():
                flag.set()

    async def until(self, check: Callable[[], bool], timeout: float = 60.0) -> None:
        flag = asyncio.Event()
        if check():
            return
        self._waiters.append((check, flag))
        try:
            await asyncio.wait_for(flag.wait(), timeout)
        finally:
            self._waiters.remove((check, flag))

    def first(self, match: Callable[[AnyEvent], bool], since: float) -> list[tuple[float, AnyEvent]]:
        return [(at, event) for at, event in self.seen if at >= since and match(event)]


def _began(event: AnyEvent) -> float | None:
    """How long before its arrival `event` shows its attempt's work began, or None: 0 for
    ``task.started``, the handler's duration for a completion (or an agent's failure) that came
    without one (work that ends within the SDK's start-report bound appends no start)."""
    if isinstance(event, TaskStarted):
        return 0.0
    if isinstance(event, TaskCompleted) or (isinstance(event, TaskAttemptFailed) and event.duration_s > 0):
        return event.duration_s
    return None


def _last_time(
    watch: Watch,
    since: float,
    match: Callable[[AnyEvent], bool],
    keys: set[str],
    earlier_by: Callable[[AnyEvent], float] = lambda _event: 0.0,
) -> float:
    """When the last of `keys` (task or agent ids) got its first matching event after `since`
    (less `earlier_by` of that event: when it says the fact happened)."""
    firsts: dict[str, float] = {}
    for at, event in watch.first(match, since):
        key = getattr(event, "task_id", None) if not isinstance(event, AgentUnresponsive) else event.agent_id
        if key in keys and key not in firsts:
            firsts[key] = at - earlier_by(event)
    if set(firsts) != keys:
        return float("nan")
    return max(firsts.values()) - since


def _measure(watch: Watch, mode: str, since: float, victims: set[str], tasks: set[str]) -> Round:
    return Round(
        mode=mode,
        tasks=len(tasks),
        detected_s=_last_time(watch, since, lambda e: isinstance(e, AgentUnresponsive), victims),
        requeued_s=_last_time(watch, since, lambda e: isinstance(e, TaskRequeued), tasks),
        assigned_s=_last_time(
            watch, since, lambda e: isinstance(e, TaskAssigned) and e.agent_id not in victims, tasks
        ),
        running_s=_last_time(
            watch,
            since,
            lambda e: _began(e) is not None and getattr(e, "agent_id", None) not in victims,
            tasks,
            lambda e: _began(e) or 0.0,
        ),
    )


def _started_by(watch: Watch, agents: set[str], tasks: set[str]) -> Callable[[], bool]:
    def check() -> bool:
        started = {
            getattr(e, "task_id", "")
            for _at, e in watch.seen
            if _began(e) is not None and getattr(e, "agent_id", None) in agents
        }
        return started >= tasks

    return check


def _registered(watch: Watch, agents: set[str]) -> Callable[[], bool]:
    return lambda: {e.agent_id for _at, e in watch.seen if isinstance(e, AgentRegistered)} >= agents


async def _survivors(bus: EventBus, name: str, count: int, capacity: int, settings: Settings) -> list[Agent]:
    agents = make_simulated_agents(
        count,
        prefix=f"{name}-survivor",
        capabilities=[name],
        capacity=capacity,
        profile=SimulationProfile(work_s=0.01),
        heartbeat_interval_s=settings.heartbeat_interval_s,
    )
    for agent in agents:
        await agent.start(bus)
    return agents


def spawn_agents(
    nats_url: str, prefix: str, count: int, capacity: int, settings: Settings, log: Path
) -> subprocess.Popen[bytes]:
    """`hive agent` in a process group of its own (so it can be killed whole), holding long tasks.

    Its agents offer one capability, `prefix`, so the tasks of that name go to them first.
    """
    return spawn_agent_process(
        nats_url,
        prefix=prefix,
        count=count,
        capacity=capacity,
        capabilities=prefix,
        work_ms=600000,
        log=log,
        env={"HEARTBEAT_INTERVAL_S": str(settings.heartbeat_interval_s)},
    )


async def kill_round(
    stack: Stack, bus: EventBus, watch: Watch, index: int, victims: int, capacity: int
) -> Round:
    name = f"kill{index}"
    log = Path(stack.settings.hive_home) / "logs" / f"{name}.log"
    process = spawn_agents(stack.nats_url, name, victims, capacity, stack.settings, log)
    victim_ids = {f"{name}-{i}" for i in range(victims)}
    tasks = {f"{name}-t{i}" for i in range(victims * capacity)}
    survivors: list[Agent] = []
    try:
        await watch.until(_registered(watch, victim_ids))
        for task_id in sorted(tasks):
            await bus.append(TaskSubmitted(task_id=task_id, task_type=name), expected=0)
        await watch.until(_started_by(watch, victim_ids, tasks))
        survivors = await _survivors(bus, name, victims, capacity, stack.settings)
        await watch.until(_registered(watch, {a.agent_id for a in survivors}))
        since = time.perf_counter()
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        await watch.until(_started_by(watch, {a.agent_id for a in survivors}, tasks))
        return _measure(watch, "kill", since, victim_ids, tasks)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for agent in survivors:
            await agent.stop()


async def hang_round(
    stack: Stack, bus: EventBus, watch: Watch, index: int, victims: int, capacity: int
) -> Round:
    name = f"hang{index}"
    release = asyncio.Event()

    async def hold(context: TaskContext) -> None:
        await release.wait()

    hung = [
        Agent(
            f"{name}-{i}",
            hold,
            capabilities=[name],
            capacity=capacity,
            heartbeat_interval_s=stack.settings.heartbeat_interval_s,
        )
        for i in range(victims)
    ]
    victim_ids = {a.agent_id for a in hung}
    tasks = {f"{name}-t{i}" for i in range(victims * capacity)}
    survivors: list[Agent] = []
    try:
        for agent in hung:
            await agent.start(bus)
        for task_id in sorted(tasks):
            await bus.append(TaskSubmitted(task_id=task_id, task_type=name), expected=0)
        await watch.until(_started_by(watch, victim_ids, tasks))
        survivors = await _survivors(bus, name, victims, capacity, stack.settings)
        await watch.until(_registered(watch, {a.agent_id for a in survivors}))
        since = time.perf_counter()
        for agent in hung:
            agent.pause_heartbeats()
        await watch.until(_started_by(watch, {a.agent_id for a in survivors}, tasks))
        return _measure(watch, "hang", since, victim_ids, tasks)
    finally:
        release.set()
        for agent in hung + survivors:
            await agent.stop()


async def measure_recovery(stack: Stack, *, rounds: int, victims: int, capacity: int) -> RecoveryResult:
    bus = await EventBus.connect(stack.nats_url, "bench")
    watch = Watch()
    stop = asyncio.Event()
    await wait_for_services(bus, stack.instance_counts())
    follower = asyncio.create_task(bus.follow(watch.on_event, stop, start_seq=1))
    results: list[Round] = []
    try:
        for index in range(rounds):
            results.append(await kill_round(stack, bus, watch, index, victims, capacity))
        for index in range(rounds):
            results.append(await hang_round(stack, bus, watch, index, victims, capacity))
    finally:
        stop.set()
        await follower
        await bus.close()
    settings = stack.settings
    return RecoveryResult(
        heartbeat_interval_s=settings.heartbeat_interval_s,
        missed_limit=settings.heartbeat_missed_limit,
        disconnect_grace_s=settings.disconnect_grace_s,
        rounds=results,
    )


def _summary(values: list[float]) -> str:
    return f"p50 {percentile(values, 50):.3f} s   max {max(values, default=float('nan')):.3f} s"


def bench_recovery(args: argparse.Namespace) -> int:
    result = on_private_stack(
        lambda stack: measure_recovery(
            stack, rounds=args.rounds, victims=args.victims, capacity=args.capacity
        ),
        services=("router", "recovery"),
    )
    if args.json:
        print(json.dumps(asdict(result)))
        return 0
    print(
        f"recovery: {args.victims} agent(s) x {args.capacity} task(s) die per round, {args.rounds} round(s) "
        f"per mode; heartbeat {result.heartbeat_interval_s:g} s x {result.missed_limit} missed, "
        f"disconnect grace {result.disconnect_grace_s:g} s"
    )
    print("  mode  round  detected  requeued  assigned  running elsewhere")
    for index, r in enumerate(result.rounds):
        print(
            f"  {r.mode:<5} {index % args.rounds:>5}  {r.detected_s:>7.3f}s {r.requeued_s:>8.3f}s "
            f"{r.assigned_s:>8.3f}s {r.running_s:>8.3f}s"
        )
    kill, hang = result.running("kill"), result.running("hang")
    print(f"  kill -9 -> all its tasks running elsewhere: {_summary(kill)}   (target < {TARGET_S:g} s)")
    print(f"  hung    -> all its tasks running elsewhere: {_summary(hang)}   (heartbeats only)")
    print(f"  verdict      {'target met' if result.met else 'target NOT met'} for killed agents")
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    bench = commands.add_parser("recovery", help="time from an agent's death to its tasks running elsewhere")
    bench.add_argument("--rounds", type=int, default=5, help="rounds per way of dying (kill, hang)")
    bench.add_argument("--victims", type=int, default=2, help="agents that die each round")
    bench.add_argument("--capacity", type=int, default=2, help="tasks each of them holds")
    bench.add_argument("--json", action="store_true", help="one JSON line instead of a table")
    bench.set_defaults(func=quiet(bench_recovery))
