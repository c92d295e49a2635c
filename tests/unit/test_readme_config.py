"""The README's configuration table is what `hive config` prints: the two never drift."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from services.cli.main import main

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_lists_every_environment_variable_as_hive_config_prints_it() -> None:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["config"]) == 0
    assert printed.getvalue().strip() in README.read_text()
