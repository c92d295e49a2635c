"""``hive up``: the embedded nats-server and every service, supervised, until Ctrl-C.

nats-server requires credentials: ``hive up`` creates (or reuses) a user per service, per simulated
agent and an admin under ``<HIVE_HOME>/auth`` and gives each child process its own.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

import msgspec

from services.cli.stack import SERVICE_NAMES, Stack
from shared.credentials import CredentialStore
from shared.embedded import EmbeddedNatsError
from shared.environment import environment_notices
from shared.settings import SettingsError, load_settings


def parse_scale(items: list[str]) -> dict[str, int]:
    """``["router=3"]`` -> ``{"router": 3}``, refusing unknown services and bad counts."""
    scale: dict[str, int] = {}
    for item in items:
        name, sep, count = item.partition("=")
        if not sep or name not in SERVICE_NAMES or not count.isdigit() or int(count) < 1:
            raise ValueError(
                f"--scale {item!r}: use <service>=<count>, service among {', '.join(SERVICE_NAMES)}"
            )
        scale[name] = int(count)
    return scale


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("up", help="run nats-server and every service locally (dev mode)")
    parser.add_argument(
        "--scale",
        action="append",
        default=[],
        metavar="SERVICE=N",
        help="instances of a service, e.g. --scale router=3 (repeatable)",
    )
    parser.add_argument(
        "--agents", type=int, default=0, metavar="N", help="also run N simulated agents (see 'hive agent')"
    )
    parser.add_argument("--logs", action="store_true", help="print service logs here instead of files")
    parser.add_argument(
        "--nice-background",
        type=int,
        default=0,
        metavar="N",
        help="start every service but the router N steps nicer (lower CPU priority): on a small "
        "machine the router gets a core first, which shortens the assignment latency's tail; "
        "default 0 (all alike)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
        if not os.environ.get("METRICS_PORT"):
            settings = msgspec.structs.replace(settings, metrics_port=0)  # every instance: a free port
        scale = parse_scale(args.scale)
    except (SettingsError, ValueError) as exc:
        print(f"hive up: {exc}", file=sys.stderr)
        return 2
    for notice in environment_notices(os.environ):
        print(f"hive up: {notice.level}: {notice.message}", file=sys.stderr, flush=True)
    token_file: Path | None = None
    if settings.requires_api_token and not settings.api_token:
        store = CredentialStore(settings.hive_home)
        settings = msgspec.structs.replace(settings, api_token=store.api_token())
        token_file = store.api_token_path
    nats_port = urlparse(settings.nats_url).port or 4222
    stack = Stack(
        settings=settings,
        scale=scale,
        nats_port=nats_port,
        inherit_logs=args.logs,
        auth=True,
        agent_ids=tuple(f"sim-{index}" for index in range(max(args.agents, 0))),
        background_nice=max(0, args.nice_background),
    )
    stopping = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    print(f"Starting nats-server (JetStream, store {Path(settings.hive_home) / 'nats'}) and services...")
    try:
        stack.start()
        if args.agents > 0:
            stack.start_agents()
        instances = ", ".join(f"{name} x{scale.get(name, 1)}" for name in SERVICE_NAMES)
        print(
            f"Hive is up.\n  gateway  {stack.gateway_url}  (OpenAPI: {stack.gateway_url}/api/v1/schema)\n"
            f"  dashboard {stack.gateway_url}/ui/\n"
            f"  NATS     {stack.nats_url}  (users and passwords: {stack.credentials.path};\n"
            f'           as admin: eval "$(hive auth env admin)"; your own agents: hive auth agent ID)\n'
            f"  services {instances}\n"
            f"  logs     {Path(settings.hive_home) / 'logs'}",
            flush=True,
        )
        if token_file is not None:
            print(
                f"  API      {settings.integration_mode}: bearer token required, "
                f'-H "Authorization: Bearer $(cat {token_file})"',
                flush=True,
            )
        for instance, url in stack.metrics_endpoints():
            print(f"  metrics  {instance:<12} {url}", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        while not stopping.wait(0.5):
            for restart in stack.supervise():
                where = sys.stderr if restart.failed else sys.stdout
                print(f"hive up: {restart.describe()}", file=where, flush=True)
            try:
                if stack.reload_credentials():
                    print("NATS users changed (hive auth): nats-server loaded them", flush=True)
            except EmbeddedNatsError as exc:
                print(f"hive up: {exc}", file=sys.stderr, flush=True)
    except RuntimeError as exc:
        print(f"hive up: {exc}", file=sys.stderr)
        return 1
    finally:
        print("Stopping...", flush=True)
        stack.stop()
        print("Stopped.", flush=True)
    return 0
