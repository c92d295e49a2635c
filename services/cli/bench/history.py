"""A long history written straight into the event stream: finished tasks as the services leave them.

``hive bench reads`` (and the query model's tests) need a log of many finished tasks without
running the fleet for hours. Each task gets the events the real services append, with bodies of
the real size: ``task.submitted`` (gateway), ``agent.task_assigned`` with its score breakdown,
rejected rivals and explanation (router), ``task.started``, ``progress`` progress reports (none
by default) and ``task.completed`` with a result and quality (agent). They are published
concurrently in chunks, each acknowledged by JetStream. Tasks are written one after another unless
`spacing_s` says otherwise (event times are set).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from shared.bus import EventBus
from shared.events import (
    AgentRegistered,
    Event,
    RejectedCandidate,
    TaskAssigned,
    TaskCompleted,
    TaskProgress,
    TaskStarted,
    TaskSubmitted,
    encode_event,
)

TASK_TYPES = ("code_review", "code_analysis", "refactoring", "testing", "code_generation")
PRIORITIES = ("low", "normal", "normal", "normal", "high", "critical")
BREAKDOWN_KEYS = (
    "capability",
    "persona",
    "performance",
    "timeliness",
    "fit",
    "load",
    "breaker",
    "availability",
    "predicted_quality",
    "uncertainty",
    "success_probability",
    "predicted_duration_s",
    "observations",
    "weight_capability",
    "weight_persona",
    "weight_performance",
    "weight_timeliness",
    "load_weight",
    "risk_tolerance",
)


@dataclass(frozen=True)
class History:
    """What to write: `tasks` finished tasks over `agents` agents, `start_ts` onwards, `spacing_s` apart."""

    tasks: int
    agents: int = 20
    start_ts: float = 0.0
    spacing_s: float = 0.01
    seed: int = 1
    prefix: str = "hist"
    progress: int = 0
    """Progress reports per task, between its start and its end (all on one subject)."""

    def agent_ids(self) -> list[str]:
        return [f"{self.prefix}-agent-{n}" for n in range(self.agents)]

    def task_id(self, index: int) -> str:
        return f"{self.prefix}-{index:07d}"


def registrations(history: History) -> list[Event]:
    return [
        AgentRegistered(
            agent_id=agent_id,
            name=agent_id,
            capabilities={task_type: 0.8 for task_type in TASK_TYPES},
            capacity=4,
            session=f"{agent_id}-s1",
            ts=history.start_ts,
        )
        for agent_id in history.agent_ids()
    ]


def finished_task(history: History, index: int, rng: random.Random) -> list[Event]:
    """Submitted, assigned (with its explanation), started, its progress reports and completed, as
    the services and the agent write them."""
    agents = history.agent_ids()
    task_id = history.task_id(index)
    agent_id = agents[index % len(agents)]
    task_type = TASK_TYPES[index % len(TASK_TYPES)]
    ts = history.start_ts + index * history.spacing_s
    score = round(rng.uniform(0.5, 0.9), 4)
    rivals = [agents[(index + k) % len(agents)] for k in (1, 2, 3)]
    return [
        TaskSubmitted(
            task_id=task_id,
            task_type=task_type,
            name=f"task {index}",
            priority=PRIORITIES[index % len(PRIORITIES)],  # type: ignore[arg-type]
            required_capabilities=[task_type],
            payload={"repository": "hive", "path": f"src/module_{index % 97}.py", "lines": index % 400},
            submitted_by="gateway",
            correlation_id=task_id,
            ts=ts,
        ),
        TaskAssigned(
            agent_id=agent_id,
            task_id=task_id,
            attempt=1,
            session=f"{agent_id}-s1",
            task_type=task_type,
            strategy="adaptive",
            score=score,
            breakdown={key: round(rng.random(), 4) for key in BREAKDOWN_KEYS},
            rejected=[
                RejectedCandidate(agent_id=rival, score=round(score - 0.05 * k, 4), reason="lower fit")
                for k, rival in enumerate(rivals, start=1)
            ],
            explanation=(
                f"adaptive (standard mode): {agent_id} scored {score:.3f} = fit {score:.3f} x availability "
                f"1.000. Predicted quality 0.73 ± 0.01 (from 142 outcome(s) on {task_type}, success 100%); "
                f"capability 0.80; persona 0.72; load 0/4. Runner-up {rivals[0]}: score "
                f"{score - 0.05:.3f} < {score:.3f}: lower predicted quality."
            ),
            decided_at_ts=ts + 0.002,
            mode="standard",
            ts=ts + 0.002,
        ),
        TaskStarted(task_id=task_id, agent_id=agent_id, attempt=1, ts=ts + 0.003),
        *(
            TaskProgress(
                task_id=task_id,
                agent_id=agent_id,
                attempt=1,
                percent=100.0 * report / (history.progress + 1),
                ts=ts + 0.003 + 0.04 * report / (history.progress + 1),
            )
            for report in range(1, history.progress + 1)
        ),
        TaskCompleted(
            task_id=task_id,
            agent_id=agent_id,
            attempt=1,
            result={"comments": index % 7, "summary": f"reviewed module {index % 97}"},
            quality=round(rng.uniform(0.6, 0.99), 3),
            ts=ts + 0.05,
        ),
    ]


def history_chunks(history: History, block: int = 250) -> Iterator[list[Event]]:
    """The agents' registrations, then the tasks by blocks of `block`, one stage at a time (every
    submission of the block, then every assignment, ...): tasks interleave as under real load, and
    a chunk never holds two events of the same task, so publishing a chunk concurrently cannot
    store a task's events out of order."""
    rng = random.Random(history.seed)
    yield registrations(history)
    for first in range(0, history.tasks, block):
        lives = [
            finished_task(history, index, rng) for index in range(first, min(first + block, history.tasks))
        ]
        for stage in range(len(lives[0])):
            yield [life[stage] for life in lives]


async def write_straight(bus: EventBus, chunks: Iterable[list[Event]]) -> int:
    """Publish each chunk's events concurrently, every one acknowledged by JetStream before the next
    chunk starts; returns the last sequence stored."""
    last = 0
    for chunk in chunks:
        acks = await asyncio.gather(
            *(
                bus.js.publish(event.subject, encode_event(event), headers={"Nats-Msg-Id": event.id})
                for event in chunk
            )
        )
        last = max([last, *(int(ack.seq) for ack in acks)])
    return last
