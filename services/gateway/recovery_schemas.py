"""HTTP bodies of the recovery endpoints: failure reports, circuit breakers, failure prediction."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from services.gateway.failure_report import RecoveryMetricsOut, SystemImpactOut
from shared.domain.prediction import Prediction
from shared.events import FailureTypeIn, Id, RecoveryStrategyIn, SeverityIn


class FailureHandleRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A failure to handle: recovery picks the strategy from its type and severity.

    Takes the specification's FailureEvent as it is: ``event_id`` (Hive's ``incident_id``),
    ``error_message`` (``detail``), ``timestamp`` (ISO-8601 or epoch seconds) and enum values in
    either case (``AGENT_UNRESPONSIVE``, ``HIGH``). Where both names of one field are given they
    must agree.
    """

    failure_type: FailureTypeIn
    severity: SeverityIn = "medium"
    agent_id: Id | None = None
    task_id: Id | None = None
    workflow_id: Id | None = None
    """The failure concerns this workflow: the attempts in question are its tasks in flight."""
    session_id: Annotated[str, Meta(max_length=200)] | None = None
    """The agent session (as registered) the failure was seen in; a newer session is left alone."""
    detail: Annotated[str, Meta(max_length=2000)] = ""
    error_message: Annotated[str, Meta(max_length=2000)] = ""
    """The specification's name of ``detail``."""
    incident_id: Id | None = None
    """Your id for the incident (default: a new one); reporting the same id twice is a 409."""
    event_id: Id | None = None
    """The specification's name of ``incident_id``."""
    timestamp: str | float | None = None
    """When the failure happened (ISO-8601, e.g. 2025-07-28T19:30:00Z, or epoch seconds)."""
    recovery_strategy: RecoveryStrategyIn | None = None
    """The strategy to follow instead of the table's for the type and severity."""
    context: dict[str, Any] = {}
    """Anything else about the failure: kept on the incident."""


class FailureHandleResponse(msgspec.Struct, kw_only=True):
    incident_id: str
    status: Literal["handled", "reported"]
    """handled: recovery acted within ASSIGN_WAIT_MS (what it did is below); reported: not yet."""
    failure_type: str
    severity: str
    strategy: str
    actions: list[str]
    escalated: bool
    agent_id: str | None = None
    task_ids: list[str] = []
    detail: str = ""
    seq: int = 0
    recovery_success: bool = False
    """Recovery acted (status handled) and needed no human (not escalated)."""
    occurred_at: str | None = None
    """When the failure happened, as reported (ISO-8601 UTC)."""
    handled_timestamp: str = ""
    """When this answer was given (ISO-8601 UTC)."""
    recovery_metrics: RecoveryMetricsOut | None = None
    system_impact: SystemImpactOut | None = None
    improvement_recommendations: list[str] = []


class BreakerOut(msgspec.Struct, kw_only=True):
    agent_id: str
    agent_status: str
    status: Literal["closed", "open", "half_open"]
    failure_rate: float
    """Over the sliding window as it is now (closed), or when it opened (open)."""
    calls: int
    failures: int
    reason: str
    opened_ts: float
    retry_after_ts: float
    probes_allowed: int
    probes_assigned: int
    probe_successes: int
    probe_failures: int
    times_opened: int
    last_change_ts: float


class BreakerPolicyOut(msgspec.Struct, kw_only=True):
    enabled: bool
    failure_threshold: float
    window_size: int
    window_s: float
    min_calls: int
    open_s: float
    half_open_probes: int


class CircuitBreakersResponse(msgspec.Struct, kw_only=True):
    policy: BreakerPolicyOut
    counts: dict[str, int]
    breakers: list[BreakerOut]


class BreakerResetRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    requested_by: Annotated[str, Meta(max_length=200)] = "api"


class BreakerResetResponse(msgspec.Struct, kw_only=True):
    agent_id: str
    status: Literal["closed"]
    seq: int


class PredictResponse(msgspec.Struct, kw_only=True):
    generated_ts: float
    heartbeat_interval_s: float
    method: str
    predictions: dict[str, float]
    """agent id -> probability of failing within the horizon (the specification's map), riskiest
    first."""
    forecasts: list[Prediction]
    """The same agents riskiest first, each with its status, risk band and factors."""
    time_horizon_minutes: float
    """What each probability is over."""
    high_risk_agents: list[str]
    """Agents whose probability is above 0.7, riskiest first."""
    prediction_timestamp: str
    """``generated_ts`` as ISO-8601 UTC."""
