"""A log with every kind of task life, interleaved as under load: for the query model's tests.

Tasks complete (some after waiting in the queue), fail an attempt and complete elsewhere (the old
attempt's late report is refused), are taken from a silent agent and run elsewhere, fail for good,
are cancelled waiting or running, stay running or pending; one is submitted a second time after it
ended; two workflows run their steps as tasks. Every life is a script of events; scripts are
interleaved by a seeded generator, so a task's events spread over many others' (and over the query
model's write batches).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator

from shared.bus import EventBus
from shared.domain.workflows import step_task_id
from shared.events import (
    AgentRecovered,
    AgentRegistered,
    AgentUnresponsive,
    AnyEvent,
    Event,
    RejectedCandidate,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCancelled,
    TaskCancelRequested,
    TaskCompleted,
    TaskFailed,
    TaskProgress,
    TaskQueued,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
    WorkflowCompleted,
    WorkflowStarted,
    WorkflowStep,
    WorkflowStepDispatched,
    WorkflowSubmitted,
    encode_event,
)
from shared.recorded import Recorded

TYPES = ("review", "analysis", "refactor")
PRIORITIES = ("low", "normal", "high", "critical")


def _assigned(agent: str, task: str, attempt: int, ts: float, rng: random.Random) -> TaskAssigned:
    score = round(rng.random(), 3)
    return TaskAssigned(
        agent_id=agent,
        task_id=task,
        attempt=attempt,
        strategy=rng.choice(("adaptive", "load_balanced")),
        score=score,
        breakdown={"fit": round(rng.random(), 3), "load": round(rng.random(), 3)},
        rejected=[RejectedCandidate(agent_id="rival", score=score / 2, reason="busy")],
        explanation=f"{agent} scored {score}",
        ts=ts,
    )


def _life(index: int, agents: list[str], rng: random.Random, ts: float) -> list[Event]:
    task = f"task-{index:05d}"
    a, b = rng.sample(agents, 2)
    submitted = TaskSubmitted(
        task_id=task,
        task_type=rng.choice(TYPES),
        name=f"task {index}",
        priority=rng.choice(PRIORITIES),  # type: ignore[arg-type]
        payload={"n": index},
        ts=ts,
    )
    path = rng.choices(
        (
            "complete",
            "queued",
            "retry",
            "moved",
            "fail",
            "cancel_waiting",
            "cancel_running",
            "running",
            "pending",
        ),
        weights=(40, 10, 10, 6, 6, 5, 5, 3, 2),
    )[0]
    t = ts
    if path == "complete":
        return [
            submitted,
            _assigned(a, task, 1, t + 0.01, rng),
            TaskStarted(task_id=task, agent_id=a, attempt=1, ts=t + 0.02),
            TaskProgress(task_id=task, agent_id=a, attempt=1, percent=50.0, ts=t + 0.03),
            TaskCompleted(
                task_id=task, agent_id=a, attempt=1, result={"ok": index}, quality=0.8, ts=t + 0.04
            ),
        ]
    if path == "queued":
        return [
            submitted,
            TaskQueued(
                task_id=task, attempt=1, reason="all_capable_agents_busy", detail="3 busy", ts=t + 0.01
            ),
            _assigned(a, task, 1, t + 0.5, rng),
            TaskStarted(task_id=task, agent_id=a, attempt=1, ts=t + 0.6),
            TaskCompleted(task_id=task, agent_id=a, attempt=1, result=[index], quality=None, ts=t + 0.7),
        ]
    if path == "retry":
        return [
            submitted,
            _assigned(a, task, 1, t + 0.01, rng),
            TaskStarted(task_id=task, agent_id=a, attempt=1, ts=t + 0.02),
            TaskAttemptFailed(task_id=task, agent_id=a, attempt=1, error="boom", ts=t + 0.03),
            TaskRequeued(task_id=task, attempt=2, previous_agent_id=a, reason="retry", ts=t + 0.04),
            _assigned(b, task, 2, t + 0.05, rng),
            TaskStarted(task_id=task, agent_id=b, attempt=2, ts=t + 0.06),
            TaskCompleted(task_id=task, agent_id=b, attempt=2, result="second", quality=0.9, ts=t + 0.07),
            TaskCompleted(task_id=task, agent_id=a, attempt=1, result="late", quality=0.1, ts=t + 0.08),
        ]
    if path == "moved":  # taken from a silent agent (no report of its own) and run elsewhere
        return [
            submitted,
            _assigned(a, task, 1, t + 0.01, rng),
            TaskRequeued(
                task_id=task, attempt=2, previous_agent_id=a, reason="agent_unresponsive", ts=t + 0.02
            ),
            _assigned(b, task, 2, t + 0.03, rng),
            TaskStarted(task_id=task, agent_id=b, attempt=2, ts=t + 0.04),
            TaskCompleted(task_id=task, agent_id=b, attempt=2, result=None, quality=0.6, ts=t + 0.05),
        ]
    if path == "fail":
        return [
            submitted,
            _assigned(a, task, 1, t + 0.01, rng),
            TaskAttemptFailed(
                task_id=task, agent_id=a, attempt=1, error="bad input", retryable=False, ts=t + 0.02
            ),
            TaskFailed(task_id=task, attempt=1, error="bad input", ts=t + 0.03),
        ]
    if path == "cancel_waiting":
        return [
            submitted,
            TaskQueued(task_id=task, attempt=1, reason="no_capable_agent", ts=t + 0.01),
            TaskCancelled(task_id=task, reason="not needed", ts=t + 0.02),
        ]
    if path == "cancel_running":
        return [
            submitted,
            _assigned(a, task, 1, t + 0.01, rng),
            TaskStarted(task_id=task, agent_id=a, attempt=1, ts=t + 0.02),
            TaskCancelled(task_id=task, reason="changed my mind", agent_id=a, attempt=1, ts=t + 0.03),
            TaskCancelRequested(agent_id=a, task_id=task, attempt=1, reason="changed my mind", ts=t + 0.04),
        ]
    if path == "running":
        return [
            submitted,
            _assigned(a, task, 1, t + 0.01, rng),
            TaskStarted(task_id=task, agent_id=a, attempt=1, ts=t + 0.02),
        ]
    return [submitted]


def _workflow(name: str, agents: list[str], rng: random.Random, ts: float) -> list[Event]:
    steps = [
        WorkflowStep(step_id="plan", task_type="review"),
        WorkflowStep(step_id="ship", task_type="review"),
    ]
    events: list[Event] = [
        WorkflowSubmitted(workflow_id=name, name=name, steps=steps, ts=ts),
        WorkflowStarted(workflow_id=name, running=1, ts=ts + 0.01),
    ]
    for n, step in enumerate(steps):
        task = step_task_id(name, step.step_id)
        agent = rng.choice(agents)
        t = ts + 0.1 * (n + 1)
        events += [
            WorkflowStepDispatched(workflow_id=name, step_id=step.step_id, task_id=task, ts=t),
            TaskSubmitted(task_id=task, task_type="review", workflow_id=name, step_id=step.step_id, ts=t),
            _assigned(agent, task, 1, t + 0.01, rng),
            TaskStarted(task_id=task, agent_id=agent, attempt=1, ts=t + 0.02),
            TaskCompleted(
                task_id=task, agent_id=agent, attempt=1, result={"step": n}, quality=0.7, ts=t + 0.03
            ),
        ]
    events.append(
        WorkflowCompleted(workflow_id=name, outcomes={"plan": "completed", "ship": "completed"}, ts=ts + 1)
    )
    return events


def varied_events(
    tasks: int, *, seed: int = 7, agents: int = 6, start_ts: float | None = None
) -> list[Event]:
    """Registrations, then `tasks` task lives and two workflows, interleaved (a few scripts at a time);
    times from `start_ts` (default: an hour ago)."""
    rng = random.Random(seed)
    start_ts = time.time() - 3_600 if start_ts is None else start_ts
    names = [f"agent-{n}" for n in range(agents)]
    events: list[Event] = [
        AgentRegistered(agent_id=agent, capabilities=dict.fromkeys(TYPES, 0.9), capacity=50, ts=start_ts)
        for agent in names
    ]
    scripts = [_life(i, names, rng, start_ts + i * 0.01) for i in range(tasks)]
    scripts.insert(tasks // 3, _workflow("wf-one", names, rng, start_ts + 1))
    scripts.insert(2 * tasks // 3, _workflow("wf-two", names, rng, start_ts + 2))
    scripts.insert(tasks // 2, [AgentUnresponsive(agent_id=names[0]), AgentRecovered(agent_id=names[0])])
    done = scripts[0][-1]
    if isinstance(done, TaskCompleted):  # submitted again once ended: the first submission wins
        scripts.append([TaskSubmitted(task_id=done.task_id, task_type="other", ts=start_ts + tasks)])
    open_scripts: list[list[Event]] = []
    pending = iter(scripts)
    while True:
        while len(open_scripts) < 8:
            nxt = next(pending, None)
            if nxt is None:
                break
            open_scripts.append(list(nxt))
        if not open_scripts:
            return events
        script = rng.choice(open_scripts)
        events.append(script.pop(0))
        if not script:
            open_scripts.remove(script)


def recorded(events: list[Event]) -> list[Recorded]:
    """As if stored one after the other from sequence 1."""
    return [Recorded(seq, event.subject, event) for seq, event in enumerate(events, start=1)]  # type: ignore[arg-type]


def _keys(event: AnyEvent | Event, workflow_of: dict[str, str]) -> set[str]:
    keys = {
        f"{name}:{value}"
        for name in ("task_id", "agent_id", "workflow_id")
        if (value := getattr(event, name, None)) is not None
    }
    task_id = getattr(event, "task_id", None)
    workflow_id = getattr(event, "workflow_id", None)
    if task_id is not None and workflow_id is not None:
        workflow_of[task_id] = workflow_id
    if task_id in workflow_of:
        keys.add(f"workflow_id:{workflow_of[task_id]}")
    return keys


def chunks(events: list[Event]) -> Iterator[list[Event]]:
    """Runs of events about different tasks, agents and workflows: published concurrently, each
    run cannot store two events about one of them out of order."""
    chunk: list[Event] = []
    seen: set[str] = set()
    workflow_of: dict[str, str] = {}
    for event in events:
        keys = _keys(event, workflow_of)
        if keys & seen:
            yield chunk
            chunk, seen = [], set()
        chunk.append(event)
        seen |= keys
    if chunk:
        yield chunk


async def publish(bus: EventBus, events: list[Event]) -> int:
    """Store the events in the stream (in causal order per task, agent and workflow); the last seq."""
    last = 0
    for chunk in chunks(events):
        acks = await asyncio.gather(
            *(bus.js.publish(e.subject, encode_event(e), headers={"Nats-Msg-Id": e.id}) for e in chunk)
        )
        last = max([last, *(int(ack.seq) for ack in acks)])
    return last
