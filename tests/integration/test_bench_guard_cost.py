"""``python -m services.cli.bench.guard_cost`` measures on a real server and leaves nothing running."""

from __future__ import annotations

from services.cli.bench.guard_cost import measure


async def test_each_history_gets_a_figure_per_run() -> None:
    figures = await measure([3, 30], appends=5, runs=2)
    assert set(figures) == {3, 30}
    assert all(len(values) == 2 and all(value >= 0 for value in values) for values in figures.values())
