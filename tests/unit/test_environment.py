"""The environment as the specification writes it: integration modes, share targets, and a word about
every variable Hive would otherwise ignore."""

from __future__ import annotations

import pytest

from services.gateway.service import GatewayService
from shared.environment import environment_notices
from shared.settings import Settings, SettingsError, env_for, load_settings


@pytest.mark.parametrize("written", ["production", "PRODUCTION", "Production"])
def test_orchestration_mode_production_is_the_production_integration_mode_with_standard_routing(
    written: str,
) -> None:
    settings = load_settings({"ORCHESTRATION_MODE": written})
    assert settings.integration_mode == "production"
    assert settings.orchestration_mode == "standard"
    assert settings.enable_performance_alerts is True, "production alerts by default"
    assert settings.requires_api_token
    (notice,) = environment_notices({"ORCHESTRATION_MODE": written})
    assert notice.level == "info" and "INTEGRATION_MODE=production" in notice.message


def test_development_keeps_todays_defaults_and_an_explicit_variable_beats_the_profile() -> None:
    development = load_settings({"ORCHESTRATION_MODE": "development"})
    assert development.integration_mode == "development" and development.orchestration_mode == "standard"
    assert development.enable_performance_alerts is False and not development.requires_api_token
    quiet = load_settings({"INTEGRATION_MODE": "production", "ENABLE_PERFORMANCE_ALERTS": "false"})
    assert quiet.integration_mode == "production" and quiet.enable_performance_alerts is False
    assert load_settings(env_for(quiet)) == quiet, "children of hive up get the same settings"


def test_two_variables_naming_different_integration_modes_are_refused_naming_both() -> None:
    with pytest.raises(SettingsError, match=r"ORCHESTRATION_MODE=production.*INTEGRATION_MODE=development"):
        load_settings({"ORCHESTRATION_MODE": "production", "INTEGRATION_MODE": "development"})


def test_the_gateway_refuses_to_run_in_production_without_a_token() -> None:
    with pytest.raises(SettingsError, match="requires HIVE_API_TOKEN"):
        GatewayService(load_settings({"INTEGRATION_MODE": "production"}))
    GatewayService.check_settings(load_settings({"INTEGRATION_MODE": "production", "HIVE_API_TOKEN": "t"}))


@pytest.mark.parametrize(
    ("variable", "written", "kept"),
    [
        ("ROUTING_ACCURACY_TARGET", "0.95", 95.0),
        ("ROUTING_ACCURACY_TARGET", "95", 95.0),
        ("ROUTING_ACCURACY_TARGET", "1", 100.0),
        ("LOAD_BALANCING_EFFICIENCY_TARGET", "0.85", 0.85),
        ("LOAD_BALANCING_EFFICIENCY_TARGET", "85", 0.85),
        ("WORKFLOW_COMPLETION_TARGET", "0.9", 0.9),
        ("WORKFLOW_COMPLETION_TARGET", "90", 0.9),
    ],
)
def test_a_share_target_is_a_ratio_up_to_1_and_a_percent_above(
    variable: str, written: str, kept: float
) -> None:
    field = {
        "ROUTING_ACCURACY_TARGET": "routing_accuracy_target",
        "LOAD_BALANCING_EFFICIENCY_TARGET": "load_balancing_efficiency_target",
        "WORKFLOW_COMPLETION_TARGET": "workflow_completion_target",
    }[variable]
    assert getattr(load_settings({variable: written}), field) == pytest.approx(kept)


@pytest.mark.parametrize("written", ["150", "-0.5"])
def test_a_share_beyond_100_percent_is_refused_naming_its_variable(written: str) -> None:
    with pytest.raises(SettingsError, match=f"ROUTING_ACCURACY_TARGET={float(written)!r}"):
        load_settings({"ROUTING_ACCURACY_TARGET": written})


def test_the_gateway_listens_on_8000_by_default_as_the_specification_curls_it() -> None:
    assert Settings().gateway_port == 8000


def test_a_webhook_that_is_not_an_http_url_is_refused() -> None:
    with pytest.raises(SettingsError, match="PERFORMANCE_ALERT_WEBHOOK_URL"):
        load_settings({"PERFORMANCE_ALERT_WEBHOOK_URL": "hooks.example.com/alert"})


def test_unknown_hive_like_variables_are_named_with_the_closest_known_one() -> None:
    env = {
        "ENABLE_CIRCUIT_BREAKER": "false",
        "HIVE_GATEWAY_PORT": "8000",
        "ROUTING_ACCURACY_TARGETS": "0.9",
        "MONITORING_INTERVAL": "5",
        "ENABLE_PREDICTIVE_SCALING": "true",
        "METRICS_RETENTION_HOURS": "72",
        "HIVE_HOME": "/tmp/x",
        "PATH": "/usr/bin",
        "HOME": "/root",
        "VIRTUAL_ENV": "/venv",
        "PYTHONPATH": ".",
    }
    found = {n.variable: n.closest for n in environment_notices(env)}
    assert found == {
        "ENABLE_CIRCUIT_BREAKER": "ENABLE_CIRCUIT_BREAKERS",
        "HIVE_GATEWAY_PORT": "GATEWAY_PORT",
        "ROUTING_ACCURACY_TARGETS": "ROUTING_ACCURACY_TARGET",
        "MONITORING_INTERVAL": "MONITORING_INTERVAL_SECONDS",
    }
    assert all(n.level == "warning" for n in environment_notices(env))
    assert all("did you mean" in n.message for n in environment_notices(env))
