"""``python -m services.cli.bench.read_cost`` reads one written log with each view and says what
each message handed over cost its reader and nats-server: recovery filtered on its consumer is
handed what recovery is (the log holds no workflow event), the router fewer (no start or progress)."""

from __future__ import annotations

import sys

import pytest

import shared.projection
from services.cli.bench.read_cost import measure

TASKS = 40
AGENTS = 20
"""``History``'s default fleet: registrations come first in the log."""


async def test_each_view_is_handed_what_its_filters_match_and_its_costs_are_measured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Through its filters all the way (``--filtered``): the log is longer than a catch-up through one.
    monkeypatch.setattr(shared.projection, "CATCH_UP_ALONE_AFTER", sys.maxsize)
    costs = await measure(TASKS, 1, ["recovery", "recovery_filtered", "router"], progress=2)
    every = (TASKS * 6 + AGENTS) / TASKS  # four events and two progress reports a task
    assert costs["recovery"].per_task == costs["recovery_filtered"].per_task == every
    assert costs["router"].per_task == (TASKS * 3 + AGENTS) / TASKS, "submitted, assigned, completed"
    for cost in costs.values():
        assert cost.reader_us > 0 and cost.server_us >= 0
