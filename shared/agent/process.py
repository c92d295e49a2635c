"""Command-line agents: a program run once per task (``hive agent exec -- CMD ARGS...``).

How an AI coding CLI, or any program, is put under Hive. For each task the program is started in
a process group of its own with:

* **stdin**: the task document (``shared/agent/document.py``), then end of file;
* **environment**: the agent's own, less its NATS credentials, plus ``HIVE_TASK_ID``,
  ``HIVE_TASK_TYPE``, ``HIVE_ATTEMPT``, ``HIVE_AGENT_ID``, ``HIVE_TIMEOUT_S``, ``HIVE_DEADLINE``.

It answers with:

* **stderr**: a line ``progress <percent> [message]`` reports progress; every other line is logged;
* **stdout**: its last line that is a JSON object with a ``result`` key is the outcome
  (``{"result": ..., "quality": 0.9}``); without one, the output text is the result;
* **exit code**: 0 completed; 2 failed, not retryable (bad input: retrying cannot help);
  anything else (or a signal) failed, retryable (Hive retries per the task's retry policy).

When the task's timeout passes, or Hive takes the attempt away (recovery, a cancelled task), or
the agent stops, the whole process group gets SIGTERM, then SIGKILL after a grace period. What the
program leaves running in its group when it exits is killed too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from shared.agent.context import TaskContext, TaskOutcome
from shared.agent.document import encode_task, outcome_of_output, shorten
from shared.agent.errors import NonRetryableError
from shared.agent.handlers import Handler
from shared.credentials import without_credentials
from shared.logging import get_logger

NOT_RETRYABLE_EXIT: Final = 2
"""The exit code that fails a task for good; every other failing code is retried."""

PROGRESS_LINE: Final = re.compile(r"^progress\s+(-?\d+(?:\.\d+)?)%?(?:\s+(.*))?$")
"""A stderr line reporting progress: ``progress 40 reading the diff``."""

STDOUT_TAIL_BYTES: Final = 1024 * 1024
"""Of stdout only the end is kept: the outcome is its last line."""

STDERR_LINE_BYTES: Final = 64 * 1024
STDERR_KEPT_LINES: Final = 5
"""The last stderr lines (not progress) quoted in a failure's error."""

log = get_logger("hive.agent.process")


class ProcessFailed(Exception):
    """The program exited with a failing code (retryable unless it was ``NOT_RETRYABLE_EXIT``)."""


@dataclass(frozen=True)
class ProcessSpec:
    """How to run the program.

    Args:
        argv: The program and its arguments (``argv[0]`` looked up on PATH).
        kill_grace_s: Between SIGTERM and SIGKILL when the program must stop.
        env: Its base environment (default: the agent's, less its NATS credentials).
        cwd: Its working directory (default: the agent's).
    """

    argv: Sequence[str]
    kill_grace_s: float = 5.0
    env: Mapping[str, str] | None = None
    cwd: str | None = None


def parse_progress(line: str) -> tuple[float, str] | None:
    """(percent, message) of a progress line, or None for any other line."""
    match = PROGRESS_LINE.match(line.strip())
    if match is None:
        return None
    return float(match.group(1)), (match.group(2) or "").strip()


def exit_failure(argv0: str, code: int, stderr_tail: Sequence[str]) -> Exception:
    """The exception a failing exit code stands for (``NonRetryableError`` for code 2)."""
    if code < 0:
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
    else:
        how = f"exited with {code}"
    said = " | ".join(stderr_tail)
    message = f"{argv0} {how}" + (f": {shorten(said, 1000)}" if said else "")
    if code == NOT_RETRYABLE_EXIT:
        return NonRetryableError(message + " (exit code 2: not retryable)")
    return ProcessFailed(message)


def task_environment(spec: ProcessSpec, task: TaskContext) -> dict[str, str]:
    base = without_credentials(os.environ if spec.env is None else spec.env)
    return {
        **base,
        "HIVE_TASK_ID": task.task_id,
        "HIVE_TASK_TYPE": task.task_type,
        "HIVE_ATTEMPT": str(task.attempt),
        "HIVE_AGENT_ID": task.agent_id,
        "HIVE_TIMEOUT_S": f"{task.timeout_s:g}",
        "HIVE_DEADLINE": f"{task.deadline:.3f}",
    }


def signal_group(pid: int, sig: signal.Signals) -> None:
    """Send `sig` to the process group led by `pid` (nothing if it is gone)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def stop_group(process: asyncio.subprocess.Process, grace_s: float, task_id: str) -> None:
    """SIGTERM the program's group, SIGKILL it after `grace_s`, and reap the program.

    Interrupted itself (the agent stopping while it waits), it kills at once before giving way.
    """
    signal_group(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), grace_s)
        log.info("process_terminated", task_id=task_id, pid=process.pid, signal="SIGTERM")
    except TimeoutError:
        signal_group(process.pid, signal.SIGKILL)
        await process.wait()
        log.warning("process_killed", task_id=task_id, pid=process.pid, signal="SIGKILL", grace_s=grace_s)
    except BaseException:
        signal_group(process.pid, signal.SIGKILL)
        raise
    finally:
        signal_group(process.pid, signal.SIGKILL)  # whatever it left in its group


async def _feed(process: asyncio.subprocess.Process, data: bytes) -> None:
    """The task on stdin, then end of file; a program that does not read it is not an error."""
    assert process.stdin is not None
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        process.stdin.write(data)
        await process.stdin.drain()
        process.stdin.close()


async def _tail(stream: asyncio.StreamReader) -> bytes:
    """Everything the stream says until end of file, keeping only its last STDOUT_TAIL_BYTES."""
    kept = bytearray()
    while chunk := await stream.read(65536):
        kept += chunk
        if len(kept) > STDOUT_TAIL_BYTES:
            del kept[: len(kept) - STDOUT_TAIL_BYTES]
    return bytes(kept)


async def _follow_stderr(stream: asyncio.StreamReader, task: TaskContext, said: list[str]) -> None:
    """Progress lines become progress reports (a refusal stops the program); the rest is logged."""
    while True:
        try:
            raw = await stream.readline()
        except ValueError:  # a line longer than the limit: dropped, the stream goes on
            log.warning("process_stderr_line_too_long", task_id=task.task_id, limit=STDERR_LINE_BYTES)
            continue
        if not raw:
            return
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        progress = parse_progress(line)
        if progress is not None:
            await task.progress(*progress)
            continue
        if line.strip():
            said.append(line.strip())
            del said[:-STDERR_KEPT_LINES]
            log.info("process_stderr", task_id=task.task_id, line=line)


async def run_process(spec: ProcessSpec, task: TaskContext) -> TaskOutcome:
    """Run the program on one task and return its outcome, or raise what its exit code means."""
    process = await asyncio.create_subprocess_exec(
        *spec.argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=task_environment(spec, task),
        cwd=spec.cwd,
        start_new_session=True,  # its own process group: stopped as a whole
        limit=STDERR_LINE_BYTES,
    )
    log.info("process_started", task_id=task.task_id, attempt=task.attempt, pid=process.pid)
    assert process.stdout is not None and process.stderr is not None
    said: list[str] = []
    feeding = asyncio.ensure_future(_feed(process, encode_task(task)))
    stdout = asyncio.ensure_future(_tail(process.stdout))
    stderr = asyncio.ensure_future(_follow_stderr(process.stderr, task, said))
    exited = asyncio.ensure_future(process.wait())
    helpers: tuple[asyncio.Future[Any], ...] = (feeding, stdout, stderr, exited)
    try:
        await asyncio.wait({exited, stderr}, return_when=asyncio.FIRST_COMPLETED)
        if stderr.done() and stderr.exception() is not None:
            stderr.result()  # a refused progress report: the attempt is no longer ours
        code = await exited
        signal_group(process.pid, signal.SIGKILL)  # what it left running would hold its pipes open
        await stderr
        output = (await stdout).decode("utf-8", "replace")
    finally:
        if process.returncode is None:
            await stop_group(process, spec.kill_grace_s, task.task_id)
        for helper in helpers:
            helper.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
    log.info("process_exited", task_id=task.task_id, pid=process.pid, code=code)
    if code != 0:
        raise exit_failure(spec.argv[0], code, said)
    return outcome_of_output(output)


def process_handler(spec: ProcessSpec) -> Handler:
    """A handler running `spec`'s program once per task."""

    async def handle(task: TaskContext) -> TaskOutcome:
        return await run_process(spec, task)

    return handle
