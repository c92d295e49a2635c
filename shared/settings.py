"""Settings from environment variables, each with a documented default.

``SETTINGS_DOC`` is the single table of variables; the README's configuration section is
generated from it by ``hive config`` so the two never drift.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Annotated, Final, Literal

import msgspec
from msgspec import Meta

from shared.domain.routing.keys import LimitError, parse_concurrency_limits, parse_rate_limits
from shared.domain.routing.separation import DEFAULT_CONFIDENCE
from shared.errors import HiveError
from shared.events import OrchestrationMode, RoutingStrategy

IntegrationMode = Literal["development", "production"]
INTEGRATION_MODES: Final[tuple[str, ...]] = ("development", "production")

PROFILE_DEFAULTS: Final[dict[str, dict[str, object]]] = {
    "development": {},
    "production": {"enable_performance_alerts": True},
}
"""What an integration mode changes, for the variables the environment does not set. Production also
requires HIVE_API_TOKEN at the gateway (``hive up`` generates one; see ``requires_api_token``)."""

SHARE_TARGETS: Final[dict[str, float]] = {
    "routing_accuracy_target": 100.0,
    "load_balancing_efficiency_target": 1.0,
    "workflow_completion_target": 1.0,
}
"""Targets that are shares, with the scale Hive keeps them in (100: percent, 1: ratio). Each may be
written either way: a value <= 1 is a ratio (0.95 is 95%), a value above 1 a percent (95 is 95%)."""


class SettingsError(HiveError, ValueError):
    """An environment variable holds a value Hive cannot use."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    nats_url: str = "nats://127.0.0.1:4222"
    nats_user: str = ""
    nats_password: str = ""
    agent_credentials: str = ""
    hive_home: str = ".hive"
    instance: str = ""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    integration_mode: IntegrationMode = "development"
    orchestration_mode: OrchestrationMode = "standard"
    default_routing_strategy: RoutingStrategy = "adaptive"
    routing_confidence: Annotated[float, Meta(gt=0.5, lt=1)] = DEFAULT_CONFIDENCE
    max_concurrent_workflows: Annotated[int, Meta(ge=1)] = 100
    enable_circuit_breakers: bool = True
    gateway_host: str = "127.0.0.1"
    gateway_port: Annotated[int, Meta(ge=0, le=65535)] = 8000
    metrics_port: Annotated[int, Meta(ge=-1, le=65535)] = -1
    api_token: str = ""
    gateway_max_body_bytes: Annotated[int, Meta(ge=1)] = 1_048_576
    gateway_header_timeout_s: Annotated[float, Meta(gt=0)] = 10.0
    gateway_body_timeout_s: Annotated[float, Meta(gt=0)] = 30.0
    gateway_keepalive_s: Annotated[float, Meta(gt=0)] = 5.0
    gateway_max_connections: Annotated[int, Meta(ge=1)] = 1000
    assign_wait_ms: Annotated[int, Meta(ge=0)] = 1000
    quality_wait_s: Annotated[float, Meta(ge=0)] = 10.0
    concurrency_limits: str = ""
    rate_limits: str = ""
    heartbeat_interval_s: Annotated[float, Meta(gt=0)] = 0.5
    heartbeat_missed_limit: Annotated[int, Meta(ge=1)] = 3
    disconnect_grace_s: Annotated[float, Meta(ge=0)] = 0.5
    task_timeout_grace_s: Annotated[float, Meta(ge=0)] = 0.5
    recovery_tick_s: Annotated[float, Meta(gt=0, le=10)] = 0.1
    stall_after_s: Annotated[float, Meta(gt=0)] = 3.0
    breaker_failure_threshold: Annotated[float, Meta(gt=0, le=1)] = 0.5
    breaker_window_size: Annotated[int, Meta(ge=1, le=100)] = 20
    breaker_window_s: Annotated[float, Meta(gt=0)] = 60.0
    breaker_min_calls: Annotated[int, Meta(ge=1, le=100)] = 10
    breaker_open_s: Annotated[float, Meta(ge=0)] = 30.0
    breaker_half_open_probes: Annotated[int, Meta(ge=1, le=100)] = 3
    quarantine_s: Annotated[float, Meta(gt=0)] = 300.0
    snapshot_every_events: Annotated[int, Meta(ge=1)] = 20_000
    snapshot_min_interval_s: Annotated[float, Meta(ge=0)] = 30.0
    work_ack_wait_s: Annotated[float, Meta(gt=0)] = 30.0
    read_linger_s: Annotated[float, Meta(ge=0, le=1)] = 0.05
    work_max_deliver: Annotated[int, Meta(ge=1)] = 20
    duplicate_window_s: Annotated[float, Meta(gt=0)] = 120.0
    stream_max_age_s: Annotated[float, Meta(ge=0)] = 0.0
    query_retention_s: Annotated[float, Meta(ge=0)] = 604_800.0
    stream_replicas: Annotated[int, Meta(ge=1, le=5)] = 1
    enable_rebalancing: bool = True
    rebalance_after_s: Annotated[float, Meta(ge=0)] = 2.0
    rebalance_quality_tolerance: Annotated[float, Meta(ge=0, le=1)] = 0.05
    rebalance_interval_s: Annotated[float, Meta(gt=0, le=3600)] = 0.5
    enable_predictive_scaling: bool = True
    scale_window_s: Annotated[float, Meta(gt=0, le=3600)] = 60.0
    scale_target_utilisation: Annotated[float, Meta(gt=0, le=1)] = 0.8
    metrics_window_s: Annotated[float, Meta(gt=0, le=3600)] = 300.0
    monitoring_interval_seconds: Annotated[float, Meta(gt=0, le=3600)] = 10.0
    metrics_retention_hours: Annotated[float, Meta(gt=0, le=8760)] = 24.0
    enable_performance_alerts: bool = False
    performance_alert_webhook_url: str = ""
    task_assignment_latency_target_ms: Annotated[float, Meta(gt=0)] = 20.0
    load_balancing_efficiency_target: Annotated[float, Meta(ge=0, le=1)] = 0.97
    routing_accuracy_target: Annotated[float, Meta(ge=0, le=100)] = 95.0
    recovery_time_target_ms: Annotated[float, Meta(gt=0)] = 1500.0
    throughput_target_tps: Annotated[float, Meta(ge=0)] = 2000.0
    workflow_completion_target: Annotated[float, Meta(ge=0, le=1)] = 1.0

    def __post_init__(self) -> None:
        try:
            parse_concurrency_limits(self.concurrency_limits)
        except LimitError as exc:
            raise ValueError(f"CONCURRENCY_LIMITS: {exc}") from None
        try:
            parse_rate_limits(self.rate_limits)
        except LimitError as exc:
            raise ValueError(f"RATE_LIMITS: {exc}") from None
        url = self.performance_alert_webhook_url
        if url and not url.startswith(("http://", "https://")):
            raise ValueError(f"PERFORMANCE_ALERT_WEBHOOK_URL ({url!r}) must be an http:// or https:// URL")
        if self.breaker_min_calls > self.breaker_window_size:
            raise ValueError(
                f"BREAKER_MIN_CALLS ({self.breaker_min_calls}) must not exceed "
                f"BREAKER_WINDOW_SIZE ({self.breaker_window_size}): the breaker could never trip"
            )

    @property
    def requires_api_token(self) -> bool:
        """Production refuses to serve the HTTP API to anyone without the bearer token."""
        return self.integration_mode == "production"

    @property
    def nats_credentials(self) -> tuple[str | None, str | None]:
        """(user, password) for EventBus.connect; (None, None) without NATS_USER."""
        return (self.nats_user, self.nats_password) if self.nats_user else (None, None)

    @property
    def snapshot_dir(self) -> str:
        return os.path.join(self.hive_home, "snapshots")

    def instance_name(self, service: str) -> str:
        """A readable id for this process: the configured one, else service-host-pid."""
        return self.instance or f"{service}-{socket.gethostname()}-{os.getpid()}"


SETTINGS_DOC: Final[dict[str, tuple[str, str]]] = {
    "nats_url": ("NATS_URL", "NATS server(s) to connect to, comma-separated"),
    "nats_user": ("NATS_USER", "NATS user of this process (empty: connect without credentials)"),
    "nats_password": ("NATS_PASSWORD", "password of NATS_USER"),
    "agent_credentials": (
        "HIVE_AGENT_CREDENTIALS",
        "file of agent passwords: every agent (SDK, hive agent) connects as agent-<id> with its own",
    ),
    "hive_home": (
        "HIVE_HOME",
        "folder for the embedded nats-server store, projection snapshots and NATS credentials (auth/)",
    ),
    "instance": ("HIVE_INSTANCE", "name of this service instance (default: service-host-pid)"),
    "log_level": ("LOG_LEVEL", "debug, info, warning or error"),
    "integration_mode": (
        "INTEGRATION_MODE",
        "deployment profile: development, or production (the gateway requires HIVE_API_TOKEN, which "
        "'hive up' generates if unset; ENABLE_PERFORMANCE_ALERTS defaults to true)",
    ),
    "orchestration_mode": (
        "ORCHESTRATION_MODE",
        "routing mode: standard, high_performance, fault_tolerant, energy_efficient or emergency "
        "(production or development: standard, and sets INTEGRATION_MODE)",
    ),
    "default_routing_strategy": (
        "DEFAULT_ROUTING_STRATEGY",
        "routing strategy of tasks that name none: persona_cognitive_match, performance_optimized, "
        "load_balanced, capability_first, round_robin, adaptive, performance_weighted_persona, or "
        "one of the specification's names (see Routing)",
    ),
    "routing_confidence": (
        "ROUTING_CONFIDENCE",
        "adaptive routing: how sure (P(better), above 0.5, below 1) the learned posterior must be that "
        "an agent is better before it gets work a less loaded one could take; agents not told apart "
        "at it share the work",
    ),
    "max_concurrent_workflows": (
        "MAX_CONCURRENT_WORKFLOWS",
        "workflows running at once; more wait their turn",
    ),
    "enable_circuit_breakers": (
        "ENABLE_CIRCUIT_BREAKERS",
        "trip per-agent circuit breakers on failure rate",
    ),
    "gateway_host": ("GATEWAY_HOST", "interface the HTTP gateway binds"),
    "gateway_port": ("GATEWAY_PORT", "port of the HTTP gateway (0: any free port)"),
    "metrics_port": (
        "METRICS_PORT",
        "Prometheus port of non-gateway services (-1: off, 0: any free port)",
    ),
    "api_token": ("HIVE_API_TOKEN", "when set, the gateway requires 'Authorization: Bearer <token>'"),
    "gateway_max_body_bytes": (
        "GATEWAY_MAX_BODY_BYTES",
        "largest request body the gateway reads, on every route (413 beyond; 1 MiB is NATS's "
        "default max_payload)",
    ),
    "gateway_header_timeout_s": (
        "GATEWAY_HEADER_TIMEOUT_S",
        "a connection that has not sent a whole request head this long after opening (or after the "
        "first byte of its next request) is closed",
    ),
    "gateway_body_timeout_s": (
        "GATEWAY_BODY_TIMEOUT_S",
        "a request whose body has not arrived in full this long after its head is closed",
    ),
    "gateway_keepalive_s": (
        "GATEWAY_KEEPALIVE_S",
        "an idle connection between two requests is closed after this",
    ),
    "gateway_max_connections": (
        "GATEWAY_MAX_CONNECTIONS",
        "connections the gateway holds at once; one opened beyond gets a 503 and is closed",
    ),
    "assign_wait_ms": (
        "ASSIGN_WAIT_MS",
        "how long task/assign and failure/handle wait for the decision before answering 202",
    ),
    "quality_wait_s": (
        "QUALITY_WAIT_S",
        "how long a task without a deadline waits for an agent predicted to reach its "
        "expected_quality_threshold before it goes to the best available one (inf: wait for ever)",
    ),
    "concurrency_limits": (
        "CONCURRENCY_LIMITS",
        "per concurrency key pattern, at most this many tasks at once: pattern=max[:strategy],... "
        "(strategy queue, cancel_newest or cancel_oldest; e.g. repo-*=2,customer-42=5:cancel_oldest); "
        "limits set through /api/v1/limits/concurrency replace them pattern by pattern",
    ),
    "rate_limits": (
        "RATE_LIMITS",
        "token buckets per rate-limit key pattern: pattern=limit/period_seconds[:burst],... "
        "(e.g. openai=60/60: 60 units a minute); /api/v1/limits/rate replaces them pattern by pattern",
    ),
    "heartbeat_interval_s": ("HEARTBEAT_INTERVAL_S", "agent heartbeat period"),
    "heartbeat_missed_limit": (
        "HEARTBEAT_MISSED_LIMIT",
        "missed heartbeats before an agent is unresponsive",
    ),
    "disconnect_grace_s": (
        "DISCONNECT_GRACE_S",
        "an agent whose NATS connection closed is unresponsive unless it beats again within this",
    ),
    "task_timeout_grace_s": (
        "TASK_TIMEOUT_GRACE_S",
        "recovery fails an attempt this long after its timeout_s (the agent reports its own first)",
    ),
    "recovery_tick_s": ("RECOVERY_TICK_S", "how often recovery checks heartbeats, timeouts and breakers"),
    "stall_after_s": (
        "STALL_AFTER_S",
        "an agent that keeps beating but has not received an assignment this long after it was made "
        "is stalled: its unreceived work moves and it gets none until it catches up (inf: never)",
    ),
    "breaker_failure_threshold": (
        "BREAKER_FAILURE_THRESHOLD",
        "failure rate (0..1] over the window that opens an agent's circuit breaker",
    ),
    "breaker_window_size": ("BREAKER_WINDOW_SIZE", "calls in the breaker's sliding window (count-based)"),
    "breaker_window_s": (
        "BREAKER_WINDOW_S",
        "age beyond which a call leaves the breaker's window (time-based)",
    ),
    "breaker_min_calls": ("BREAKER_MIN_CALLS", "calls in the window before the failure rate is judged"),
    "breaker_open_s": ("BREAKER_OPEN_S", "seconds an open breaker waits before going half-open"),
    "breaker_half_open_probes": (
        "BREAKER_HALF_OPEN_PROBES",
        "tasks a half-open breaker lets through to decide between closing and re-opening",
    ),
    "quarantine_s": ("QUARANTINE_S", "how long the quarantine_agent recovery strategy keeps an agent out"),
    "snapshot_every_events": (
        "SNAPSHOT_EVERY_EVENTS",
        "events applied between two projection snapshots (also taken on a clean stop)",
    ),
    "snapshot_min_interval_s": (
        "SNAPSHOT_MIN_INTERVAL_S",
        "seconds at least between two snapshots (encoding one pauses the service briefly)",
    ),
    "work_ack_wait_s": ("WORK_ACK_WAIT_S", "seconds before an unacknowledged work event is redelivered"),
    "read_linger_s": (
        "READ_LINGER_S",
        "recovery, balancer, workflow and gateway read the log in bursts at most this far apart "
        "(0: each event as soon as it is stored); waiting for an answer reads at once (a gateway "
        "read: for the gateway's own writes and `after_seq`)",
    ),
    "work_max_deliver": (
        "WORK_MAX_DELIVER",
        "deliveries of a work event before it goes to the dead-letter queue",
    ),
    "duplicate_window_s": ("DUPLICATE_WINDOW_S", "JetStream de-duplication window for Nats-Msg-Id"),
    "stream_max_age_s": ("STREAM_MAX_AGE_S", "age after which events are discarded (0: keep forever)"),
    "query_retention_s": (
        "QUERY_RETENTION_S",
        "how long the gateway's query model keeps ended tasks and workflows (0: forever; see Read side)",
    ),
    "stream_replicas": ("STREAM_REPLICAS", "replicas of the event stream (3 in a cluster)"),
    "enable_rebalancing": (
        "ENABLE_REBALANCING",
        "the balancer moves assigned work an agent has not started to an idle capable agent",
    ),
    "rebalance_after_s": (
        "REBALANCE_AFTER_S",
        "how long an assigned attempt may wait unstarted before the balancer moves it (at least 1 s: "
        "a younger one may be running with its start report deferred)",
    ),
    "rebalance_quality_tolerance": (
        "REBALANCE_QUALITY_TOLERANCE",
        "a move's target may be predicted at most this share below the holder's quality",
    ),
    "rebalance_interval_s": (
        "REBALANCE_INTERVAL_S",
        "how often the balancer looks for unstarted work and re-evaluates scaling",
    ),
    "enable_predictive_scaling": (
        "ENABLE_PREDICTIVE_SCALING",
        "the balancer advises how many more agents each kind of work needs (scale recommendations)",
    ),
    "scale_window_s": (
        "SCALE_WINDOW_S",
        "window of the arrival rates behind scale recommendations; also how long before one is lowered",
    ),
    "scale_target_utilisation": (
        "SCALE_TARGET_UTILISATION",
        "utilisation (0..1] scale recommendations aim for at the measured arrival rate",
    ),
    "metrics_window_s": (
        "METRICS_WINDOW_S",
        "window (seconds) of /orchestration/metrics, performance/validate and the windowed gauges",
    ),
    "monitoring_interval_seconds": (
        "MONITORING_INTERVAL_SECONDS",
        "how often the gateway computes the figures, checks the targets (alerts), refreshes the "
        "windowed gauges and keeps a history sample",
    ),
    "metrics_retention_hours": (
        "METRICS_RETENTION_HOURS",
        "how long the gateway keeps its history samples (GET /orchestration/metrics/history)",
    ),
    "enable_performance_alerts": (
        "ENABLE_PERFORMANCE_ALERTS",
        "a target no longer met, or met again, appends system.performance_alert and logs a warning "
        "(default true in production)",
    ),
    "performance_alert_webhook_url": (
        "PERFORMANCE_ALERT_WEBHOOK_URL",
        "also POST each performance alert as JSON to this URL (empty: no webhook)",
    ),
    "task_assignment_latency_target_ms": (
        "TASK_ASSIGNMENT_LATENCY_TARGET_MS",
        "target of the p99 time from a task becoming routable to its assignment",
    ),
    "load_balancing_efficiency_target": (
        "LOAD_BALANCING_EFFICIENCY_TARGET",
        "target load-balancing efficiency (ratio, or percent above 1; see Balancer)",
    ),
    "routing_accuracy_target": (
        "ROUTING_ACCURACY_TARGET",
        "target share of tasks the router's first choice completed at the required quality "
        "(percent, or a ratio when <= 1: 0.95 is 95%)",
    ),
    "recovery_time_target_ms": (
        "RECOVERY_TIME_TARGET_MS",
        "target p95 time from a failure to its work running elsewhere",
    ),
    "throughput_target_tps": ("THROUGHPUT_TARGET_TPS", "target tasks completed per second"),
    "workflow_completion_target": (
        "WORKFLOW_COMPLETION_TARGET",
        "target share of ended workflows that completed (ratio, or percent above 1)",
    ),
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse(field_name: str, raw: str) -> object:
    default = getattr(Settings(), field_name)
    if isinstance(default, bool):
        low = raw.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        return raw
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            return raw
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            return raw
    return raw


CASE_INSENSITIVE: Final = frozenset({"integration_mode", "orchestration_mode"})
"""Values read in any case: the specification writes its integration mode ``PRODUCTION``."""


def integration_mode_named(orchestration_mode: str) -> str | None:
    """The integration mode an ORCHESTRATION_MODE value names (``production``, ``development``), if any.

    The specification sets ``ORCHESTRATION_MODE=production``: a deployment profile, not a routing mode.
    """
    value = orchestration_mode.strip().lower()
    return value if value in INTEGRATION_MODES else None


def _from_environment(source: Mapping[str, str]) -> dict[str, object]:
    values: dict[str, object] = {}
    for field_name, (var, _doc) in SETTINGS_DOC.items():
        if var in source and source[var] != "":
            raw = source[var].strip().lower() if field_name in CASE_INSENSITIVE else source[var]
            values[field_name] = _parse(field_name, raw)
    named = integration_mode_named(str(values.get("orchestration_mode", "")))
    if named is not None:
        chosen = values.get("integration_mode", named)
        if chosen != named:
            raise SettingsError(
                f"ORCHESTRATION_MODE={source['ORCHESTRATION_MODE']} names the integration mode {named}, "
                f"but INTEGRATION_MODE={source['INTEGRATION_MODE']}: set one of them"
            )
        values["integration_mode"] = named
        values["orchestration_mode"] = "standard"
    return values


def _as_share(field_name: str, value: object) -> object:
    """A share target written as a ratio (<= 1) or a percent (> 1), in the scale Hive keeps it in."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if not 0 <= value <= 100:
        var = SETTINGS_DOC[field_name][0]
        raise SettingsError(f"invalid {var}={value!r}: a share is a ratio (0..1) or a percent (1..100)")
    ratio = value if value <= 1 else value / 100
    return ratio * SHARE_TARGETS[field_name]


def load_settings(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Read settings from `env` (default: os.environ); raise SettingsError naming the variable.

    The integration mode's defaults (``PROFILE_DEFAULTS``) fill what neither `env` nor `overrides`
    sets; share targets are brought to their scale (``SHARE_TARGETS``).
    """
    source = os.environ if env is None else env
    values = _from_environment(source)
    values.update(overrides)
    profile = values.get("integration_mode", "development")
    for field_name, value in PROFILE_DEFAULTS.get(str(profile), {}).items():
        values.setdefault(field_name, value)
    for field_name in SHARE_TARGETS:
        if field_name in values:
            values[field_name] = _as_share(field_name, values[field_name])
    try:
        return msgspec.convert(values, Settings)
    except msgspec.ValidationError as exc:
        message = str(exc)
        for field_name, (var, _doc) in SETTINGS_DOC.items():
            if f"`$.{field_name}`" in message:
                raise SettingsError(f"invalid {var}={values.get(field_name)!r}: {message}") from exc
        raise SettingsError(message) from exc


def env_for(settings: Settings) -> dict[str, str]:
    """The environment variables that reproduce `settings` in a child process."""
    out: dict[str, str] = {}
    for field_name, (var, _doc) in SETTINGS_DOC.items():
        value = getattr(settings, field_name)
        out[var] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out
