"""``hive bench workflow``: workflows completed per second, and the completion rate under failures.

A private Hive (router, recovery, workflow) runs simulated agents that fail a share of their
attempts; part of the fleet is killed mid-run and comes back under the same agent ids (a new
process: recovery requeues what the dead one held). Workflows are appended as the gateway would
(template expanded, checked), all at once; each is timed from its submission to its end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from dataclasses import asdict, dataclass, field

from services.cli.bench.common import on_private_stack, percentile, quiet, wait_for_services
from services.cli.stack import Stack
from shared.agent.sdk import Agent
from shared.agent.simulated import SimulationProfile, make_simulated_agents
from shared.bus import EventBus
from shared.domain.workflow_spec import apply_template, check_steps
from shared.events import (
    ExecutionMode,
    RetryPolicy,
    TaskAttemptFailed,
    TaskCompleted,
    TaskRequeued,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowStep,
    WorkflowSubmitted,
    WorkflowTemplate,
)
from shared.recorded import Recorded


@dataclass
class WorkflowBenchResult:
    workflows: int
    tasks_per_workflow: int
    template: str
    agents: int
    agents_killed: int
    fail_rate: float
    completed: int
    failed: int
    unfinished: int
    elapsed_s: float
    workflows_per_s: float
    tasks_per_s: float
    p50_s: float
    p95_s: float
    attempts_failed: int
    requeued_after_restart: int
    failure_reasons: list[str] = field(default_factory=list)
    target_completion_rate: float = 0.995

    @property
    def completion_rate(self) -> float:
        return self.completed / self.workflows if self.workflows else 0.0

    @property
    def met(self) -> bool:
        return self.completion_rate >= self.target_completion_rate


@dataclass
class Tally:
    """What the follower counts while the benchmark runs."""

    total_tasks: int = 0
    submitted_at: dict[str, float] = field(default_factory=dict)
    durations: list[float] = field(default_factory=list)
    completed: int = 0
    failed: int = 0
    failure_reasons: list[str] = field(default_factory=list)
    tasks_completed: int = 0
    attempts_failed: int = 0
    requeued_after_restart: int = 0
    all_done: asyncio.Event = field(default_factory=asyncio.Event)
    half_done: asyncio.Event = field(default_factory=asyncio.Event)
    """Half of all tasks completed: when part of the fleet is killed."""

    def on_event(self, recorded: Recorded) -> None:
        event = recorded.event
        if isinstance(event, TaskCompleted):
            self.tasks_completed += 1
            if self.tasks_completed * 2 >= self.total_tasks:
                self.half_done.set()
        elif isinstance(event, TaskAttemptFailed):
            self.attempts_failed += 1
        elif isinstance(event, TaskRequeued) and event.reason == "agent_restarted":
            self.requeued_after_restart += 1
        elif isinstance(event, WorkflowCompleted | WorkflowFailed | WorkflowCancelled):
            started = self.submitted_at.pop(event.workflow_id, None)
            if started is None:
                return
            self.durations.append(time.perf_counter() - started)
            if isinstance(event, WorkflowCompleted):
                self.completed += 1
            else:
                self.failed += 1
                self.failure_reasons.append(f"{event.workflow_id}: {event.reason}")
            if not self.submitted_at:
                self.all_done.set()


def build_workflow(
    workflow_id: str, template: WorkflowTemplate, tasks: int, retry: RetryPolicy, mode: ExecutionMode
) -> WorkflowSubmitted:
    """A workflow as the gateway would append it: template expanded, checked."""
    steps = [WorkflowStep(step_id=f"t{i}", task_type="bench", retry=retry) for i in range(tasks)]
    steps = apply_template(template, steps)
    check_steps(steps)
    return WorkflowSubmitted(workflow_id=workflow_id, template=template, steps=steps, execution_mode=mode)


async def kill_and_restart(victims: list[Agent], bus: EventBus, downtime_s: float) -> list[Agent]:
    """Stop agents without a word (their work is orphaned), then start new processes with their ids."""
    for agent in victims:
        await agent.stop()
    await asyncio.sleep(downtime_s)
    reborn = [
        Agent(
            agent.agent_id,
            agent.handler,
            capabilities=agent.capabilities,
            persona=agent.persona,
            capacity=agent.capacity,
            metadata=agent.metadata,
        )
        for agent in victims
    ]
    for agent in reborn:
        await agent.start(bus)
    return reborn


async def measure_workflows(stack: Stack, args: argparse.Namespace) -> WorkflowBenchResult:
    bus = await EventBus.connect(stack.nats_url, "bench")
    agent_bus = await EventBus.connect(stack.nats_url, "bench-agents")
    fleet = make_simulated_agents(
        args.agents,
        prefix="bench",
        capabilities=["bench"],
        capacity=args.capacity,
        profile=SimulationProfile(work_s=args.work_ms / 1000, jitter=0.3, fail_rate=args.fail_rate),
    )
    killed = round(args.agents * args.kill_fraction)
    retry = RetryPolicy(max_attempts=args.max_attempts, initial_backoff_s=0.05, max_backoff_s=1.0)
    tally = Tally(total_tasks=args.workflows * args.tasks)
    stop_following = asyncio.Event()
    follower: asyncio.Task[None] | None = None
    try:
        await wait_for_services(bus, stack.instance_counts())
        for agent in fleet:
            await agent.start(agent_bus)
        follower = asyncio.create_task(
            bus.follow(tally.on_event, stop_following, start_seq=await bus.last_sequence() + 1)
        )
        begin = time.perf_counter()
        for index in range(args.workflows):
            workflow = build_workflow(f"bench-wf-{index}", args.template, args.tasks, retry, args.mode)
            tally.submitted_at[workflow.workflow_id] = time.perf_counter()
            await bus.append(workflow, expected=0)
        if killed:
            await asyncio.wait_for(tally.half_done.wait(), timeout=args.timeout)
            victims, fleet = fleet[:killed], fleet[killed:]
            fleet += await kill_and_restart(victims, agent_bus, args.downtime_ms / 1000)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tally.all_done.wait(), timeout=args.timeout)
        elapsed = time.perf_counter() - begin
    finally:
        stop_following.set()
        if follower is not None:
            await asyncio.gather(follower, return_exceptions=True)
        for agent in fleet:
            await agent.stop()
        await agent_bus.close()
        await bus.close()
    return WorkflowBenchResult(
        workflows=args.workflows,
        tasks_per_workflow=args.tasks,
        template=args.template,
        agents=args.agents,
        agents_killed=killed,
        fail_rate=args.fail_rate,
        completed=tally.completed,
        failed=tally.failed,
        unfinished=len(tally.submitted_at),
        elapsed_s=elapsed,
        workflows_per_s=tally.completed / elapsed if elapsed > 0 else 0.0,
        tasks_per_s=tally.tasks_completed / elapsed if elapsed > 0 else 0.0,
        p50_s=percentile(tally.durations, 50),
        p95_s=percentile(tally.durations, 95),
        attempts_failed=tally.attempts_failed,
        requeued_after_restart=tally.requeued_after_restart,
        failure_reasons=tally.failure_reasons[:5],
    )


def bench_workflow(args: argparse.Namespace) -> int:
    result = on_private_stack(
        lambda stack: measure_workflows(stack, args),
        services=("router", "recovery", "workflow"),
        scale={"workflow": args.workflow_instances},
        max_concurrent_workflows=args.max_concurrent,
        work_ack_wait_s=5.0,
    )
    if args.json:
        print(json.dumps({**asdict(result), "completion_rate": result.completion_rate, "met": result.met}))
        return 0
    print(
        f"workflow engine: {result.workflows} workflows x {result.tasks_per_workflow} tasks "
        f"({result.template}, {args.mode}), {result.agents} agents x capacity {args.capacity}, "
        f"work {args.work_ms:.0f} ms, "
        f"fail rate {result.fail_rate:.0%} per attempt (retry up to {args.max_attempts} attempts), "
        f"{result.agents_killed} agent(s) killed mid-run and restarted, "
        f"{args.workflow_instances} workflow instance(s), MAX_CONCURRENT_WORKFLOWS={args.max_concurrent}"
    )
    print(
        f"  completed      {result.completed}/{result.workflows}   "
        f"(completion rate {result.completion_rate:.1%}, target >= {result.target_completion_rate:.1%})"
    )
    print(f"  failed         {result.failed}   unfinished {result.unfinished}")
    print(f"  throughput     {result.workflows_per_s:.2f} workflows/s   {result.tasks_per_s:.0f} tasks/s")
    print(
        f"  duration       p50 {result.p50_s:.2f} s   p95 {result.p95_s:.2f} s   "
        f"(all: {result.elapsed_s:.2f} s)"
    )
    print(
        f"  injected       {result.attempts_failed} failed attempts retried, "
        f"{result.requeued_after_restart} attempts requeued after agent restarts"
    )
    for reason in result.failure_reasons:
        print(f"  failure        {reason}")
    print(f"  verdict        {'target met' if result.met else 'target NOT met'}")
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    bench = commands.add_parser("workflow", help="workflows per second and completion rate under failures")
    bench.add_argument("--workflows", type=int, default=40)
    bench.add_argument("--tasks", type=int, default=20, help="tasks per workflow")
    bench.add_argument(
        "--template",
        default="map_reduce",
        choices=["linear_pipeline", "parallel_fanout", "fan_in", "map_reduce"],
    )
    bench.add_argument("--mode", default="adaptive", choices=["sequential", "parallel", "adaptive"])
    bench.add_argument("--agents", type=int, default=10)
    bench.add_argument("--capacity", type=int, default=4)
    bench.add_argument("--work-ms", type=float, default=20.0, help="duration of a simulated task")
    bench.add_argument("--fail-rate", type=float, default=0.1, help="share of attempts that fail (0..1)")
    bench.add_argument("--max-attempts", type=int, default=5, help="retry policy of every task")
    bench.add_argument(
        "--kill-fraction", type=float, default=0.2, help="share of agents killed mid-run, then restarted"
    )
    bench.add_argument("--downtime-ms", type=float, default=200.0, help="how long killed agents stay dead")
    bench.add_argument("--workflow-instances", type=int, default=1)
    bench.add_argument("--max-concurrent", type=int, default=100, help="MAX_CONCURRENT_WORKFLOWS")
    bench.add_argument("--timeout", type=float, default=300.0, help="give up waiting after this many seconds")
    bench.add_argument("--json", action="store_true", help="one JSON line instead of a table")
    bench.set_defaults(func=quiet(bench_workflow))
