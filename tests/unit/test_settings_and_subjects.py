"""Settings from the environment and subject building."""

from __future__ import annotations

import pytest

from services.cli.up import parse_scale
from shared.ids import InvalidIdError
from shared.settings import SETTINGS_DOC, Settings, SettingsError, env_for, load_settings
from shared.subjects import (
    AGGREGATES,
    ALL_EVENTS,
    aggregate_filter,
    aggregate_subjects,
    dlq_subject,
    event_subject,
    events_of_type,
    heartbeat_subject,
    notice_subject,
    notice_subject_v2,
    notices_v2_of,
    parse_event_subject,
    reads,
    report_subject,
    type_filters,
    whole_aggregates,
)


def test_defaults_apply_when_the_environment_is_empty() -> None:
    settings = load_settings({})
    assert settings == Settings()
    assert settings.nats_url == "nats://127.0.0.1:4222"
    assert settings.orchestration_mode == "standard"


def test_environment_values_are_parsed_to_their_types() -> None:
    settings = load_settings(
        {
            "GATEWAY_PORT": "9000",
            "ENABLE_CIRCUIT_BREAKERS": "false",
            "HEARTBEAT_INTERVAL_S": "0.25",
            "ORCHESTRATION_MODE": "fault_tolerant",
            "HIVE_API_TOKEN": "s3cret",
        }
    )
    assert settings.gateway_port == 9000
    assert settings.enable_circuit_breakers is False
    assert settings.heartbeat_interval_s == 0.25
    assert settings.orchestration_mode == "fault_tolerant"
    assert settings.api_token == "s3cret"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"GATEWAY_PORT": "eighty"}, "GATEWAY_PORT"),
        ({"GATEWAY_PORT": "70000"}, "GATEWAY_PORT"),
        ({"ORCHESTRATION_MODE": "turbo"}, "ORCHESTRATION_MODE"),
        ({"DEFAULT_ROUTING_STRATEGY": "fastest"}, "DEFAULT_ROUTING_STRATEGY"),
        ({"ENABLE_CIRCUIT_BREAKERS": "maybe"}, "ENABLE_CIRCUIT_BREAKERS"),
        ({"HEARTBEAT_INTERVAL_S": "0"}, "HEARTBEAT_INTERVAL_S"),
    ],
)
def test_a_bad_value_names_its_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings(env)


def test_every_setting_is_documented_and_round_trips_through_the_environment() -> None:
    assert set(SETTINGS_DOC) == set(Settings.__struct_fields__)
    settings = load_settings({}, gateway_port=1234, enable_circuit_breakers=False)
    assert load_settings(env_for(settings)) == settings


def test_subjects_read_from_general_to_specific() -> None:
    assert event_subject("task", "t1", "completed") == "hive.evt.task.t1.completed"
    assert report_subject("t1", "completed", "a1") == "hive.evt.task.t1.completed.a1"
    assert aggregate_subjects("agent", "a1") == "hive.evt.agent.a1.>"
    assert events_of_type("task", "submitted") == "hive.evt.task.*.submitted"
    assert events_of_type("task", "completed") == "hive.evt.task.*.completed.*"
    assert type_filters("task", "completed") == ["hive.evt.task.*.completed.*", "hive.evt.task.*.completed"]
    assert type_filters("agent", "registered") == ["hive.evt.agent.*.registered"]
    assert heartbeat_subject("a1") == "hive.hb.a1"
    assert dlq_subject("router") == "hive.dlq.router"
    assert parse_event_subject("hive.evt.task.t1.completed") == ("task", "t1", "completed")
    assert parse_event_subject("hive.evt.task.t1.completed.a1") == ("task", "t1", "completed")
    assert parse_event_subject("hive.evt.task.t1.submitted.a1") is None
    assert parse_event_subject("hive.hb.a1") is None


def test_an_agents_notice_sits_on_one_subject_per_type_and_version_2_on_six_tokens_stays_readable() -> None:
    assert notice_subject("a1", "task_assigned") == "hive.evt.agent.a1.task_assigned"
    assert notice_subject_v2("a1", "task_assigned", "t1") == "hive.evt.agent.a1.task_assigned.t1"
    assert parse_event_subject("hive.evt.agent.a1.task_assigned") == ("agent", "a1", "task_assigned")
    assert parse_event_subject("hive.evt.agent.a1.task_assigned.t1") == ("agent", "a1", "task_assigned")
    assert parse_event_subject("hive.evt.agent.a1.registered.t1") is None
    assert events_of_type("agent", "task_assigned") == "hive.evt.agent.*.task_assigned"
    assert type_filters("agent", "task_cancel_requested") == [
        "hive.evt.agent.*.task_cancel_requested",
        "hive.evt.agent.*.task_cancel_requested.*",  # stored as version 2, naming their task
    ]
    assert notices_v2_of("t1") == [
        "hive.evt.agent.*.task_assigned.t1",
        "hive.evt.agent.*.task_cancel_requested.t1",
    ]


def test_an_id_that_cannot_be_a_subject_token_is_refused() -> None:
    with pytest.raises(InvalidIdError, match="invalid"):
        heartbeat_subject("a.b")


def test_scale_is_parsed_and_bad_values_are_refused() -> None:
    assert parse_scale(["router=3", "recovery=2"]) == {"router": 3, "recovery": 2}
    for bad in (["router"], ["router=0"], ["routers=2"], ["router=x"]):
        with pytest.raises(ValueError, match="--scale"):
            parse_scale(bad)


def test_subject_filters_match_as_the_server_matches_them() -> None:
    filters = (aggregate_filter("agent"), *type_filters("task", "completed"))
    assert reads(filters, "hive.evt.agent.a.registered")
    assert reads(filters, "hive.evt.agent.a.task_assigned.t1")
    assert reads(filters, "hive.evt.task.t1.completed.a")
    assert reads(filters, "hive.evt.task.t1.completed"), "the five-token form of old logs"
    assert not reads(filters, "hive.evt.task.t1.started.a")
    assert not reads(filters, "hive.evt.task.t1.completed.a.extra")
    assert not reads(filters, "hive.evt.agent")
    assert whole_aggregates(filters) == {"agent"}
    assert whole_aggregates(None) == set(AGGREGATES) == whole_aggregates((ALL_EVENTS,))


def test_the_router_and_workflow_views_read_no_task_start_or_progress() -> None:
    from services.workflow.view import WORKFLOW_VIEW
    from shared.domain.routing.view import ROUTER_VIEW

    for spec in (ROUTER_VIEW, WORKFLOW_VIEW):
        assert spec.reads is not None
        assert not reads(spec.reads, "hive.evt.task.t1.started.a")
        assert not reads(spec.reads, "hive.evt.task.t1.progress.a")
        for subject in (
            "hive.evt.task.t1.submitted",
            "hive.evt.task.t1.completed.a",
            "hive.evt.task.t1.attempt_failed.a",
            "hive.evt.task.t1.requeued",
            "hive.evt.agent.a.task_assigned.t1",
            "hive.evt.agent.a.registered",
        ):
            assert reads(spec.reads, subject), (spec.name, subject)
