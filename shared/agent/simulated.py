"""Simulated agents: work takes a configurable time and fails at a configurable rate."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from shared.agent.sdk import Agent, TaskContext, TaskOutcome
from shared.bus import EventBus
from shared.events import Persona

STYLES = ("analytical", "creative", "pragmatic", "collaborative", "meticulous")


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
        return TaskOutcome(result={"ok": True, "task_type": context.assignment.task_type}, quality=quality)

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


async def run_simulated_agents(agents: list[Agent], bus: EventBus, stop: asyncio.Event) -> None:
    """Start every agent on one connection, wait for `stop`, then drain them all."""
    for agent in agents:
        await agent.start(bus)
    await stop.wait()
    await asyncio.gather(*(agent.drain() for agent in agents))
