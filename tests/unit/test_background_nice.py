"""``--nice-background N``: every service but the router starts N steps nicer; off by default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.cli.main import build_parser
from services.cli.stack import SERVICE_NAMES, Stack, local_stack


def _niceness_in_child(stack: Stack, name: str) -> int:
    """The niceness a process started as the stack starts `name`'s would have (relative to ours)."""
    shown = subprocess.run(
        [sys.executable, "-c", "import os; print(os.nice(0))"],
        preexec_fn=stack.child_setup(name),
        capture_output=True,
        check=True,
    )
    return int(shown.stdout) - os.nice(0)


def test_by_default_every_service_starts_as_niced_as_its_supervisor(tmp_path: Path) -> None:
    stack = local_stack(tmp_path)
    assert stack.background_nice == 0
    assert {name: stack.niceness(name) for name in SERVICE_NAMES} == dict.fromkeys(SERVICE_NAMES, 0)
    assert _niceness_in_child(stack, "gateway") == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="niceness as Linux keeps it")
def test_with_background_nice_every_service_but_the_router_starts_nicer(tmp_path: Path) -> None:
    stack = local_stack(tmp_path, background_nice=5)
    expected = {name: 0 if name == "router" else 5 for name in SERVICE_NAMES}
    assert {name: stack.niceness(name) for name in SERVICE_NAMES} == expected
    for name in ("router", "gateway", "balancer"):
        assert _niceness_in_child(stack, name) == expected[name], name


def test_a_negative_niceness_is_not_asked_for(tmp_path: Path) -> None:
    """Raising priority needs privileges and is not what the option is for: taken as 0."""
    assert local_stack(tmp_path, background_nice=-3).niceness("gateway") == 0


def test_hive_up_and_bench_assign_take_the_option_and_leave_it_off_unless_told() -> None:
    parser = build_parser()
    assert parser.parse_args(["up"]).nice_background == 0
    assert parser.parse_args(["up", "--nice-background", "5"]).nice_background == 5
    assert parser.parse_args(["bench", "assign"]).nice_background == 0
    assert parser.parse_args(["bench", "assign", "--nice-background", "7"]).nice_background == 7
