"""Every exception a user of Hive sees shares one base, and keeps the built-in base it had."""

from __future__ import annotations

import pytest

from services.gateway.errors import ApiError
from shared.agent import AgentSetupError
from shared.agent.sdk import AttemptSuperseded, NonRetryableError
from shared.bus import ConcurrencyConflict, EventTooDeep, EventTooLarge, NatsAuthError
from shared.client import HiveApiError, HiveConnectionError, HiveTimeoutError
from shared.command import KeepsChanging
from shared.credentials import CredentialsError
from shared.denials import PermissionDenied
from shared.domain.workflow_spec import WorkflowSpecError
from shared.embedded import EmbeddedNatsError
from shared.errors import HiveError
from shared.events import EventDecodeError
from shared.ids import InvalidIdError
from shared.permissions import UnknownUser
from shared.replay import ReplayError
from shared.settings import SettingsError

USER_FACING: list[tuple[type[Exception], type[Exception]]] = [
    (ApiError, Exception),
    (AttemptSuperseded, Exception),
    (NonRetryableError, Exception),
    (AgentSetupError, ValueError),
    (ConcurrencyConflict, Exception),
    (KeepsChanging, RuntimeError),
    (NatsAuthError, PermissionError),
    (CredentialsError, Exception),
    (PermissionDenied, Exception),
    (WorkflowSpecError, ValueError),
    (EmbeddedNatsError, RuntimeError),
    (EventDecodeError, ValueError),
    (EventTooLarge, ValueError),
    (EventTooDeep, ValueError),
    (InvalidIdError, ValueError),
    (UnknownUser, ValueError),
    (ReplayError, ValueError),
    (SettingsError, ValueError),
    (HiveApiError, Exception),
    (HiveConnectionError, Exception),
    (HiveTimeoutError, TimeoutError),
]


@pytest.mark.parametrize(("error", "builtin"), USER_FACING, ids=[e.__name__ for e, _ in USER_FACING])
def test_an_error_users_see_is_a_hive_error_and_still_its_builtin_kind(
    error: type[Exception], builtin: type[Exception]
) -> None:
    assert issubclass(error, HiveError)
    assert issubclass(error, builtin)
