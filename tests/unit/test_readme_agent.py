"""The README's Python agent and its test work as a newcomer would copy them: two files, pytest."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def python_blocks(start: str, end: str) -> list[str]:
    text = README.read_text()
    section = text[text.index(start) : text.index(end)]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def test_the_readme_agent_and_its_test_pass_without_nats(tmp_path: Path) -> None:
    agent, test = python_blocks("### 1. Python", "### 2. A command-line program")
    (tmp_path / "reviewer.py").write_text(agent)
    (tmp_path / "test_reviewer.py").write_text(test)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_reviewer.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 passed" in run.stdout
