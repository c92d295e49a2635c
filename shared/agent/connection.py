"""Where and as whom an agent connects: arguments first, then the environment, then the default.

The environment is the one every Hive process reads: ``NATS_URL``; ``HIVE_AGENT_CREDENTIALS`` (a
file of agent passwords: the agent connects as its own user ``agent-<id>``) or else
``NATS_USER``/``NATS_PASSWORD``; without either, no credentials (a NATS without authentication).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from shared.credentials import CredentialsError, load_passwords
from shared.permissions import agent_user

DEFAULT_NATS_URL: Final = "nats://127.0.0.1:4222"


@dataclass(frozen=True)
class Connection:
    """A NATS address and the credentials to use there (None: none)."""

    url: str = DEFAULT_NATS_URL
    user: str | None = None
    password: str | None = None


def connection_for(
    agent_id: str,
    *,
    url: str | None = None,
    user: str | None = None,
    password: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Connection:
    """The connection of agent `agent_id`: what is given, the rest from `env` (default: os.environ).

    Raises CredentialsError when HIVE_AGENT_CREDENTIALS names a file without this agent's user.
    """
    source = os.environ if env is None else env
    url = url or source.get("NATS_URL") or DEFAULT_NATS_URL
    if user is not None:
        return Connection(url, user, password)
    credentials_file = source.get("HIVE_AGENT_CREDENTIALS", "")
    if credentials_file:
        own = agent_user(agent_id)
        found = load_passwords(credentials_file).get(own)
        if found is None:
            raise CredentialsError(
                f"no password for {own} in {credentials_file} (HIVE_AGENT_CREDENTIALS): "
                f"add it with 'hive auth agent {agent_id}'"
            )
        return Connection(url, own, found)
    if source.get("NATS_USER"):
        return Connection(url, source["NATS_USER"], source.get("NATS_PASSWORD", ""))
    return Connection(url)
