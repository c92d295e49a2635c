"""The NATS users of one Hive and their passwords, kept under ``<HIVE_HOME>/auth``.

``hive up`` generates them (random passwords) and hands each child process its own by
environment; ``hive auth`` adds agents and prints a user's variables. Files are readable by their
owner only (folder 0700, files 0600) and replaced atomically, under a lock, so two commands
adding users at once lose nothing:

* ``credentials.json``: every user and its password (``{"user": "password"}``);
* ``agents.json``: the same for agent users only, what ``hive agent`` needs
  (``HIVE_AGENT_CREDENTIALS``), so the agents' process never holds a service's or the admin's;
* ``nats-users.conf``: the users and their permissions, included by nats-server's configuration;
* ``env/<user>.env``: ``NATS_USER`` and ``NATS_PASSWORD`` of one user (a container's env_file);
* ``route-password``: what the nodes of a cluster authenticate their routes with;
* ``api-token``: the gateway's bearer token when ``hive up`` runs in production without
  HIVE_API_TOKEN.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from shared.errors import HiveError
from shared.permissions import AGENT_PREFIX, agent_user, permissions_for, render_users

CREDENTIAL_VARIABLES = ("NATS_USER", "NATS_PASSWORD", "HIVE_AGENT_CREDENTIALS")


def without_credentials(env: Mapping[str, str]) -> dict[str, str]:
    """`env` less the NATS credentials: for a child that connects to a server of its own (benchmarks)
    or gets its credentials otherwise, not the ones its parent happened to have exported."""
    return {name: value for name, value in env.items() if name not in CREDENTIAL_VARIABLES}


class CredentialsError(HiveError):
    """Credentials that are missing or unreadable; the message says what to do."""


@dataclass(frozen=True)
class NatsCredentials:
    user: str
    password: str


def new_password() -> str:
    """192 random bits, URL-safe (no quoting needed anywhere)."""
    return secrets.token_urlsafe(24)


def write_private(path: Path, text: str) -> None:
    """Write `text` readable by the owner only, replacing any previous file atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def load_passwords(path: str | os.PathLike[str]) -> dict[str, str]:
    """A ``{"user": "password"}`` file; raise CredentialsError saying what is wrong with it."""
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CredentialsError(f"credentials file {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise CredentialsError(f"credentials file {path} is unreadable: {exc}") from None
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in raw.items()
    ):
        raise CredentialsError(
            f'credentials file {path} must map user names to passwords: {{"user": "password"}}'
        )
    return dict(raw)


class CredentialStore:
    """Passwords of the Hive users of one HIVE_HOME; generated once, reused by later runs."""

    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.dir = Path(home) / "auth"

    @property
    def path(self) -> Path:
        return self.dir / "credentials.json"

    @property
    def agents_path(self) -> Path:
        return self.dir / "agents.json"

    @property
    def users_conf(self) -> Path:
        return self.dir / "nats-users.conf"

    @property
    def env_dir(self) -> Path:
        return self.dir / "env"

    def env_file(self, user: str) -> Path:
        return self.env_dir / f"{user}.env"

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self) -> dict[str, str]:
        return load_passwords(self.path) if self.exists() else {}

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)
        with open(self.dir / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def ensure(self, users: Iterable[str]) -> dict[str, str]:
        """Give every user in `users` a password (keeping existing ones) and write the files.

        Raises UnknownUser for a name that is no Hive role. Returns every user's password.
        """
        wanted = list(users)
        for user in wanted:
            permissions_for(user)
        with self._locked():
            passwords = self.load()
            for user in wanted:
                passwords.setdefault(user, new_password())
            write_private(self.path, json.dumps(passwords, indent=2, sort_keys=True) + "\n")
            agents = {u: p for u, p in passwords.items() if u.startswith(AGENT_PREFIX)}
            write_private(self.agents_path, json.dumps(agents, indent=2, sort_keys=True) + "\n")
            write_private(self.users_conf, render_users(passwords))
            self.env_dir.mkdir(exist_ok=True, mode=0o700)
            for user, password in passwords.items():
                if not self.env_file(user).is_file():
                    write_private(self.env_file(user), f"NATS_USER={user}\nNATS_PASSWORD={password}\n")
        return passwords

    def route_password(self) -> str:
        """The cluster routes' password, generated once."""
        path = self.dir / "route-password"
        with self._locked():
            if not path.is_file():
                write_private(path, new_password() + "\n")
            return path.read_text().strip()

    @property
    def api_token_path(self) -> Path:
        return self.dir / "api-token"

    def api_token(self) -> str:
        """The gateway's generated bearer token (production without HIVE_API_TOKEN), made once."""
        with self._locked():
            if not self.api_token_path.is_file():
                write_private(self.api_token_path, new_password() + "\n")
            return self.api_token_path.read_text().strip()

    def ensure_agents(self, agent_ids: Iterable[str]) -> dict[str, str]:
        return self.ensure(agent_user(agent_id) for agent_id in agent_ids)

    def credentials(self, user: str) -> NatsCredentials:
        password = self.load().get(user)
        if password is None:
            raise CredentialsError(f"no credentials for NATS user {user!r} in {self.path}")
        return NatsCredentials(user, password)
