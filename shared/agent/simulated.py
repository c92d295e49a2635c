"""Simulated agents: work takes a configurable time and fails at a configurable rate."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from dataclasses import dataclass

from shared.agent import Agent, Persona, TaskContext, TaskOutcome
from shared.bus import EventBus
from shared.permissions import agent_user

STYLES = ("analytical", "creative", "pragmatic", "collaborative", "meticulous")

DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "code_analysis",
    "code_review",
    "code_generation",
    "code_refactoring",
    "refactoring",
    "testing",
    "python",
    "fastapi",
    "analysis",
)
"""What ``hive agent`` and ``hive up --agents N`` offer by default: the task types and capabilities of
Hive's and the specification's examples (code_generation with python and fastapi, code_analysis
with python and analysis, code_refactoring with python and refactoring, code_review)."""


class SimulatedFailure(Exception):
    """The failure a simulated agent reports on purpose."""


@dataclass
class SimulationProfile:
    work_s: float = 0.05
    jitter: float = 0.2
    fail_rate: float = 0.0
    quality: float = 0.8


def simulated_handler(profile: SimulationProfile, rng: random.Random):  # type: ignore[no-untyped-def]
    async def handle(context: TaskContext) -> TaskOutcome:
        spread = profile.work_s * profile.jitter
        await asyncio.sleep(max(0.0, profile.work_s + rng.uniform(-spread, spread)))
        if rng.random() < profile.fail_rate:
            raise SimulatedFailure(f"simulated failure of {context.task_id}")
        quality = min(1.0, max(0.0, rng.gauss(profile.quality, 0.05)))
        return TaskOutcome(result={"ok": True, "task_type": context.task_type}, quality=quality)

    return handle


def make_simulated_agents(
    count: int,
    *,
    prefix: str = "sim",
    capabilities: list[str],
    capacity: int = 1,
    profile: SimulationProfile | None = None,
    seed: int = 7,
    heartbeat_interval_s: float = 0.5,
) -> list[Agent]:
    """`count` agents named <prefix>-<i>, personas spread over the cognitive styles."""
    agents = []
    for index in range(count):
        rng = random.Random(seed * 1000 + index)
        persona = Persona(
            cognitive_style=STYLES[index % len(STYLES)],  # type: ignore[arg-type]
            creativity=round(rng.random(), 2),
            analytical_depth=round(rng.random(), 2),
            collaboration=round(rng.random(), 2),
        )
        agents.append(
            Agent(
                f"{prefix}-{index}",
                simulated_handler(profile or SimulationProfile(), rng),
                capabilities=capabilities,
                persona=persona,
                capacity=capacity,
                heartbeat_interval_s=heartbeat_interval_s,
                metadata={"simulated": "true"},
            )
        )
    return agents


async def run_simulated_agents(
    agents: list[Agent],
    stop: asyncio.Event,
    *,
    bus: EventBus | None = None,
    nats_url: str = "",
    passwords: Mapping[str, str] | None = None,
) -> None:
    """Start every agent, wait for `stop`, then drain them all.

    On `bus` they share one connection; otherwise each opens its own as ``agent-<id>`` with its
    password from `passwords` (a server requiring credentials lets each publish only as itself).
    """
    started: list[Agent] = []
    try:
        for agent in agents:
            if bus is not None:
                await agent.start(bus)
            else:
                user = agent_user(agent.agent_id)
                password = (passwords or {}).get(user)
                await agent.start(nats_url=nats_url, user=user if password else None, password=password)
            started.append(agent)
    except BaseException:
        await asyncio.gather(*(agent.stop() for agent in started), return_exceptions=True)
        raise
    await stop.wait()
    await asyncio.gather(*(agent.drain() for agent in agents))
