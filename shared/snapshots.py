"""SQLite snapshot store for projections: the state blob and the last stream sequence applied.

Knows nothing of the domain. A snapshot of a projection at sequence N is the same whichever
instance made it, so all instances of a service share one file; a write never replaces a newer
snapshot. ``schema`` changes when a projection's state shape changes (it is derived from the state
type, see ``shared/projection_spec.py``): older snapshots are ignored and the projection is rebuilt
from the log. Snapshots hold task payloads and results: files are 0600 in a 0700 folder, as the
credentials are.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3

import aiosqlite

_DDL = """
CREATE TABLE IF NOT EXISTS snapshots (
    name TEXT NOT NULL,
    schema TEXT NOT NULL,
    seq INTEGER NOT NULL,
    state BLOB NOT NULL,
    saved_at REAL NOT NULL DEFAULT (julianday('now')),
    PRIMARY KEY (name, schema)
)
"""


def make_private(path: str) -> None:
    """Create `path` (0600) in its folder (0700) unless they exist, and tighten them if they do.

    SQLite creates its -wal and -shm files with the database's own mode; older ones are tightened.
    """
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)
    for each in (f"{path}-wal", f"{path}-shm"):
        with contextlib.suppress(FileNotFoundError):  # another process closing the database removes them
            os.chmod(each, 0o600)


WAL_ATTEMPTS = 50
"""Tries at putting the file in WAL mode while another instance opens it too."""


class SnapshotStore:
    def __init__(self, path: str) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> SnapshotStore:
        """Open (or create) the file, private to its owner: snapshots hold task payloads and results."""
        make_private(self.path)
        self._db = await aiosqlite.connect(self.path, timeout=30)
        for attempt in range(WAL_ATTEMPTS):
            try:
                await self._db.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                # Instances of one service share the file; switching its journal mode while another
                # opens it fails at once with "locked" (SQLite's busy wait does not cover it).
                if "locked" not in str(exc) or attempt == WAL_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.02 * (attempt + 1))
        await self._db.execute("PRAGMA busy_timeout=30000")
        await self._db.execute(_DDL)
        await self._db.commit()
        return self

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("snapshot store is not open")
        return self._db

    async def save(self, name: str, schema: str, seq: int, state: bytes) -> None:
        await self.db.execute(
            """
            INSERT INTO snapshots (name, schema, seq, state) VALUES (?, ?, ?, ?)
            ON CONFLICT (name, schema) DO UPDATE
              SET seq = excluded.seq, state = excluded.state, saved_at = excluded.saved_at
              WHERE excluded.seq > snapshots.seq
            """,
            (name, schema, seq, state),
        )
        await self.db.commit()

    async def load(self, name: str, schema: str) -> tuple[int, bytes] | None:
        async with self.db.execute(
            "SELECT seq, state FROM snapshots WHERE name = ? AND schema = ?", (name, schema)
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return None
        return int(row[0]), bytes(row[1])
