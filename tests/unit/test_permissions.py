"""Roles and their NATS permissions (pure), and the credential store's files."""

from __future__ import annotations

import ast
import json
import stat
import typing
from pathlib import Path

import pytest

from shared.credentials import CredentialsError, CredentialStore, load_passwords, without_credentials
from shared.events import AnyEvent
from shared.ids import InvalidIdError
from shared.permissions import (
    ADMIN,
    AGENT_OWN_EVENTS,
    AGENT_REPORTS,
    SERVICE_EVENTS,
    SERVICES,
    UnknownUser,
    agent_permissions,
    inbox_prefix,
    parse_violation,
    permissions_for,
    render_users,
    service_permissions,
)

ROOT = Path(__file__).resolve().parents[2]
EVENT_NAMES = {cls.__name__ for cls in typing.get_args(AnyEvent)}


def events_constructed(path: Path) -> set[str]:
    """Names of event classes called (constructed) in a module."""
    tree = ast.parse(path.read_text())
    return {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in EVENT_NAMES
    }


def shared_domain_imports(path: Path) -> set[Path]:
    """The ``shared.domain`` modules a module imports from (they may build events for it)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("shared.domain."):
            found.add(ROOT / (node.module.replace(".", "/") + ".py"))
    return found


def modules_of_service(service: str) -> set[Path]:
    modules = set((ROOT / "services" / service).rglob("*.py"))
    pending = list(modules)
    while pending:
        for imported in shared_domain_imports(pending.pop()):
            if imported not in modules:
                modules.add(imported)
                pending.append(imported)
    return modules


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_may_append_every_event_its_code_constructs_and_no_more(service: str) -> None:
    constructed = set().union(*(events_constructed(path) for path in modules_of_service(service)))
    allowed = {cls.__name__ for cls in SERVICE_EVENTS[service]}
    assert constructed == allowed, (
        f"{service}: constructs {sorted(constructed - allowed)} without permission, "
        f"is allowed {sorted(allowed - constructed)} it never appends (update shared/permissions.py)"
    )


def test_the_agent_sdk_constructs_only_what_an_agent_may_append() -> None:
    constructed = events_constructed(ROOT / "shared" / "agent" / "sdk.py")
    allowed = {cls.__name__ for cls in (*AGENT_OWN_EVENTS, *AGENT_REPORTS)}
    assert constructed == allowed


def test_an_agent_may_publish_only_its_own_heartbeat_events_and_consumers() -> None:
    rights = agent_permissions("a")
    assert "hive.hb.a" in rights.publish
    assert not [s for s in rights.publish if s.startswith("hive.hb.") and s != "hive.hb.a"]
    agent_events = [s for s in rights.publish if s.startswith("hive.evt.agent.")]
    assert agent_events == [
        "hive.evt.agent.a.registered",
        "hive.evt.agent.a.draining",
        "hive.evt.agent.a.deregistered",
    ]
    task_events = {s for s in rights.publish if s.startswith("hive.evt.task.")}
    assert task_events == {
        f"hive.evt.task.*.{t}.a" for t in ("started", "progress", "completed", "attempt_failed")
    }, "reports only on subjects naming the agent itself"
    assert not [
        s for s in rights.publish if s.startswith("hive.evt.") and s.split(".")[2] not in ("agent", "task")
    ]
    consumer_calls = {s for s in rights.publish if s.startswith("$JS.API.CONSUMER.")}
    assert consumer_calls == {
        "$JS.API.CONSUMER.INFO.HIVE_EVENTS.agent-a",
        "$JS.API.CONSUMER.MSG.NEXT.HIVE_EVENTS.agent-a",
    }, "no consumer create or delete: a create's body could make it a push consumer delivering anywhere"
    assert [s for s in rights.publish if s.startswith("$JS.ACK.")] == ["$JS.ACK.HIVE_EVENTS.agent-a.>"]
    assert [s for s in rights.publish if s.startswith("$JS.API.DIRECT.")] == [
        "$JS.API.DIRECT.GET.HIVE_EVENTS.hive.evt.task.>"
    ]
    assert rights.subscribe == ("_INBOX.agent-a.>",)
    assert not rights.responses
    wide = [s for s in rights.publish if ">" in s]
    assert wide == ["$JS.ACK.HIVE_EVENTS.agent-a.>", "$JS.API.DIRECT.GET.HIVE_EVENTS.hive.evt.task.>"]


def test_services_read_the_log_but_append_only_their_own_decisions() -> None:
    router = service_permissions("router")
    assert "hive.evt.agent.*.task_assigned" in router.publish
    assert not [s for s in router.publish if s.startswith("hive.evt.agent.*.task_assigned.")], (
        "five tokens only"
    )
    assert "hive.evt.task.*.requeued" not in router.publish
    assert "hive.dlq.router" in router.publish and "hive.dlq.recovery" not in router.publish
    assert "$JS.ACK.HIVE_EVENTS.router.>" in router.publish
    assert "hive.hb.*" not in router.subscribe
    assert "hive.hb.*" in service_permissions("recovery").subscribe
    assert "$SYS.ACCOUNT.*.DISCONNECT" in service_permissions("gateway").subscribe
    balancer_appends = {s for s in service_permissions("balancer").publish if s.startswith("hive.evt.")}
    assert balancer_appends == {
        "hive.evt.task.*.requeued",
        "hive.evt.agent.*.task_cancel_requested",
        "hive.evt.system.*.scale_recommended",
        "hive.evt.system.*.load_rebalanced",
    }
    assert all("hive.svc.health" in service_permissions(s).publish for s in SERVICES)
    assert "hive.svc.health" not in agent_permissions("a").publish
    assert all(service_permissions(s).responses for s in SERVICES)


def test_users_are_known_by_their_names_and_others_are_refused() -> None:
    assert permissions_for(ADMIN).publish == (">",)
    assert permissions_for("agent-x") == agent_permissions("x")
    assert permissions_for("workflow") == service_permissions("workflow")
    with pytest.raises(UnknownUser, match="not a Hive user"):
        permissions_for("mallory")
    with pytest.raises(InvalidIdError):
        permissions_for("agent-a.b")  # a dot would widen its subjects
    with pytest.raises(InvalidIdError):
        permissions_for("agent-*")


def test_an_agents_inbox_is_its_own_even_for_the_longest_ids() -> None:
    longest = "x" * 64
    assert inbox_prefix(f"agent-{longest}") == f"_INBOX.agent-{longest}"
    assert agent_permissions(longest).subscribe == (f"_INBOX.agent-{longest}.>",)
    assert inbox_prefix("my user") == "_INBOX"  # not a subject token: NATS's default


def test_server_permission_errors_are_parsed_into_kind_and_subject() -> None:
    message = 'nats: permissions violation for publish to "hive.evt.task.t1.requeued"'
    assert parse_violation(message) == ("publish", "hive.evt.task.t1.requeued")
    assert parse_violation('nats: permissions violation for subscription to "_inbox.>"') == (
        "subscription",
        "_inbox.>",
    )
    assert parse_violation("nats: 'Authorization Violation'") is None
    assert parse_violation("permissions violation for something") is None


def test_rendered_users_carry_each_roles_permissions_as_json_strings() -> None:
    text = render_users({"agent-a": "pa", ADMIN: "pw"})
    entries = [json.loads(line) for line in text.splitlines() if line.startswith("  {")]
    assert [e["user"] for e in entries] == [ADMIN, "agent-a"]
    assert entries[1]["permissions"]["publish"]["allow"] == list(agent_permissions("a").publish)
    assert "allow_responses" not in entries[1]["permissions"]
    assert entries[0]["permissions"]["allow_responses"] is True


def test_the_store_generates_private_passwords_once_and_keeps_them(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    first = store.ensure([ADMIN, "router", "agent-a"])
    assert len(set(first.values())) == 3 and all(len(p) >= 32 for p in first.values())
    again = store.ensure([ADMIN, "agent-b"])
    assert {u: again[u] for u in first} == first and "agent-b" in again
    assert stat.S_IMODE(store.dir.stat().st_mode) == 0o700
    for path in (store.path, store.agents_path, store.users_conf):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert set(load_passwords(store.agents_path)) == {"agent-a", "agent-b"}
    assert store.credentials("agent-b").password == again["agent-b"]
    with pytest.raises(CredentialsError, match="no credentials for NATS user 'gateway'"):
        store.credentials("gateway")
    with pytest.raises(UnknownUser):
        store.ensure(["mallory"])
    assert set(store.load()) == {ADMIN, "router", "agent-a", "agent-b"}, "a refused name adds nothing"


def test_a_broken_credentials_file_is_reported_not_overwritten(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    store.dir.mkdir()
    store.path.write_text("{not json")
    with pytest.raises(CredentialsError, match="unreadable"):
        store.ensure([ADMIN])
    assert store.path.read_text() == "{not json"
    store.path.write_text('{"admin": 1}')
    with pytest.raises(CredentialsError, match="must map user names to passwords"):
        store.load()
    with pytest.raises(CredentialsError, match="does not exist"):
        load_passwords(tmp_path / "missing.json")


def test_children_of_a_private_server_do_not_inherit_exported_credentials() -> None:
    exported = {"NATS_USER": "admin", "NATS_PASSWORD": "x", "HIVE_AGENT_CREDENTIALS": "f", "PATH": "/bin"}
    assert without_credentials(exported) == {"PATH": "/bin"}


def test_every_service_that_runs_has_a_user() -> None:
    from services.cli.stack import SERVICE_NAMES

    assert set(SERVICES) == set(SERVICE_NAMES)
