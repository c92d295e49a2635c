"""Hive's Python client: ``from shared.client import HiveClient``.

    async with HiveClient("http://127.0.0.1:8000", token=os.environ.get("HIVE_API_TOKEN")) as hive:
        task = await hive.assign_task(TaskRequest(task_type="code_review", required_capabilities=["python"]))

Imports only ``httpx``, ``msgspec`` and ``shared.events``' value types.
"""

from shared.client.client import HiveClient
from shared.client.errors import HiveApiError, HiveConnectionError, HiveError, HiveTimeoutError
from shared.client.models import (
    Agent,
    AgentRegistration,
    BreakerResetDone,
    Cancelled,
    CircuitBreaker,
    CircuitBreakers,
    FailureEvent,
    FailureHandled,
    Health,
    LoadOptimization,
    Metrics,
    MetricsHistory,
    OptimizeRequest,
    Prediction,
    Predictions,
    RegisteredAgent,
    SystemMetrics,
    Task,
    TaskAssignment,
    TaskRequest,
    Validation,
    WorkflowAccepted,
    WorkflowChange,
    WorkflowRequest,
    WorkflowStatus,
    WorkflowSummary,
    WorkflowTask,
)
from shared.events import Persona, RetryPolicy

__all__ = [
    "Agent",
    "AgentRegistration",
    "BreakerResetDone",
    "Cancelled",
    "CircuitBreaker",
    "CircuitBreakers",
    "FailureEvent",
    "FailureHandled",
    "Health",
    "HiveApiError",
    "HiveClient",
    "HiveConnectionError",
    "HiveError",
    "HiveTimeoutError",
    "LoadOptimization",
    "Metrics",
    "MetricsHistory",
    "OptimizeRequest",
    "Persona",
    "Prediction",
    "Predictions",
    "RegisteredAgent",
    "RetryPolicy",
    "SystemMetrics",
    "Task",
    "TaskAssignment",
    "TaskRequest",
    "Validation",
    "WorkflowAccepted",
    "WorkflowChange",
    "WorkflowRequest",
    "WorkflowStatus",
    "WorkflowSummary",
    "WorkflowTask",
]
