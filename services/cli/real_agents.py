"""``hive agent exec`` and ``hive agent http``: a real agent without writing Python.

``exec`` runs a program once per task (``shared/agent/process.py``); ``http`` posts each task to a
URL (``shared/agent/webhook.py``). Both register one agent (``--id``, ``--capability``...),
connect as every agent does (NATS_URL, HIVE_AGENT_CREDENTIALS or NATS_USER/NATS_PASSWORD), and
drain on SIGTERM/Ctrl-C: the tasks in hand finish (up to ``--drain-timeout``), then the agent
deregisters; what still runs then is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
from collections.abc import Awaitable, Callable

import httpx

from shared.agent import Agent, AgentSetupError, CredentialsError, Persona
from shared.agent.handlers import Handler, checked_capabilities
from shared.agent.process import ProcessSpec, process_handler
from shared.agent.webhook import EndpointSpec, endpoint_handler
from shared.events import CognitiveStyle
from shared.ids import InvalidIdError
from shared.logging import configure_logging
from shared.service import run_async
from shared.settings import load_settings

STYLES = ("analytical", "creative", "pragmatic", "collaborative", "meticulous")


def add_parsers(kinds: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    run = kinds.add_parser(
        "exec",
        help="run a program once per task (task JSON on stdin, outcome JSON on stdout)",
        description="Run CMD once per task: the task as JSON on stdin (and HIVE_TASK_ID, HIVE_TASK_TYPE, "
        "HIVE_ATTEMPT in its environment); stderr lines 'progress <percent> [message]' report progress; "
        'stdout\'s last line {"result": ..., "quality": 0..1} is the outcome; exit 0 completes, 2 fails '
        "for good, anything else fails and is retried. See the README, Write an agent.",
    )
    add_identity_arguments(run)
    run.add_argument("--kill-grace", type=float, default=5.0, help="seconds between SIGTERM and SIGKILL")
    run.add_argument("--cwd", default=None, help="working directory of the program")
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...: the program to run")
    run.set_defaults(func=run_exec)

    post = kinds.add_parser(
        "http",
        help="post each task to a URL (JSON) and take the response as the outcome",
        description='POST each task as JSON to URL. 2xx completes (a body {"result": ..., "quality": ...} '
        "or any body as the result); 408, 429, 5xx and timeouts fail and are retried; other statuses fail "
        "for good. See the README, Write an agent.",
    )
    add_identity_arguments(post)
    post.add_argument("--url", required=True, help="endpoint every task is posted to")
    post.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="extra request header (repeatable), e.g. 'Authorization: Bearer ...'",
    )
    post.add_argument("--connect-timeout", type=float, default=10.0, help="seconds to wait for a connection")
    post.set_defaults(func=run_http)


def add_identity_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--id", required=True, dest="agent_id", help="agent id (its NATS user: agent-<id>)")
    parser.add_argument(
        "--capability",
        action="append",
        required=True,
        metavar="NAME[=PROFICIENCY]",
        help="a task type or capability it offers, proficiency 0..1 (default 1); repeatable",
    )
    parser.add_argument("--capacity", type=int, default=1, help="tasks at once (concurrent runs)")
    parser.add_argument("--name", default="", help="display name (default: the id)")
    parser.add_argument("--style", choices=STYLES, default="pragmatic", help="cognitive style of its persona")
    parser.add_argument("--drain-timeout", type=float, default=30.0, help="seconds to finish work on SIGTERM")


def parse_capabilities(items: list[str]) -> dict[str, float]:
    """``["code_review=0.9", "python"]`` -> ``{"code_review": 0.9, "python": 1.0}`` (AgentSetupError)."""
    found: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            found[name.strip()] = float(value) if sep else 1.0
        except ValueError:
            raise AgentSetupError(
                f"--capability {item!r}: the proficiency must be a number from 0 to 1"
            ) from None
    return checked_capabilities(found)


def parse_headers(items: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise AgentSetupError(f"--header {item!r}: write it as 'Name: value'")
        headers[name.strip()] = value.strip()
    return headers


def build_agent(args: argparse.Namespace, handler: Handler, metadata: dict[str, str]) -> Agent:
    style: CognitiveStyle = args.style
    return Agent(
        args.agent_id,
        handler,
        capabilities=parse_capabilities(args.capability),
        persona=Persona(cognitive_style=style),
        capacity=args.capacity,
        name=args.name,
        heartbeat_interval_s=load_settings().heartbeat_interval_s,
        metadata=metadata,
    )


def run_exec(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        return _refuse(
            "hive agent exec", "give the program to run after '--': hive agent exec --id ID ... -- CMD"
        )
    if shutil.which(command[0]) is None:
        return _refuse("hive agent exec", f"{command[0]!r} is not an executable program (nor on PATH)")
    if args.kill_grace < 0:
        return _refuse("hive agent exec", "--kill-grace must not be negative")
    spec = ProcessSpec(command, kill_grace_s=args.kill_grace, cwd=args.cwd)
    metadata = {"kind": "exec", "command": os.path.basename(command[0])}
    return _serve(args, "hive agent exec", process_handler(spec), metadata)


def run_http(args: argparse.Namespace) -> int:
    try:
        headers = parse_headers(args.header)
    except AgentSetupError as exc:
        return _refuse("hive agent http", str(exc))
    if not args.url.startswith(("http://", "https://")):
        return _refuse("hive agent http", f"--url {args.url!r} must start with http:// or https://")
    spec = EndpointSpec(args.url, headers, connect_timeout_s=args.connect_timeout)
    client = httpx.AsyncClient(follow_redirects=False)
    return _serve(args, "hive agent http", endpoint_handler(spec, client), {"kind": "http"}, client.aclose)


def _serve(
    args: argparse.Namespace,
    command: str,
    handler: Handler,
    metadata: dict[str, str],
    cleanup: Callable[[], Awaitable[None]] | None = None,
) -> int:
    settings = load_settings()
    try:
        agent = build_agent(args, handler, metadata)
    except (AgentSetupError, InvalidIdError) as exc:
        return _refuse(command, str(exc))
    configure_logging(settings.log_level, service="agent", agent_id=agent.agent_id)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await agent.start()
            await stop.wait()
            await agent.drain(timeout=args.drain_timeout)
        finally:
            await agent.stop()
            if cleanup is not None:
                await cleanup()

    try:
        run_async(main())
    except CredentialsError as exc:
        return _refuse(command, str(exc))
    except OSError as exc:  # NATS unreachable or credentials refused
        print(f"{command}: {exc}", file=sys.stderr)
        return 1
    return 0


def _refuse(command: str, message: str) -> int:
    print(f"{command}: {message}", file=sys.stderr)
    return 2
