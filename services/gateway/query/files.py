"""Which SQLite file a gateway keeps its query model in: one per instance, never shared.

The files live in ``<HIVE_HOME>/query`` (a 0700 folder; the files are 0600: they hold payloads and
results). A gateway named by ``HIVE_INSTANCE`` uses ``<instance>.sqlite``; one without a name
takes the first free slot, ``gateway-0.sqlite``, ``gateway-1.sqlite``, ..., so a restarted gateway
finds the file it left. Either way the file is claimed with an exclusive lock on its ``.lock``
companion for as long as the gateway runs: two gateways on one machine never write the same file
(the lock goes with the process, also when it is killed).
"""

from __future__ import annotations

import fcntl
import itertools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from shared.errors import HiveError

FOLDER = "query"
MAX_SLOTS = 1000


class QueryFileInUse(HiveError, RuntimeError):
    """Another running gateway holds the query model file this one was told to use."""


@dataclass
class ClaimedFile:
    path: Path
    _lock_fd: int

    def release(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing the descriptor drops the lock
            self._lock_fd = -1


def private_folder(home: str) -> Path:
    folder = Path(home) / FOLDER
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    return folder


def file_name(instance: str) -> str:
    """An instance name as a file name (anything but letters, digits, '.', '_', '-' becomes '_')."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", instance).lstrip(".") or "gateway"


def _names(instance: str) -> Iterator[str]:
    if instance:
        yield file_name(instance)
        return
    for slot in itertools.count():
        if slot >= MAX_SLOTS:
            return
        yield f"gateway-{slot}"


def claim(home: str, instance: str = "") -> ClaimedFile:
    """Lock and return this gateway's query model file (it may not exist yet)."""
    folder = private_folder(home)
    for name in _names(instance):
        fd = os.open(folder / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if instance:
                raise QueryFileInUse(
                    f"{folder / name}.sqlite is in use by another gateway: give each gateway its own "
                    "HIVE_INSTANCE (or none: each then takes a free slot)"
                ) from None
            continue
        return ClaimedFile(folder / f"{name}.sqlite", fd)
    raise QueryFileInUse(f"all {MAX_SLOTS} query model slots in {folder} are in use")


def create_private(path: Path) -> None:
    """Create the file 0600 if missing (SQLite gives its -wal and -shm files the same mode)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


def remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        target = Path(f"{path}{suffix}")
        if target.exists():
            target.unlink()
