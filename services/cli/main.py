"""``hive``: run a local Hive, simulated agents, benchmarks and the event-log replay."""

from __future__ import annotations

import argparse
import sys

from services.cli import agents, auth, bench, health, replay, up
from shared.settings import SETTINGS_DOC, Settings


def _config(_args: argparse.Namespace) -> int:
    """Print the environment variables and their defaults as a Markdown table."""
    defaults = Settings()
    print("| variable | default | meaning |")
    print("| --- | --- | --- |")
    for field_name, (var, doc) in SETTINGS_DOC.items():
        value = getattr(defaults, field_name)
        shown = ("true" if value else "false") if isinstance(value, bool) else str(value)
        print(f"| `{var}` | `{shown}` | {doc} |")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hive", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up.add_parser(commands)
    agents.add_parser(commands)
    bench.add_parser(commands)
    replay.add_parser(commands)
    health.add_parser(commands)
    auth.add_parser(commands)
    config = commands.add_parser("config", help="list the environment variables and their defaults")
    config.set_defaults(func=_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
