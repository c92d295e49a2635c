"""What the agent SDK raises for its users: a failure retrying cannot fix, fencing, a setup mistake."""

from __future__ import annotations

from shared.errors import HiveError


class NonRetryableError(HiveError):
    """Raise from a handler when retrying cannot help (bad input): the task fails for good."""


class AttemptSuperseded(HiveError):
    """This agent may no longer report on the attempt (fencing); the reason says why."""


class AgentSetupError(HiveError, ValueError):
    """An agent built in a way that cannot work (no handler, a bad capability...); the message says
    what to change."""
