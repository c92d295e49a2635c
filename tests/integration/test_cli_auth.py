"""The command line with credentials: hive up generates and uses them, hive auth adds agents,
hive agent connects each agent as itself and says clearly what is missing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from services.cli.main import main
from shared.agent import inbox, sdk
from shared.agent.context import TaskContext
from shared.agent.sdk import Agent
from shared.bus import EventBus, NatsAuthError
from shared.credentials import CredentialStore
from shared.embedded import EmbeddedNats, free_port
from shared.events import AgentDeregistered, AgentRegistered, AnyEvent, TaskCompleted
from shared.permissions import ADMIN, agent_user
from tests.conftest import EventLog


def test_hive_auth_adds_agents_and_prints_a_users_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HIVE_HOME", str(tmp_path))
    assert main(["auth", "agent", "x", "y"]) == 0
    assert "agent-x, agent-y" in capsys.readouterr().out
    store = CredentialStore(tmp_path)
    assert main(["auth", "env", "agent-x"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        "export NATS_USER=agent-x",
        f"export NATS_PASSWORD={store.credentials('agent-x').password}",
    ]
    assert main(["auth", "init"]) == 0
    assert set(store.load()) == {
        ADMIN,
        "router",
        "balancer",
        "recovery",
        "workflow",
        "gateway",
        "agent-x",
        "agent-y",
    }


def test_hive_auth_refuses_bad_names_and_unknown_users_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HIVE_HOME", str(tmp_path))
    assert main(["auth", "agent", "good", "bad.id"]) == 2
    assert "agent_id 'bad.id' is invalid" in capsys.readouterr().err
    assert not CredentialStore(tmp_path).load(), "nothing is added when one name is refused"
    assert main(["auth", "env", "agent-nobody"]) == 2
    assert "no credentials for NATS user 'agent-nobody'" in capsys.readouterr().err


def test_hive_agent_names_the_agents_it_has_no_credentials_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = CredentialStore(tmp_path)
    store.ensure_agents(["p-0"])
    monkeypatch.setenv("HIVE_AGENT_CREDENTIALS", str(store.agents_path))
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:1")  # never reached
    assert main(["agent", "--count", "3", "--prefix", "p"]) == 2
    assert "no credentials for agent(s) p-1, p-2" in capsys.readouterr().err
    monkeypatch.setenv("HIVE_AGENT_CREDENTIALS", str(tmp_path / "missing.json"))
    assert main(["agent", "--count", "1", "--prefix", "p"]) == 2
    assert "does not exist" in capsys.readouterr().err


def count(events: list[AnyEvent], kind: type) -> int:
    return sum(isinstance(e, kind) for e in events)


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[tuple[EmbeddedNats, CredentialStore, EventBus]]:
    store = CredentialStore(tmp_path / "home")
    store.ensure([ADMIN, agent_user("p-0"), agent_user("p-1")])
    server = EmbeddedNats(tmp_path / "nats", port=0, users_file=store.users_conf).start()
    admin = store.credentials(ADMIN)
    bus = await EventBus.connect(server.url, "admin", user=admin.user, password=admin.password)
    await bus.ensure_streams()
    yield server, store, bus
    await bus.close()
    server.stop()


async def test_hive_agent_connects_each_agent_as_itself(
    secured: tuple[EmbeddedNats, CredentialStore, EventBus],
) -> None:
    server, store, bus = secured
    log = await EventLog(bus).start()
    env = dict(os.environ, NATS_URL=server.url, HIVE_AGENT_CREDENTIALS=str(store.agents_path))
    agents = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli.main", "agent", "--count", "2", "--prefix", "p", env=env
    )
    try:
        await log.wait_for(lambda evs: count(evs, AgentRegistered) == 2, timeout=30)
        agents.send_signal(signal.SIGTERM)
        await log.wait_for(lambda evs: count(evs, AgentDeregistered) == 2, timeout=30)
        assert await asyncio.wait_for(agents.wait(), 30) == 0
    finally:
        if agents.returncode is None:
            agents.kill()
            await agents.wait()
        await log.stop()
    assert "Violation" not in server.log_path.read_text()


async def test_an_agent_waiting_for_its_inbox_stops_even_when_a_cancellation_is_lost(
    secured: tuple[EmbeddedNats, CredentialStore, EventBus], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No router opens the inbox, and the check that polls for it swallows its cancellation (what
    Python 3.11's ``asyncio.wait_for`` inside nats-py does when the reply comes with the cancel):
    stopping the agent must still end its reader, not leave it polling forever."""
    server, store, _ = secured
    polls = asyncio.Event()

    async def never_ready_and_deaf_to_cancel(*_: object) -> bool:
        polls.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.005)
        return False

    monkeypatch.setattr(inbox, "inbox_ready", never_ready_and_deaf_to_cancel)
    monkeypatch.setattr(sdk, "inbox_ready", never_ready_and_deaf_to_cancel)

    async def work(_: TaskContext) -> str:
        return "done"

    agent = Agent("p-0", work, capabilities=["code"], heartbeat_interval_s=0.2)
    credentials = store.credentials(agent_user("p-0"))
    await agent.start(nats_url=server.url, user=credentials.user, password=credentials.password)
    assert agent.inbox_provided
    await asyncio.wait_for(polls.wait(), 10)
    await asyncio.wait_for(agent.stop(), 10)
    assert agent.bus is not None and agent.bus.nc.is_closed


async def read_until(stream: asyncio.StreamReader, marker: str, timeout: float = 90) -> str:
    """Lines of `stream` up to the first containing `marker`; fail with what was read if it never comes."""
    seen: list[str] = []

    async def scan() -> str:
        while True:
            raw = await stream.readline()
            if not raw:
                raise AssertionError(f"output ended before {marker!r}:\n" + "".join(seen[-30:]))
            line = raw.decode(errors="replace")
            seen.append(line)
            if marker in line:
                return "".join(seen)

    try:
        return await asyncio.wait_for(scan(), timeout)
    except TimeoutError:
        raise AssertionError(f"no {marker!r} within {timeout}s:\n" + "".join(seen[-30:])) from None


async def test_hive_up_generates_credentials_uses_them_and_loads_agents_added_while_running(
    tmp_path: Path,
) -> None:
    home = tmp_path / "hive"
    nats_url = f"nats://127.0.0.1:{free_port()}"
    gateway = f"http://127.0.0.1:{free_port()}"
    env = dict(os.environ, HIVE_HOME=str(home), NATS_URL=nats_url, GATEWAY_PORT=gateway.rsplit(":", 1)[1])
    for var in ("NATS_USER", "NATS_PASSWORD", "HIVE_AGENT_CREDENTIALS"):
        env.pop(var, None)
    up = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli.main",
        "up",
        "--agents",
        "2",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert up.stdout is not None
    try:
        banner = await read_until(up.stdout, "Press Ctrl-C to stop.")
        store = CredentialStore(home)
        assert str(store.path) in banner
        with pytest.raises(NatsAuthError):
            await EventBus.connect(nats_url, "anonymous")
        admin = store.credentials(ADMIN)
        bus = await EventBus.connect(nats_url, "test", user=admin.user, password=admin.password)
        log = await EventLog(bus).start()
        try:
            await log.wait_for(lambda evs: count(evs, AgentRegistered) == 2, timeout=30)
            async with httpx.AsyncClient(base_url=gateway, timeout=10) as http:
                reply = await http.post(
                    "/api/v1/orchestration/task/assign", json={"task_id": "via-up", "task_type": "testing"}
                )
                assert reply.status_code in (200, 202), reply.text
            await log.wait_for(lambda evs: any(isinstance(e, TaskCompleted) for e in evs), timeout=30)
        finally:
            await log.stop()
            await bus.close()
        # An agent of your own, added while Hive runs.
        auth = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.cli.main",
            "auth",
            "agent",
            "mine",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
        )
        assert await asyncio.wait_for(auth.wait(), 60) == 0
        await read_until(up.stdout, "NATS users changed")
        mine = store.credentials(agent_user("mine"))
        connected = await EventBus.connect(nats_url, "mine", user=mine.user, password=mine.password)
        await connected.close()
        up.send_signal(signal.SIGINT)
        await read_until(up.stdout, "Stopped.")
        assert await asyncio.wait_for(up.wait(), 60) == 0
    finally:
        if up.returncode is None:
            up.kill()
            with contextlib.suppress(Exception):
                await up.wait()
    users = json.loads(store.path.read_text())
    assert {"admin", "router", "gateway", "agent-sim-0", "agent-sim-1", "agent-mine"} <= set(users)


async def test_hive_agent_with_a_refused_password_says_so_and_exits(
    secured: tuple[EmbeddedNats, CredentialStore, EventBus], tmp_path: Path
) -> None:
    server, _store, _bus = secured
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"agent-p-0": "not-the-password"}))
    env = dict(os.environ, NATS_URL=server.url, HIVE_AGENT_CREDENTIALS=str(wrong))
    agents = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "services.cli.main", "agent", "--count", "1", "--prefix", "p"],
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await asyncio.wait_for(agents.communicate(), 60)
    assert agents.returncode == 1
    assert "hive agent: NATS at" in err.decode() and "refused user 'agent-p-0'" in err.decode()
