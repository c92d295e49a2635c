"""``hive bench``: performance figures measured on a private Hive (own nats-server, temp folder).

Figures are printed, never asserted: the targets are shown next to what was measured. Each kind
of benchmark lives in its own module and registers its sub-command in ``KINDS``.
"""

from __future__ import annotations

import argparse

from services.cli.bench import (
    assign,
    balance,
    keys,
    reads,
    recovery,
    routing,
    scale,
    suite,
    throughput,
    workflow,
)

KINDS = [assign, routing, workflow, recovery, throughput, scale, balance, reads, keys, suite]
"""Modules with ``add_parser(kinds)``; each adds one ``hive bench <kind>`` sub-command."""


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("bench", help="measure performance against the targets")
    kinds = parser.add_subparsers(dest="bench", required=True)
    for module in KINDS:
        module.add_parser(kinds)
