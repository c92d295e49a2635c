"""``hive health``: are the services up? Exit 0 when every asked-for service answers ok.

Used as a container healthcheck: ``hive health --service router --this-host`` checks the instance
running on this host (instance names contain the host name unless HIVE_INSTANCE is set).
"""

from __future__ import annotations

import argparse
import socket
import sys

from services.cli.stack import SERVICE_NAMES
from shared.bus import EventBus
from shared.logging import configure_logging
from shared.service import run_async
from shared.settings import load_settings


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("health", help="check that services answer healthy (exit code 0/1)")
    parser.add_argument("--service", choices=SERVICE_NAMES, help="only this service (default: all five)")
    parser.add_argument("--this-host", action="store_true", help="only instances running on this host")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for answers")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    configure_logging("warning", service="health")
    try:
        return run_async(_check(args))
    except OSError as exc:
        print(f"hive health: cannot reach NATS: {exc}", file=sys.stderr)
        return 1


async def _check(args: argparse.Namespace) -> int:
    settings = load_settings()
    wanted = (args.service,) if args.service else SERVICE_NAMES
    host = socket.gethostname()
    user, password = settings.nats_credentials
    bus = await EventBus.connect(
        settings.nats_url, "health", connect_timeout=args.timeout, user=user, password=password
    )
    try:
        replies = await bus.gather_health(args.timeout, expect=frozenset(wanted))
    finally:
        await bus.close()
    healthy: dict[str, list[str]] = {name: [] for name in wanted}
    for reply in replies:
        service, instance = str(reply.get("service")), str(reply.get("instance"))
        if service in healthy and reply.get("status") == "ok" and (not args.this_host or host in instance):
            healthy[service].append(instance)
    for service, instances in healthy.items():
        print(f"{service:<9} {'ok' if instances else 'MISSING':<8} {', '.join(sorted(instances))}")
    return 0 if all(healthy.values()) else 1
