"""``hive auth``: the NATS users of a Hive (``<HIVE_HOME>/auth``): add agents, hand out credentials.

``hive up`` creates the admin, the five services and its simulated agents; agents of your own need
a user each (``agent-<id>``), which ``hive auth agent`` adds; a running ``hive up`` notices and has
nats-server load them (existing connections stay).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from shared.credentials import CredentialsError, CredentialStore, write_private
from shared.embedded import ClusterSpec, server_config
from shared.ids import InvalidIdError
from shared.permissions import ADMIN, SERVICES, UnknownUser, agent_user
from shared.settings import SettingsError, load_settings


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("auth", help="NATS users and credentials of this Hive (HIVE_HOME/auth)")
    sub = parser.add_subparsers(dest="auth_command", required=True)
    init = sub.add_parser("init", help="create the admin's and the services' credentials (kept if present)")
    init.set_defaults(func=init_users)
    agent = sub.add_parser("agent", help="add agents: user agent-<id> each, allowed to act only as itself")
    agent.add_argument("agent_ids", nargs="+", metavar="AGENT_ID")
    agent.set_defaults(func=add_agents)
    env = sub.add_parser("env", help="print export lines (NATS_USER, NATS_PASSWORD) for a user")
    env.add_argument("user", help="admin, a service name or agent-<id>")
    env.set_defaults(func=print_env)


def _store() -> CredentialStore:
    return CredentialStore(load_settings().hive_home)


COMPOSE_ROUTES = ("nats-1:6222", "nats-2:6222", "nats-3:6222")
"""The route addresses of compose.yaml's three NATS nodes."""


def compose_nats_config(store: CredentialStore) -> Path:
    """The configuration of compose.auth.yaml's NATS nodes: accounts, users, authenticated routes.

    Node name, store and monitoring port stay on each node's command line.
    """
    path = store.dir / "nats-compose.conf"
    cluster = ClusterSpec(
        name="hive", listen="0.0.0.0:6222", routes=COMPOSE_ROUTES, route_password=store.route_password()
    )
    write_private(path, server_config(users_include=store.users_conf.name, cluster=cluster))
    return path


def init_users(_args: argparse.Namespace) -> int:
    try:
        store = _store()
        store.ensure([ADMIN, *SERVICES])
        compose = compose_nats_config(store)
    except (SettingsError, CredentialsError, OSError) as exc:
        print(f"hive auth: {exc}", file=sys.stderr)
        return 2
    print(f"Users admin, {', '.join(SERVICES)}: credentials in {store.path}")
    print(f"One env file per user (NATS_USER, NATS_PASSWORD): {store.env_dir}")
    print(f"nats-server users (include in the HIVE account): {store.users_conf}")
    print(f"NATS nodes of compose.auth.yaml: {compose}")
    return 0


def add_agents(args: argparse.Namespace) -> int:
    try:
        store = _store()
        store.ensure_agents(args.agent_ids)
    except (SettingsError, CredentialsError, InvalidIdError, UnknownUser, OSError) as exc:
        print(f"hive auth: {exc}", file=sys.stderr)
        return 2
    users = ", ".join(agent_user(agent_id) for agent_id in args.agent_ids)
    print(f"Agent users {users}: credentials in {store.agents_path}")
    print(f"  simulated agents: HIVE_AGENT_CREDENTIALS={store.agents_path} hive agent ...")
    print(f'  one agent process (SDK): eval "$(hive auth env {agent_user(args.agent_ids[0])})"')
    print("A running 'hive up' has nats-server load them within a second.")
    return 0


def print_env(args: argparse.Namespace) -> int:
    try:
        credentials = _store().credentials(args.user)
    except (SettingsError, CredentialsError, OSError) as exc:
        print(f"hive auth: {exc}", file=sys.stderr)
        return 2
    print(f"export NATS_USER={shlex.quote(credentials.user)}")
    print(f"export NATS_PASSWORD={shlex.quote(credentials.password)}")
    return 0
