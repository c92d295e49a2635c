"""Snapshot files are private, even while another process closes the same database."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from shared import snapshots
from shared.snapshots import make_private


def test_the_database_and_its_folder_are_private(tmp_path: Path) -> None:
    path = tmp_path / "views" / "snap.db"
    (tmp_path / "views").mkdir(mode=0o755)
    make_private(str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_a_wal_file_removed_while_it_is_tightened_is_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "snap.db"
    (tmp_path / "snap.db-wal").write_bytes(b"")
    real_chmod = os.chmod

    def closing_elsewhere(target: str, mode: int) -> None:
        if str(target).endswith("-wal"):  # the other process's close removed it just now
            os.remove(target)
        real_chmod(target, mode)

    monkeypatch.setattr(snapshots.os, "chmod", closing_elsewhere)
    make_private(str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
