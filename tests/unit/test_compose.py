"""compose.yaml's structure, checked without docker: cluster, replication, services, healthchecks."""

from __future__ import annotations

import json
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


def mounted(service: dict[str, Any], target: str) -> Path:
    """The repository file or folder a service mounts at `target` (it must exist)."""
    for volume in service["volumes"]:
        source, _, rest = volume.partition(":")
        if rest.split(":")[0] == target:
            path = ROOT / source
            assert path.exists(), f"{source} is mounted at {target} but is not in the repository"
            return path
    raise AssertionError(f"nothing mounted at {target}")


def test_prometheus_scrapes_the_gateway_on_its_port_as_its_one_target() -> None:
    services = compose()["services"]
    gateway = services["gateway"]
    port = gateway["environment"]["GATEWAY_PORT"]
    assert port == "8000" and gateway["ports"] == ["8000:8000"], "the specification's curl lines use 8000"
    prometheus = services["prometheus"]
    config_file = mounted(prometheus, "/etc/prometheus/prometheus.yml")
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    config = yaml.safe_load(config_file.read_text())
    targets = [
        target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    ]
    assert targets == [f"gateway:{port}"]
    assert all(job.get("metrics_path", "/metrics") == "/metrics" for job in config["scrape_configs"])


def test_grafana_is_provisioned_with_the_prometheus_datasource_and_the_dashboard_folder() -> None:
    services = compose()["services"]
    grafana = services["grafana"]
    provisioning = mounted(grafana, "/etc/grafana/provisioning")
    dashboards = mounted(grafana, "/var/lib/grafana/dashboards")
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())["datasources"]
    assert [(s["type"], s["url"]) for s in sources] == [("prometheus", "http://prometheus:9090")]
    assert "9090:9090" in services["prometheus"]["ports"]
    providers = yaml.safe_load((provisioning / "dashboards" / "hive.yaml").read_text())["providers"]
    assert [p["options"]["path"] for p in providers] == ["/var/lib/grafana/dashboards"]
    boards = sorted(dashboards.glob("*.json"))
    assert [b.name for b in boards] == ["hive-orchestration.json"]
    uids = {t["datasource"]["uid"] for p in json.loads(boards[0].read_text())["panels"] for t in p["targets"]}
    assert uids == {sources[0]["uid"]}, "every query uses the provisioned datasource"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == "/var/lib/grafana/dashboards/hive-orchestration.json"
