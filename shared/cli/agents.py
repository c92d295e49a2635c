"""``hive agent``: N simulated agents in one process, drained cleanly on SIGTERM/Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import signal

from shared.agent.simulated import SimulationProfile, make_simulated_agents, run_simulated_agents
from shared.bus import EventBus
from shared.logging import configure_logging
from shared.service import run_async
from shared.settings import load_settings


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("agent", help="run simulated agents")
    parser.add_argument("--count", type=int, default=3, help="number of agents")
    parser.add_argument("--prefix", default="sim", help="agent ids are <prefix>-<i>")
    parser.add_argument(
        "--capabilities",
        default="code_analysis,code_review,refactoring,code_generation,testing",
        help="comma-separated capabilities every agent offers",
    )
    parser.add_argument("--capacity", type=int, default=2, help="tasks each agent runs at once")
    parser.add_argument("--work-ms", type=float, default=200.0, help="mean duration of a task")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="share of tasks that fail (0..1)")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the simulation")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    configure_logging(settings.log_level, service="agent")
    agents = make_simulated_agents(
        args.count,
        prefix=args.prefix,
        capabilities=[c.strip() for c in args.capabilities.split(",") if c.strip()],
        capacity=args.capacity,
        profile=SimulationProfile(work_s=args.work_ms / 1000, fail_rate=args.fail_rate),
        seed=args.seed,
        heartbeat_interval_s=settings.heartbeat_interval_s,
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        bus = await EventBus.connect(settings.nats_url, "agents")
        try:
            await run_simulated_agents(agents, bus, stop)
        finally:
            await bus.close()

    run_async(main())
    return 0
