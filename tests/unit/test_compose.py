"""compose.yaml's structure, checked without docker: cluster, replication, services, healthchecks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from services.cli.main import build_parser
from services.cli.stack import SERVICE_NAMES
from shared.settings import SETTINGS_DOC

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def test_three_nats_nodes_form_one_jetstream_cluster() -> None:
    services = compose()["services"]
    nodes = [name for name in services if name.startswith("nats-")]
    assert sorted(nodes) == ["nats-1", "nats-2", "nats-3"]
    for name in nodes:
        command = services[name]["command"]
        assert "-js" in command
        assert command[command.index("--cluster_name") + 1] == "hive"
        routes = command[command.index("--routes") + 1].split(",")
        assert sorted(routes) == [f"nats://nats-{i}:6222" for i in (1, 2, 3)]
        assert services[name]["volumes"], "JetStream needs persistent storage"
        assert "healthz" in " ".join(services[name]["healthcheck"]["test"])


def test_every_service_is_its_own_scalable_container_on_the_cluster() -> None:
    services = compose()["services"]
    for name in SERVICE_NAMES:
        service = services[name]
        assert service["command"] == ["python", "-m", f"services.{name}"]
        assert "container_name" not in service, "a fixed name would forbid --scale"
        env = service["environment"]
        assert sorted(env["NATS_URL"].split(",")) == [f"nats://nats-{i}:4222" for i in (1, 2, 3)]
        assert env["STREAM_REPLICAS"] == "3"
        assert all(var in {v for v, _ in SETTINGS_DOC.values()} for var in env), "unknown variable"
        assert set(service["depends_on"]) == {"nats-1", "nats-2", "nats-3"}
        check = service["healthcheck"]["test"]
        assert check[:4] == ["CMD", "hive", "health", "--service"] and check[4] == name
        if name != "gateway":
            assert "ports" not in service, "published ports would forbid --scale"


def test_the_healthcheck_command_exists() -> None:
    args = build_parser().parse_args(["health", "--service", "router", "--this-host"])
    assert args.service == "router" and args.this_host
