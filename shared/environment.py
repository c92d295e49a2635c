"""What Hive says about its environment at start: variables it does not know, modes it read as others.

A mistyped variable (``ENABLE_CIRCUIT_BREAKER=false``) or one from the specification Hive spells
differently would otherwise be ignored without a word. Pure: every service and ``hive up`` log or
print what ``environment_notices`` returns.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Final, Literal

import msgspec

from shared.settings import SETTINGS_DOC, integration_mode_named

OTHER_KNOWN: Final = frozenset({"HIVE_PROFILE_DIR"})
"""Variables Hive reads that are not settings."""

KNOWN: Final = frozenset({var for var, _doc in SETTINGS_DOC.values()} | OTHER_KNOWN)

OWN_PREFIXES: Final = (
    "HIVE_",
    "ORCHESTRATION_",
    "INTEGRATION_",
    "ROUTING_",
    "LOAD_BALANCING_",
    "BREAKER_",
    "CIRCUIT_",
    "REBALANCE_",
    "SCALE_",
    "RECOVERY_",
    "WORKFLOW_",
    "HEARTBEAT_",
    "QUARANTINE_",
    "SNAPSHOT_",
    "GATEWAY_",
    "MONITORING_",
    "METRICS_",
    "PERFORMANCE_",
    "PREDICTIVE_",
    "ASSIGN_",
)
"""A variable starting with one of these is meant for Hive (other programs' variables are left alone)."""

OWN_SUFFIXES: Final = ("_TARGET", "_TARGET_MS", "_TARGET_TPS")

SIMILARITY: Final = 0.8
"""How close (difflib ratio) a name must be to a known one to count as a misspelling of it."""


class Notice(msgspec.Struct, frozen=True, kw_only=True):
    event: str
    """The structlog event name a service logs it under."""
    level: Literal["info", "warning"]
    message: str
    variable: str
    closest: str | None = None


def closest_known(name: str) -> str | None:
    """The known variable `name` most resembles (None when nothing is close)."""
    found = difflib.get_close_matches(name, sorted(KNOWN), n=1, cutoff=0.0)
    return found[0] if found else None


def meant_for_hive(name: str) -> bool:
    """A name Hive would own: its prefixes and suffixes, or close to one of its variables."""
    if name.startswith(OWN_PREFIXES) or name.endswith(OWN_SUFFIXES):
        return True
    return bool(difflib.get_close_matches(name, sorted(KNOWN), n=1, cutoff=SIMILARITY))


def unknown_variables(env: Mapping[str, str]) -> list[Notice]:
    notices = []
    for name in sorted(env):
        if name in KNOWN or not meant_for_hive(name):
            continue
        closest = closest_known(name)
        hint = f"; did you mean {closest}?" if closest else ""
        notices.append(
            Notice(
                event="unknown_environment_variable",
                level="warning",
                message=f"{name} is not a Hive variable and is ignored{hint} ('hive config' lists them)",
                variable=name,
                closest=closest,
            )
        )
    return notices


def environment_notices(env: Mapping[str, str]) -> list[Notice]:
    """Everything worth saying about `env` at start, in a stable order."""
    notices = []
    raw_mode = env.get("ORCHESTRATION_MODE", "")
    named = integration_mode_named(raw_mode)
    if named is not None:
        notices.append(
            Notice(
                event="orchestration_mode_is_an_integration_mode",
                level="info",
                message=f"ORCHESTRATION_MODE={raw_mode} is a deployment profile: INTEGRATION_MODE={named}, "
                "routing mode standard",
                variable="ORCHESTRATION_MODE",
                closest="INTEGRATION_MODE",
            )
        )
    return notices + unknown_variables(env)
