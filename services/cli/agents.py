"""``hive agent``: N simulated agents in one process, drained cleanly on SIGTERM/Ctrl-C.

``hive agent exec`` and ``hive agent http`` run one real agent each (``services/cli/real_agents.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from services.cli import real_agents
from shared.agent.simulated import (
    DEFAULT_CAPABILITIES,
    SimulationProfile,
    make_simulated_agents,
    run_simulated_agents,
)
from shared.bus import EventBus
from shared.credentials import CredentialsError, load_passwords
from shared.gcpause import freeze_startup_heap
from shared.logging import configure_logging
from shared.permissions import agent_user
from shared.service import run_async, tune_gc
from shared.settings import load_settings


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "agent",
        help="run simulated agents, or a real one (exec: a program per task; http: a URL per task)",
        description="Without a subcommand: N simulated agents. 'hive agent exec --help' and "
        "'hive agent http --help' run a real agent.",
    )
    parser.add_argument("--count", type=int, default=3, help="number of agents")
    parser.add_argument("--prefix", default="sim", help="agent ids are <prefix>-<i>")
    parser.add_argument(
        "--capabilities",
        default=",".join(DEFAULT_CAPABILITIES),
        help="comma-separated capabilities every agent offers (default: %(default)s)",
    )
    parser.add_argument("--capacity", type=int, default=2, help="tasks each agent runs at once")
    parser.add_argument("--work-ms", type=float, default=200.0, help="mean duration of a task")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="share of tasks that fail (0..1)")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the simulation")
    parser.set_defaults(func=run)
    real_agents.add_parsers(parser.add_subparsers(dest="kind", metavar="{exec,http}"))


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    agents = make_simulated_agents(
        args.count,
        prefix=args.prefix,
        capabilities=[c.strip() for c in args.capabilities.split(",") if c.strip()],
        capacity=args.capacity,
        profile=SimulationProfile(work_s=args.work_ms / 1000, fail_rate=args.fail_rate),
        seed=args.seed,
        heartbeat_interval_s=settings.heartbeat_interval_s,
    )
    try:
        passwords = agent_passwords(settings.agent_credentials, [a.agent_id for a in agents])
    except CredentialsError as exc:
        print(f"hive agent: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, service="agent")
    prepare_heap()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if passwords is not None:
            await run_simulated_agents(agents, stop, nats_url=settings.nats_url, passwords=passwords)
            return
        user, password = settings.nats_credentials
        bus = await EventBus.connect(settings.nats_url, "agents", user=user, password=password)
        try:
            await run_simulated_agents(agents, stop, bus=bus)
        finally:
            await bus.close()

    try:
        run_async(main())
    except OSError as exc:  # NATS unreachable or credentials refused
        print(f"hive agent: {exc}", file=sys.stderr)
        return 1
    return 0


def prepare_heap() -> None:
    """Collect cycles as rarely as a service does, and never walk what the process holds from its
    start again (``shared/service.py``, ``shared/gcpause.py``): the agents allocate a few dozen
    objects per task, almost all freed by reference counting, and with CPython's thresholds their
    collections (each full one walking every module and library object) took 2-3% of the
    process's CPU under ``hive bench assign`` (measured with perf)."""
    tune_gc()
    freeze_startup_heap()


def agent_passwords(path: str, agent_ids: list[str]) -> dict[str, str] | None:
    """The passwords of these agents from HIVE_AGENT_CREDENTIALS, or None when it is not set."""
    if not path:
        return None
    passwords = load_passwords(path)
    missing = [agent_id for agent_id in agent_ids if agent_user(agent_id) not in passwords]
    if missing:
        raise CredentialsError(
            f"no credentials for agent(s) {', '.join(missing)} in {path}: "
            f"add them with 'hive auth agent {' '.join(missing)}'"
        )
    return passwords
