"""compose.auth.yaml, checked without docker: every file it names is what `hive auth init` writes,
and the NATS nodes' configuration is one nats-server accepts, with authenticated routes."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.cli.auth import COMPOSE_ROUTES
from services.cli.main import main
from services.cli.stack import SERVICE_NAMES
from shared.credentials import CredentialStore, load_passwords
from shared.embedded import nats_server_binary

ROOT = Path(__file__).resolve().parents[2]
HOME_IN_COMPOSE = "./.hive"


def load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return loaded


def on_host(path: str, home: Path) -> Path:
    """A compose path under ./.hive, as it is under `home`."""
    assert path.startswith(HOME_IN_COMPOSE + "/"), path
    return home / path[len(HOME_IN_COMPOSE) + 1 :]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HIVE_HOME", str(tmp_path))
    assert main(["auth", "init"]) == 0
    return tmp_path


def test_each_service_gets_only_its_own_users_credentials(home: Path) -> None:
    services = load("compose.auth.yaml")["services"]
    for name in SERVICE_NAMES:
        (env_file,) = services[name]["env_file"]
        lines = on_host(env_file, home).read_text().splitlines()
        assert lines[0] == f"NATS_USER={name}"
        assert lines[1] == f"NATS_PASSWORD={load_passwords(CredentialStore(home).path)[name]}"


def test_the_nats_nodes_require_credentials_and_authenticate_their_routes(home: Path) -> None:
    base, override = load("compose.yaml")["services"], load("compose.auth.yaml")["services"]
    nodes = sorted(name for name in base if name.startswith("nats-"))
    assert sorted(name for name in override if name.startswith("nats-")) == nodes
    assert [route.split(":")[0] for route in COMPOSE_ROUTES] == nodes
    for name in nodes:
        command = override[name]["command"]
        assert command[command.index("-n") + 1] == name
        assert command[command.index("-sd") + 1] == "/data" and "-js" in command
        (mount,) = override[name]["volumes"]
        source, target, mode = mount.split(":")
        assert mode == "ro"
        config = command[command.index("-c") + 1]
        assert config.startswith(target + "/")
        generated = on_host(source, home) / config[len(target) + 1 :]
        text = generated.read_text()
        assert "no_auth_user" not in text and "authorization: {user: route" in text
        checked = subprocess.run(
            [nats_server_binary(), "-t", "-c", str(generated)], capture_output=True, text=True, check=False
        )
        assert checked.returncode == 0, checked.stderr
