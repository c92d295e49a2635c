"""The dashboard in a real browser (Debian's chromium driven by Playwright) against a real Hive.

Hive runs as ``hive up`` runs it (nats-server and every service as separate processes) with an API
token; the agents run in this process (a thread with its own event loop) so a test decides when
their work ends: a task whose payload names a gate runs until the test opens it. One stack and one
browser for the module; every wait is on the page's DOM with a timeout, never a sleep. Each page's
screenshot is saved under the module's temp folder (and in HIVE_SCREENSHOTS_DIR when set: the
README's come from there).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from services.cli.stack import Stack, local_stack
from shared.agent.sdk import Agent, TaskContext

TOKEN = "dashboard-token"
CHROMIUM = os.environ.get("HIVE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
WAIT_MS = 20_000
expect.set_options(timeout=WAIT_MS)  # a loaded 2-core CI machine can take seconds; a failure still fails
ASSIGN = "/api/v1/orchestration/task/assign"
EXECUTE = "/api/v1/orchestration/workflow/execute"


class FailedOnPurpose(Exception):
    """What the flaky agent reports for every task."""


class AgentsThread:
    """Agents on their own event loop in a thread; a task whose payload says ``{"gate": name}`` runs
    until ``open_gate(name)``."""

    def __init__(self, nats_url: str) -> None:
        self.nats_url = nats_url
        self.loop = asyncio.new_event_loop()
        self.gates: dict[str, asyncio.Event] = {}
        self.stopping = asyncio.Event()
        self.started = threading.Event()
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="ui-test-agents", daemon=True)

    def gate(self, name: str) -> asyncio.Event:
        return self.gates.setdefault(name, asyncio.Event())

    async def work(self, context: TaskContext) -> dict[str, Any]:
        name = context.payload.get("gate")
        if name:
            await self.gate(str(name)).wait()
        return {"done": context.task_id}

    async def fail(self, context: TaskContext) -> None:
        raise FailedOnPurpose(f"{context.task_id} failed on purpose")

    async def _main(self) -> None:
        agents = [
            Agent("steady-0", self.work, capabilities=["x", "code_review"], capacity=4),
            Agent("steady-1", self.work, capabilities=["x", "code_review"], capacity=4),
            Agent("flaky", self.fail, capabilities=["flaky"], capacity=2),
        ]
        try:
            for agent in agents:
                await agent.start(nats_url=self.nats_url)
        except BaseException as exc:
            self.failure = exc
            raise
        finally:
            self.started.set()
        await self.stopping.wait()
        await asyncio.gather(*(agent.stop() for agent in agents), return_exceptions=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    def start(self) -> None:
        self.thread.start()
        assert self.started.wait(30), "the agents did not start within 30 s"
        assert self.failure is None, f"an agent did not start: {self.failure!r}"

    def open_gate(self, name: str) -> None:
        self.loop.call_soon_threadsafe(lambda: self.gate(name).set())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(30)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    hive = local_stack(
        tmp_path_factory.mktemp("ui") / "hive",
        api_token=TOKEN,
        monitoring_interval_seconds=1.0,
        breaker_min_calls=3,
        breaker_window_size=5,
        breaker_open_s=600.0,
    )
    hive.start()
    yield hive
    hive.stop()


@pytest.fixture(scope="module")
def agents(stack: Stack) -> Iterator[AgentsThread]:
    running = AgentsThread(stack.nats_url)
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=stack.gateway_url, headers={"authorization": f"Bearer {TOKEN}"}, timeout=10
    ) as client:
        yield client


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"no chromium at {CHROMIUM}: install Debian's (apt-get install -y chromium; .ci/run does) "
            "or point HIVE_CHROMIUM at one"
        )
    with sync_playwright() as playwright:
        launched = launch(playwright)
        yield launched
        launched.close()


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folders = [tmp_path_factory.mktemp("screenshots")]
    if os.environ.get("HIVE_SCREENSHOTS_DIR"):
        folders.append(Path(os.environ["HIVE_SCREENSHOTS_DIR"]))
        folders[-1].mkdir(parents=True, exist_ok=True)
    return folders


def snap(page: Page, folders: list[Path], name: str) -> None:
    for folder in folders:
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def page(browser: Browser, stack: Stack, agents: AgentsThread) -> Iterator[Page]:
    """One signed-in tab for the module's tests (a page moves by its links, as a user's would)."""
    context = browser.new_context(viewport={"width": 1360, "height": 860})
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    tab.goto(f"{stack.gateway_url}/ui/")
    tab.fill("#login-token", TOKEN)
    tab.click("#login-form button[type=submit]")
    expect(tab.locator("#live")).to_have_attribute("data-live", "on", timeout=WAIT_MS)
    yield tab
    context.close()


def mark(page: Page) -> None:
    """Leave a mark in the page's JavaScript: gone if the page reloads."""
    page.evaluate("window.__notReloaded = true")


def not_reloaded(page: Page) -> bool:
    return bool(page.evaluate("window.__notReloaded === true"))


def go(page: Page, route: str) -> None:
    page.evaluate(f"location.hash = {route!r}")


def test_the_fleet_page_shows_every_agent_with_its_load_and_breaker(
    page: Page, screenshots: list[Path]
) -> None:
    go(page, "#/fleet")
    for agent_id in ("steady-0", "steady-1", "flaky"):
        row = page.locator(f'tr[data-agent="{agent_id}"]')
        expect(row).to_be_visible()
        expect(row.locator("td[data-breaker]")).to_have_attribute("data-breaker", "closed")
    expect(page.locator('tr[data-agent="steady-0"]')).to_contain_text("0 / 4")
    expect(page.locator('tr[data-agent="steady-0"] td[data-heartbeat]')).to_contain_text("s ago")


def test_a_submitted_task_appears_and_reaches_completed_without_a_reload(
    page: Page, http: httpx.Client, agents: AgentsThread, screenshots: list[Path]
) -> None:
    go(page, "#/tasks")
    expect(page.locator("table#tasks")).to_be_visible()
    mark(page)
    reply = http.post(
        ASSIGN, json={"task_id": "live-task", "task_type": "code_review", "payload": {"gate": "live-task"}}
    )
    assert reply.status_code in (200, 202), reply.text
    row = page.locator('tr[data-task="live-task"]')
    expect(row).to_have_attribute("data-status", "running")
    agents.open_gate("live-task")
    expect(row).to_have_attribute("data-status", "completed")
    assert not_reloaded(page)
    snap(page, screenshots, "tasks")
    row.locator("a").first.click()
    expect(page.locator("#task-summary")).to_have_attribute("data-status", "completed")
    expect(page.locator("svg.timeline rect.ok")).to_have_count(1)
    expect(page.locator("#result")).to_contain_text("live-task")
    expect(page.locator("#task")).to_contain_text("Score breakdown")
    expect(page.locator("#task")).to_contain_text("Rejected candidates")
    snap(page, screenshots, "task")


def test_a_workflow_dag_renders_every_step_and_changes_colour_as_steps_end(
    page: Page, http: httpx.Client, agents: AgentsThread, screenshots: list[Path]
) -> None:
    flow = {
        "workflow_id": "release-7",
        "name": "release",
        "tasks": [
            {"task_id": "build", "task_type": "x", "payload": {"gate": "build"}},
            {
                "task_id": "unit-tests",
                "task_type": "x",
                "dependencies": ["build"],
                "estimated_duration_minutes": 3,
            },
            {"task_id": "lint", "task_type": "x", "dependencies": ["build"]},
            {"task_id": "package", "task_type": "x", "dependencies": ["unit-tests", "lint"]},
            {"task_id": "publish", "task_type": "x", "dependencies": ["package"]},
        ],
    }
    reply = http.post(EXECUTE, json=flow)
    assert reply.status_code == 202, reply.text
    go(page, "#/workflows")
    page.locator('tr[data-workflow="release-7"] a').click()
    nodes = page.locator("svg#dag g.node")
    expect(nodes).to_have_count(5)
    mark(page)
    build = page.locator('svg#dag g.node[data-step="build"]')
    expect(build).to_have_attribute("data-state", "running")
    expect(build.locator("rect")).to_have_class("state-running")
    expect(page.locator('svg#dag g.node[data-step="publish"]')).to_have_attribute("data-state", "pending")
    expect(page.locator("svg#dag g.node.critical")).to_have_count(4)  # build, unit-tests, package, publish
    snap(page, screenshots, "workflow")
    agents.open_gate("build")
    expect(page.locator('svg#dag g.node[data-step="publish"]')).to_have_attribute("data-state", "completed")
    expect(build.locator("rect")).to_have_class("state-completed")
    expect(page.locator("#workflow-summary")).to_have_attribute("data-status", "completed")
    assert not_reloaded(page)


def test_a_breaker_opened_by_failing_tasks_shows_as_open(
    page: Page, http: httpx.Client, screenshots: list[Path]
) -> None:
    go(page, "#/fleet")
    breaker = page.locator('tr[data-agent="flaky"] td[data-breaker]')
    expect(breaker).to_have_attribute("data-breaker", "closed")
    for index in range(4):
        reply = http.post(
            ASSIGN, json={"task_id": f"doomed-{index}", "task_type": "flaky", "retry": {"max_attempts": 1}}
        )
        assert reply.status_code in (200, 202), reply.text
    expect(breaker).to_have_attribute("data-breaker", "open")
    expect(breaker.locator("button[data-reset]")).to_be_visible()
    snap(page, screenshots, "fleet")


def test_the_metrics_page_charts_each_figure_against_its_target(page: Page, screenshots: list[Path]) -> None:
    go(page, "#/metrics")
    expect(page.locator("[data-chart]")).to_have_count(6)
    throughput = page.locator('[data-chart="system_throughput_tasks_per_second"]')
    expect(throughput.locator("polyline.line")).to_have_count(1)
    expect(throughput.locator("line.target")).to_have_count(1)
    latency = page.locator('[data-chart="task_assignment_latency_ms"] [data-met]')
    expect(latency).to_have_attribute("data-met", re.compile(r"^(met|not met)$"))  # measured
    snap(page, screenshots, "metrics")


def test_the_events_page_shows_the_log_live_filters_it_and_shows_it_as_of_a_sequence(
    page: Page, http: httpx.Client, screenshots: list[Path]
) -> None:
    go(page, "#/events")
    expect(page.locator("table#events tbody tr").first).to_be_visible()
    mark(page)
    reply = http.post(ASSIGN, json={"task_id": "seen-live", "task_type": "x"})
    assert reply.status_code in (200, 202), reply.text
    expect(page.locator('table#events tr[data-id="seen-live"][data-type="task.completed"]')).to_have_count(1)
    assert not_reloaded(page)
    snap(page, screenshots, "events")
    # A quick task appends no task.started: its timeline still shows it ran, from its completion.
    quick = http.get(
        "/api/v1/events", params={"type": "task.started", "aggregate": "task", "id": "seen-live"}
    )
    assert quick.json()["items"] == []
    go(page, "#/tasks/seen-live")
    expect(page.locator("svg.timeline rect.ok")).to_have_count(1)
    go(page, "#/events?aggregate=task&id=live-task")
    rows = page.locator("table#events tbody tr")
    expect(page.locator('table#events tr[data-type="task.completed"]')).to_have_count(1)
    types = set(rows.evaluate_all("rows => rows.map(r => r.dataset.type)"))
    assert {"task.submitted", "task.started", "task.completed"} <= types, types
    assert types <= {"task.submitted", "agent.task_assigned", "task.started", "task.completed"}, types
    started = http.get(
        "/api/v1/events", params={"type": "task.started", "aggregate": "task", "id": "live-task"}
    )
    as_of = started.json()["items"][0]["seq"]
    go(page, f"#/events?aggregate=task&id=live-task&as_of={as_of}")
    expect(page.locator('table#events tr[data-type="task.completed"]')).to_have_count(0)
    expect(page.locator('table#events tr[data-type="task.started"]')).to_have_count(1)


def test_the_actions_page_submits_a_task_and_dry_runs_the_balancer(
    page: Page, screenshots: list[Path]
) -> None:
    go(page, "#/actions")
    page.fill('#submit-task input[name="task_id"]', "from-the-form")
    page.click("#submit-task button[type=submit]")
    expect(page.locator("#submitted-task")).to_have_text("from-the-form")
    page.click("#balance-dry-run")
    expect(page.locator("#balance-result")).to_contain_text("Would move")
    snap(page, screenshots, "actions")
    page.click("#submitted-task")
    expect(page.locator("#task-summary")).to_have_attribute("data-status", "completed")


def test_the_sign_in_refuses_a_wrong_token_and_takes_the_right_one(browser: Browser, stack: Stack) -> None:
    context = browser.new_context()
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    try:
        tab.goto(f"{stack.gateway_url}/ui/")
        expect(tab.locator("#login")).to_be_visible()
        tab.fill("#login-token", "not-the-token")
        tab.click("#login-form button[type=submit]")
        expect(tab.locator("#login-error")).to_contain_text("refused")
        expect(tab.locator("#main")).to_be_hidden()
        assert tab.evaluate("sessionStorage.getItem('hive-api-token')") is None
        tab.fill("#login-token", TOKEN)
        tab.click("#login-form button[type=submit]")
        expect(tab.locator('tr[data-agent="steady-0"]')).to_be_visible()
        assert tab.evaluate("sessionStorage.getItem('hive-api-token')") == TOKEN
    finally:
        context.close()
