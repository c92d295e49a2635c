"""The query model's tables, and the schema id a file is written under. Pure.

The id is derived like a projection snapshot's (``shared/projection_spec.py``): from the structure
of what the rows hold (the views stored as JSON) and from the table definitions below, so changing
either gives a new id, and a file written under another id is rebuilt from the log, never read.
``REVISION`` is for the rarer change that keeps both but changes what is written.
"""

from __future__ import annotations

import hashlib
from typing import Final

import msgspec

from shared.domain.fleet import AgentView, AssignmentRecord, TaskView
from shared.domain.workflows import WorkflowView
from shared.projection_spec import schema_id

REVISION: Final = 0

TABLES: Final = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value
);
CREATE TABLE IF NOT EXISTS tasks (
    seq INTEGER PRIMARY KEY,
    task_id TEXT NOT NULL UNIQUE,
    task_type TEXT NOT NULL,
    name TEXT NOT NULL,
    priority TEXT NOT NULL,
    status TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    agent_id TEXT,
    workflow_id TEXT,
    step_id TEXT,
    submitted_ts REAL NOT NULL,
    assigned_ts REAL,
    started_ts REAL,
    finished_ts REAL,
    quality REAL,
    failure_type TEXT NOT NULL,
    queued_reason TEXT NOT NULL,
    view TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_by_status ON tasks (status, seq);
CREATE INDEX IF NOT EXISTS tasks_by_type ON tasks (task_type, seq);
CREATE INDEX IF NOT EXISTS tasks_by_agent ON tasks (agent_id, seq);
CREATE INDEX IF NOT EXISTS tasks_by_priority ON tasks (priority, seq);
CREATE INDEX IF NOT EXISTS tasks_by_workflow ON tasks (workflow_id, seq) WHERE workflow_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_by_submitted_ts ON tasks (submitted_ts);
CREATE INDEX IF NOT EXISTS tasks_by_finished_ts ON tasks (finished_ts) WHERE finished_ts IS NOT NULL;
CREATE TABLE IF NOT EXISTS attempts (
    seq INTEGER PRIMARY KEY,
    task_seq INTEGER NOT NULL,
    task_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    agent_id TEXT NOT NULL,
    ts REAL NOT NULL,
    strategy TEXT NOT NULL,
    score REAL NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_by_task ON attempts (task_seq);
CREATE TABLE IF NOT EXISTS agents (
    agent_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    view TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS workflows (
    seq INTEGER PRIMARY KEY,
    workflow_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    execution_mode TEXT NOT NULL,
    optimization_goal TEXT NOT NULL,
    template TEXT NOT NULL,
    tasks INTEGER NOT NULL,
    percent REAL NOT NULL,
    submitted_ts REAL NOT NULL,
    started_ts REAL,
    finished_ts REAL,
    view TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS workflows_by_status ON workflows (status, seq);
CREATE INDEX IF NOT EXISTS workflows_by_submitted_ts ON workflows (submitted_ts);
CREATE INDEX IF NOT EXISTS workflows_by_finished_ts ON workflows (finished_ts) WHERE finished_ts IS NOT NULL;
"""


class StoredViews(msgspec.Struct):
    """The shapes the rows keep as JSON: a change of any is a new schema."""

    task: TaskView
    assignment: AssignmentRecord
    agent: AgentView
    workflow: WorkflowView


def query_schema_id(tables: str = TABLES, revision: int = REVISION) -> str:
    """``query-r<revision>-<hash of the stored views>-<hash of the tables>``."""
    digest = hashlib.sha256(" ".join(tables.split()).encode()).hexdigest()[:8]
    return f"{schema_id('query', StoredViews, revision)}-{digest}"


SCHEMA_ID: Final = query_schema_id()
