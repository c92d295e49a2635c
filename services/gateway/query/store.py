"""The query model's SQLite file: rows written in one transaction per batch, read by the API.

Knows tables and SQL, not events: ``rows_of`` (pure) says what to write. Every write stores the
stream sequence the rows reflect in the same transaction (``meta.seq``), so the file is always
consistent with its sequence and a restarted gateway resumes from it. Writes go through one
connection, reads through another (WAL: a read never waits for a write). A file of another schema,
or one SQLite cannot read, is deleted and the model rebuilt from the log.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, Final

import aiosqlite

from services.gateway.query.files import create_private, remove_database
from services.gateway.query.filters import Page, TaskFilter, WorkflowFilter
from services.gateway.query.schema import SCHEMA_ID, TABLES
from services.gateway.query.view import (
    ENDED_WORKFLOWS_KEPT,
    Rows,
    agent_from_row,
    task_from_row,
    task_from_rows,
    workflow_from_row,
)
from shared.domain.fleet import TERMINAL, AgentView, TaskView
from shared.domain.workflows import WORKFLOW_DONE, WorkflowView
from shared.logging import get_logger

log = get_logger("hive.gateway.query")

READERS: Final = 2
"""Read connections: SQLite lets go of Python's lock while it searches, so two requests' queries
run at once."""
TASK_COLUMN_NAMES: Final = (
    "task_id",
    "seq",
    "task_type",
    "name",
    "priority",
    "status",
    "attempt",
    "agent_id",
    "workflow_id",
    "step_id",
    "submitted_ts",
    "assigned_ts",
    "started_ts",
    "finished_ts",
    "quality",
    "failure_type",
    "queued_reason",
)
"""The searchable columns of a task row, in the order of ``task_row`` (the view comes last)."""
WORKFLOW_COLUMN_NAMES: Final = (
    "workflow_id",
    "seq",
    "name",
    "status",
    "reason",
    "execution_mode",
    "optimization_goal",
    "template",
    "tasks",
    "percent",
    "submitted_ts",
    "started_ts",
    "finished_ts",
)
"""The searchable columns of a workflow row, in the order of ``workflow_row``."""
TASK_COLUMNS = ", ".join(TASK_COLUMN_NAMES)
WORKFLOW_COLUMNS = ", ".join(WORKFLOW_COLUMN_NAMES)
_UPSERT_TASK = f"""
INSERT INTO tasks ({TASK_COLUMNS}, view) VALUES ({", ".join("?" * 18)})
ON CONFLICT (seq) DO UPDATE SET
    status = excluded.status, attempt = excluded.attempt, agent_id = excluded.agent_id,
    assigned_ts = excluded.assigned_ts, started_ts = excluded.started_ts,
    finished_ts = excluded.finished_ts, quality = excluded.quality,
    failure_type = excluded.failure_type, queued_reason = excluded.queued_reason, view = excluded.view
ON CONFLICT DO NOTHING
"""
"""A second submission of an existing task id (another sequence) changes nothing: the first wins,
as in the fleet projection."""
_INSERT_ASSIGNMENT = """
INSERT OR IGNORE INTO attempts (task_seq, seq, task_id, attempt, agent_id, ts, strategy, score, record)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_UPSERT_AGENT = """
INSERT INTO agents (agent_id, status, view) VALUES (?, ?, ?)
ON CONFLICT (agent_id) DO UPDATE SET status = excluded.status, view = excluded.view
"""
_UPSERT_WORKFLOW = f"""
INSERT INTO workflows ({WORKFLOW_COLUMNS}, view) VALUES ({", ".join("?" * 14)})
ON CONFLICT (seq) DO UPDATE SET
    status = excluded.status, reason = excluded.reason, tasks = excluded.tasks,
    percent = excluded.percent, started_ts = excluded.started_ts,
    finished_ts = excluded.finished_ts, view = excluded.view
ON CONFLICT DO NOTHING
"""
_TASK_WITH_DECISIONS = """
SELECT view, (SELECT '[' || ifnull(group_concat(record, ','), '') || ']'
              FROM (SELECT record FROM attempts WHERE task_seq = tasks.seq ORDER BY seq))
FROM tasks WHERE task_id = ?
"""
"""The records are JSON texts: joined into one JSON array, decoded at once."""
_SET_META = (
    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)


def _in(values: Iterable[str]) -> str:
    return "(" + ", ".join(f"'{value}'" for value in sorted(values)) + ")"


def task_query(where: TaskFilter, page: Page) -> tuple[str, list[Any]]:
    """SQL for one page of tasks, newest submission first; one more row than the page asks for
    (it says whether there is a next page)."""
    clauses: list[str] = []
    params: list[Any] = []
    for column in ("status", "task_type", "agent_id", "workflow_id", "priority"):
        value = getattr(where, column)
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if where.submitted_after is not None:
        clauses.append("submitted_ts >= ?")
        params.append(where.submitted_after)
    if where.submitted_before is not None:
        clauses.append("submitted_ts < ?")
        params.append(where.submitted_before)
    if page.before_seq is not None:
        clauses.append("seq < ?")
        params.append(page.before_seq)
    sql = f"SELECT {TASK_COLUMNS} FROM tasks"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY seq DESC LIMIT ?"
    params.append(page.limit + 1)
    return sql, params


def workflow_query(where: WorkflowFilter, page: Page) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for column in ("status", "name"):
        value = getattr(where, column)
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if where.submitted_after is not None:
        clauses.append("submitted_ts >= ?")
        params.append(where.submitted_after)
    if where.submitted_before is not None:
        clauses.append("submitted_ts < ?")
        params.append(where.submitted_before)
    if page.before_seq is not None:
        clauses.append("seq < ?")
        params.append(page.before_seq)
    sql = f"SELECT {WORKFLOW_COLUMNS} FROM workflows"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY seq DESC LIMIT ?"
    params.append(page.limit + 1)
    return sql, params


WRITE_SLICE_ROWS: Final = 250
"""Rows per statement of a write (``QueryStore.write``): a few milliseconds of SQLite each."""


def _tables_of(rows: Rows) -> tuple[tuple[str, list[Any]], ...]:
    """Each table's rows with the statement that stores them, in the order a write stores them."""
    return (
        (_UPSERT_TASK, rows.tasks),
        (_INSERT_ASSIGNMENT, rows.assignments),
        (_UPSERT_AGENT, rows.agents),
        (_UPSERT_WORKFLOW, rows.workflows),
    )


def _slices(rows: Rows, size: int) -> Iterable[tuple[str, list[Any]]]:
    """Each table's rows in the order a write stores them (tasks, their decisions, agents,
    workflows), cut into runs of at most `size`."""
    size = max(1, size)
    for statement, table in _tables_of(rows):
        for start in range(0, len(table), size):
            yield statement, list(table[start : start + size])


class QueryStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer: aiosqlite.Connection | None = None
        self._readers: list[aiosqlite.Connection] = []
        self._next_reader = 0
        self._write_lock = asyncio.Lock()
        self.reset_reason = ""
        """Why the file was started afresh on open ("" when it was resumed)."""

    # --- lifecycle ----------------------------------------------------------------------------------

    async def open(self) -> QueryStore:
        create_private(self.path)
        reason = await self._mismatch()
        if reason:
            remove_database(self.path)
            create_private(self.path)
            self.reset_reason = reason
        self._writer = await self._connect()
        await self._writer.executescript(TABLES)
        await self._writer.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)", (SCHEMA_ID,)
        )
        for _ in range(READERS):
            reader = await self._connect()
            await reader.execute("PRAGMA query_only = ON")
            self._readers.append(reader)
        return self

    async def reset(self) -> None:
        """Start the file afresh (what it holds cannot be resumed)."""
        await self.close()
        remove_database(self.path)
        await self.open()

    async def _connect(self) -> aiosqlite.Connection:
        db = await aiosqlite.connect(self.path, timeout=30, isolation_level=None)
        await db.execute("PRAGMA journal_mode = WAL")
        await db.execute("PRAGMA synchronous = NORMAL")
        await db.execute("PRAGMA busy_timeout = 30000")
        await db.execute("PRAGMA cache_size = -4000")
        return db

    async def _mismatch(self) -> str:
        """Why the file cannot be resumed ("" if it can: new, or of this schema)."""
        try:
            async with aiosqlite.connect(self.path) as db:
                tables = await db.execute_fetchall(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
                )
                if not list(tables):
                    empty = await db.execute_fetchall("SELECT count(*) FROM sqlite_master")
                    return "" if next(iter(empty))[0] == 0 else "written by something else"
                found = list(await db.execute_fetchall("SELECT value FROM meta WHERE key = 'schema'"))
        except sqlite3.DatabaseError as exc:
            return f"unreadable ({exc})"
        if not found:
            return "no schema recorded"
        if found[0][0] != SCHEMA_ID:
            return f"schema {found[0][0]} is not {SCHEMA_ID}"
        return ""

    async def close(self) -> None:
        for db in (*self._readers, self._writer):
            if db is not None:
                await db.close()
        self._readers.clear()
        self._writer = None

    @property
    def writer(self) -> aiosqlite.Connection:
        if self._writer is None:
            raise RuntimeError("query store is not open")
        return self._writer

    @property
    def reader(self) -> aiosqlite.Connection:
        """The next of the read connections (each its own thread: SQLite reads in parallel)."""
        if not self._readers:
            raise RuntimeError("query store is not open")
        self._next_reader = (self._next_reader + 1) % len(self._readers)
        return self._readers[self._next_reader]

    # --- meta ---------------------------------------------------------------------------------------

    async def meta(self) -> dict[str, Any]:
        rows = await self.writer.execute_fetchall("SELECT key, value FROM meta")
        return {str(key): value for key, value in rows}

    async def set_meta(self, key: str, value: Any) -> None:
        async with self._write_lock:
            await self.writer.execute(_SET_META, (key, value))

    # --- writing ------------------------------------------------------------------------------------

    async def write(
        self,
        rows: Rows,
        *,
        slice_rows: int = WRITE_SLICE_ROWS,
        between: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Store the rows and the sequence they reflect, all or nothing.

        The rows go in slices of at most `slice_rows`, and `between` is awaited between two slices
        (still in the one transaction: readers see the file as of the last write until the commit).
        A large write made at once keeps a core busy for tens of milliseconds (2,500 tasks: about
        50 ms of SQLite), which is when the router or nats-server wait for one on a small machine;
        paced, the same work comes in short slices with the core given away in between.
        """
        async with self._write_lock:
            db = self.writer
            await db.execute("BEGIN")
            try:
                first = True
                for statement, batch in _slices(rows, slice_rows):
                    if not first and between is not None:
                        await between()
                    first = False
                    await db.executemany(statement, batch)
                await db.execute(_SET_META, ("seq", rows.seq))
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            await db.execute("COMMIT")

    async def write_parts(self, parts: AsyncIterator[Rows]) -> int:
        """Store rows that come in parts, and the last part's sequence, all or nothing (one
        transaction); returns that sequence.

        The parts are awaited one by one (the caller encodes each when asked, and may give the core
        away before it): a later part may hold a row again, newer, and its upsert wins. The file is
        consistent with the last part's sequence if every row changed after its part was encoded
        is in a later part (``QueryModel._parts``).
        """
        async with self._write_lock:
            db = self.writer
            seq = -1
            await db.execute("BEGIN")
            try:
                async for part in parts:
                    for statement, table in _tables_of(part):
                        if table:
                            await db.executemany(statement, table)
                    seq = part.seq
                if seq < 0:
                    raise ValueError("a write of no parts")
                await db.execute(_SET_META, ("seq", seq))
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            await db.execute("COMMIT")
            return seq

    async def purge(self, before_ts: float, batch: int = 5000) -> tuple[int, int]:
        """Forget tasks and workflows that ended before `before_ts` (in batches: reads go on);
        returns how many of each."""
        tasks = workflows = 0
        while True:
            async with self._write_lock:
                db = self.writer
                await db.execute("BEGIN")
                try:
                    seqs = [
                        row[0]
                        for row in await db.execute_fetchall(
                            "SELECT seq FROM tasks WHERE finished_ts < ? LIMIT ?", (before_ts, batch)
                        )
                    ]
                    if seqs:
                        marks = ", ".join("?" * len(seqs))
                        await db.execute(f"DELETE FROM attempts WHERE task_seq IN ({marks})", seqs)
                        await db.execute(f"DELETE FROM tasks WHERE seq IN ({marks})", seqs)
                    cursor = await db.execute(
                        "DELETE FROM workflows WHERE seq IN "
                        "(SELECT seq FROM workflows WHERE finished_ts < ? LIMIT ?)",
                        (before_ts, batch),
                    )
                    gone = cursor.rowcount
                    await db.execute(_SET_META, ("purged_before_ts", before_ts))
                except BaseException:
                    await db.execute("ROLLBACK")
                    raise
                await db.execute("COMMIT")
            tasks += len(seqs)
            workflows += max(0, gone)
            if len(seqs) < batch and gone < batch:
                return tasks, workflows

    # --- reading back the state to resume from ------------------------------------------------------

    async def live(self) -> tuple[list[AgentView], list[TaskView], list[WorkflowView]]:
        """Every agent, the tasks not ended and the workflows not ended (and the last ended ones)."""
        db = self.writer
        agents = [agent_from_row(row[0]) for row in await db.execute_fetchall("SELECT view FROM agents")]
        tasks = []
        for seq, view in await db.execute_fetchall(
            f"SELECT seq, view FROM tasks WHERE status NOT IN {_in(TERMINAL)}"
        ):
            tasks.append(task_from_row(view, await self._records(db, seq)))
        workflows = [
            workflow_from_row(row[0])
            for row in await db.execute_fetchall(
                f"SELECT view FROM workflows WHERE status NOT IN {_in(WORKFLOW_DONE)}"
            )
        ]
        workflows += [
            workflow_from_row(row[0])
            for row in await db.execute_fetchall(
                f"SELECT view FROM workflows WHERE status IN {_in(WORKFLOW_DONE)} "
                "ORDER BY finished_ts DESC LIMIT ?",
                (ENDED_WORKFLOWS_KEPT,),
            )
        ]
        return agents, tasks, workflows

    @staticmethod
    async def _records(db: aiosqlite.Connection, task_seq: int) -> list[str]:
        rows = await db.execute_fetchall(
            "SELECT record FROM attempts WHERE task_seq = ? ORDER BY seq", (task_seq,)
        )
        return [row[0] for row in rows]

    # --- queries ------------------------------------------------------------------------------------

    async def task(self, task_id: str) -> TaskView | None:
        """The task with its routing decisions, in one query (one trip to SQLite's thread)."""
        rows = list(await self.reader.execute_fetchall(_TASK_WITH_DECISIONS, (task_id,)))
        if not rows:
            return None
        view, records = rows[0]
        return task_from_rows(view, records)

    async def tasks(self, where: TaskFilter, page: Page) -> list[sqlite3.Row | tuple[Any, ...]]:
        sql, params = task_query(where, page)
        return list(await self.reader.execute_fetchall(sql, params))

    async def workflow(self, workflow_id: str) -> WorkflowView | None:
        rows = list(
            await self.reader.execute_fetchall(
                "SELECT view FROM workflows WHERE workflow_id = ?", (workflow_id,)
            )
        )
        return workflow_from_row(rows[0][0]) if rows else None

    async def workflows(self, where: WorkflowFilter, page: Page) -> list[sqlite3.Row | tuple[Any, ...]]:
        sql, params = workflow_query(where, page)
        return list(await self.reader.execute_fetchall(sql, params))

    async def counts(self) -> dict[str, int]:
        """Rows per table (for health and tests)."""
        found = {}
        for table in ("tasks", "attempts", "agents", "workflows"):
            rows = list(await self.reader.execute_fetchall(f"SELECT count(*) FROM {table}"))
            found[table] = int(rows[0][0])
        return found
