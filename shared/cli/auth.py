"""``hive auth``: the NATS users of a Hive (``<HIVE_HOME>/auth``): add agents, hand out credentials.

``hive up`` creates the admin, the five services and its simulated agents; agents of your own need
a user each (``agent-<id>``), which ``hive auth agent`` adds; a running ``hive up`` notices and has
nats-server load them (existing connections stay).
"""

from __future__ import annotations

import argparse
import shlex
import sys

from shared.credentials import CredentialsError, CredentialStore
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


def init_users(_args: argparse.Namespace) -> int:
    try:
        store = _store()
        store.ensure([ADMIN, *SERVICES])
    except (SettingsError, CredentialsError, OSError) as exc:
        print(f"hive auth: {exc}", file=sys.stderr)
        return 2
    print(f"Users admin, {', '.join(SERVICES)}: credentials in {store.path}")
    print(f"nats-server users (include in the HIVE account): {store.users_conf}")
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
