"""The routing benchmark without NATS: the same hidden world and task stream, the same pure router.

A discrete-event simulation in virtual time: tasks arrive at a fixed rate, the router's pure
``next_decision`` runs after every arrival and completion exactly as the shell does, and agents
finish after a jittered work time reporting a quality drawn from the hidden world. The log it
writes is what the real router would have written, so the same ``routing_figures`` measure it.
Deterministic for a seed: it is what the unit tests run, and ``hive bench routing --offline``.
"""

from __future__ import annotations

from services.cli.bench.routing_partitions import simulate_partitioned
from services.cli.bench.routing_world import World
from shared.domain.routing.policy import RoutingConfig
from shared.events import TaskSubmitted
from shared.recorded import Recorded


def simulate(
    world: World,
    tasks: list[TaskSubmitted],
    *,
    rate: float,
    work_s: float,
    jitter: float = 0.3,
    config: RoutingConfig | None = None,
    seed: int = 7,
) -> list[Recorded]:
    """Run `tasks` through the pure router against `world`; returns the event log (one router
    owning the whole fleet: ``routing_partitions`` with one partition)."""
    return simulate_partitioned(
        world,
        tasks,
        partitions=1,
        placement="home",
        rate=rate,
        work_s=work_s,
        jitter=jitter,
        config=config,
        seed=seed,
    ).log
