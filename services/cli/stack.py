"""A whole Hive on one machine: the embedded nats-server and every service as its own process.

``hive up`` runs one; the end-to-end tests and benchmarks run one on free ports in a temp folder.
Each service instance is ``python -m services.<name>`` with its settings in the environment, so it
is exactly what runs in production, only supervised from here: ``supervise`` restarts whatever
died (a service instance, nats-server on the same configuration, store and users, the ``hive agent``
process) and says what it restarted. With `auth`, nats-server requires
credentials: each service connects as its own user (``shared/permissions.py``), agents as theirs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from shared.credentials import CredentialStore, NatsCredentials, without_credentials
from shared.embedded import EmbeddedCluster, EmbeddedNats, EmbeddedNatsError, die_with_parent, free_port
from shared.permissions import ADMIN, SERVICES, agent_user
from shared.settings import Settings, env_for, load_settings

SERVICE_NAMES = SERVICES
FOREGROUND: tuple[str, ...] = ("router",)
"""The services an assignment waits for: never niced by ``background_nice``."""


@dataclass
class ServiceProcess:
    name: str
    index: int
    process: subprocess.Popen[bytes]
    log_file: IO[bytes]
    restarts: int = 0

    @property
    def instance(self) -> str:
        return f"{self.name}-{self.index}"


@dataclass(frozen=True)
class Restart:
    """Something ``Stack.supervise`` found dead and started again (or could not: `failed` says why)."""

    what: str
    exit_code: int
    failed: str = ""

    def describe(self) -> str:
        how = f"killed by signal {-self.exit_code}" if self.exit_code < 0 else f"exit code {self.exit_code}"
        if self.failed:
            return f"{self.what} exited ({how}); restarting it failed, trying again: {self.failed}"
        if self.what.startswith("nats-server"):
            return f"{self.what} exited ({how}); restarted it (same configuration, store and users)"
        return f"{self.what} exited ({how}); restarted it"


@dataclass
class Stack:
    """Supervises nats-server and the services; `settings` is what every child gets."""

    settings: Settings
    scale: dict[str, int] = field(default_factory=dict)
    services: tuple[str, ...] = SERVICE_NAMES
    nats_port: int = 4222
    log_dir: Path | None = None
    inherit_logs: bool = False
    nats: EmbeddedNats | None = None
    cluster: EmbeddedCluster | None = None
    cluster_size: int = 1
    auth: bool = False
    agent_ids: tuple[str, ...] = ()
    agent_prefix: str = "sim"
    """``hive agent --prefix``: the simulated agents are ``<prefix>-0`` ... (``agent_ids`` their ids)."""
    background_nice: int = 0
    """Niceness the services other than the router start with (``hive up --nice-background``,
    ``hive bench assign --nice-background``; 0: all alike, the default). On a machine with few
    cores the router then gets a core first when the others want one at the same moment (a reader
    catching up a burst, the gateway's write): the assignment latency's tail, at the cost of those
    services' own reaction (the gateway's answers, recovery's, the balancer's moves) under load.
    nats-server is never niced: every service waits on it."""
    processes: dict[str, ServiceProcess] = field(default_factory=dict)
    agent_process: subprocess.Popen[bytes] | None = None
    _passwords: dict[str, str] = field(default_factory=dict)
    _users_version: tuple[int, int, int] = (0, 0, 0)

    @property
    def home(self) -> Path:
        return Path(self.settings.hive_home)

    @property
    def nats_url(self) -> str:
        if self.cluster is not None:
            return self.cluster.url
        return f"nats://127.0.0.1:{self.nats_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://{self.settings.gateway_host}:{self.settings.gateway_port}"

    @property
    def credentials(self) -> CredentialStore:
        return CredentialStore(self.home)

    def credentials_of(self, user: str) -> NatsCredentials:
        """A user's credentials (``admin``, a service, ``agent-<id>``), once the stack has started."""
        return NatsCredentials(user, self._passwords[user])

    @property
    def admin(self) -> NatsCredentials:
        return self.credentials_of(ADMIN)

    def child_env(self, name: str, index: int) -> dict[str, str]:
        env = dict(os.environ)
        env.update(env_for(self.settings))
        env["NATS_URL"] = self.nats_url
        env["HIVE_INSTANCE"] = f"{name}-{index}"
        if name == "gateway":
            env["GATEWAY_PORT"] = str(self.settings.gateway_port + index)
            env["METRICS_PORT"] = "-1"  # it serves /metrics on its HTTP port
        elif self.settings.metrics_port > 0:
            env["METRICS_PORT"] = str(self.settings.metrics_port + self.metrics_offset(name, index))
        if self.auth:
            env["NATS_USER"] = name
            env["NATS_PASSWORD"] = self._passwords[name]
        return env

    def agents_env(self) -> dict[str, str]:
        """Environment of a ``hive agent`` process on this stack (its agents' credentials file)."""
        env = dict(without_credentials(os.environ), NATS_URL=self.nats_url, HIVE_HOME=str(self.home))
        if self.auth:
            env["HIVE_AGENT_CREDENTIALS"] = str(self.credentials.agents_path)
        return env

    def prepare_credentials(self) -> None:
        """Give the admin, every service and the known agents a password (reusing earlier ones)."""
        users = [ADMIN, *SERVICE_NAMES, *(agent_user(agent_id) for agent_id in self.agent_ids)]
        self._passwords = self.credentials.ensure(users)
        self._users_version = self._users_file_version()

    def _users_file_version(self) -> tuple[int, int, int]:
        """Changes with every rewrite (each one replaces the file) and with every user added."""
        stat = self.credentials.users_conf.stat()
        return stat.st_ino, stat.st_mtime_ns, stat.st_size

    def metrics_offset(self, name: str, index: int) -> int:
        """Position of an instance among those with a metrics port of their own (all but gateways):
        with METRICS_PORT=P, instances get P, P+1, ... in service order."""
        offset = 0
        for service in self.services:
            if service == "gateway":
                continue
            if service == name:
                return offset + index
            offset += self.scale.get(service, 1)
        return offset + index

    def metrics_endpoints(self) -> list[tuple[str, str]]:
        """(instance, URL of its Prometheus metrics) as the instances report them in their health."""
        body = self.health() or {}
        services = body.get("services", {})
        found: list[tuple[str, str]] = []
        if not isinstance(services, dict):
            return found
        for replies in services.values():
            for reply in replies if isinstance(replies, list) else []:
                port = reply.get("metrics_port") if isinstance(reply, dict) else None
                if isinstance(port, int) and port > 0:
                    host = self.settings.gateway_host if reply.get("service") == "gateway" else "127.0.0.1"
                    found.append((str(reply.get("instance")), f"http://{host}:{port}/metrics"))
        return sorted(found)

    def start_nats(self) -> None:
        users_file = None
        if self.auth:
            self.prepare_credentials()
            users_file = self.credentials.users_conf
        if self.cluster_size > 1:
            self.cluster = EmbeddedCluster(
                self.home / "nats", size=self.cluster_size, users_file=users_file
            ).start()
        else:
            self.nats = EmbeddedNats(self.home / "nats", port=self.nats_port, users_file=users_file).start()

    def reload_credentials(self) -> bool:
        """Make nats-server load the users again if ``hive auth`` changed them; True if it did.

        Raises EmbeddedNatsError if nats-server refused the new users (it keeps the old ones).
        """
        if not self.auth:
            return False
        try:
            version = self._users_file_version()
        except OSError:
            return False
        if version == self._users_version:
            return False
        self._users_version = version
        self._passwords = self.credentials.load()
        if self.nats is not None:
            self.nats.reload()
        if self.cluster is not None:
            self.cluster.reload()
        return True

    def spawn(self, name: str, index: int) -> ServiceProcess:
        log_dir = self.log_dir or self.home / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        log_file = open(log_dir / f"{name}-{index}.log", "ab")  # noqa: SIM115 - owned by the process record
        process = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            env=self.child_env(name, index),
            stdout=None if self.inherit_logs else log_file,
            stderr=None if self.inherit_logs else subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=self.child_setup(name),
        )
        record = ServiceProcess(name, index, process, log_file)
        previous = self.processes.get(record.instance)
        if previous is not None:
            record.restarts = previous.restarts + 1
            previous.log_file.close()
        self.processes[record.instance] = record
        return record

    def niceness(self, name: str) -> int:
        """What a service's process adds to its niceness when it starts."""
        return 0 if name in FOREGROUND else max(0, self.background_nice)

    def child_setup(self, name: str) -> Callable[[], None]:
        """Run in a service's process before it starts (``preexec_fn``): die with this supervisor,
        and take the niceness of its kind."""
        niceness = self.niceness(name)

        def setup() -> None:
            die_with_parent()
            if niceness:
                os.nice(niceness)

        return setup

    def start(self, wait_ready_s: float = 60.0) -> None:
        """Start nats-server and every service instance, then wait until all report healthy."""
        try:
            self.start_nats()
            for name in self.services:
                for index in range(self.scale.get(name, 1)):
                    self.spawn(name, index)
            if "gateway" in self.services:
                self.wait_ready(wait_ready_s)
        except BaseException:
            self.stop()  # leave no orphan processes behind a failed start
            raise

    def instance_counts(self) -> dict[str, int]:
        """How many instances of each service this stack runs."""
        return {name: self.scale.get(name, 1) for name in self.services}

    def expected_instances(self) -> int:
        return sum(self.instance_counts().values())

    def process_ids(self) -> dict[str, list[int]]:
        """Process ids of what this stack runs, by label: each service instance and nats-server
        (every node of a cluster under one label), for measuring what each costs."""
        found = {name: [proc.process.pid] for name, proc in sorted(self.processes.items())}
        servers = self.cluster.nodes if self.cluster is not None else [self.nats] if self.nats else []
        found["nats-server"] = [node.process.pid for node in servers if node.process is not None]
        return found

    def health(self) -> dict[str, object] | None:
        try:
            with urllib.request.urlopen(
                f"{self.gateway_url}/api/v1/orchestration/health", timeout=2
            ) as reply:
                body: dict[str, object] = json.loads(reply.read())
                return body
        except urllib.error.HTTPError as exc:
            try:
                body = json.loads(exc.read())
                return body
            except ValueError:
                return None
        except (OSError, ValueError):
            return None

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            body = self.health()
            if body is not None:
                services = body.get("services", {})
                count = sum(len(v) for v in services.values()) if isinstance(services, dict) else 0
                if body.get("status") == "ok" and count >= self.expected_instances():
                    return
            time.sleep(0.2)
        raise RuntimeError(
            f"Hive did not become healthy within {timeout}s; logs in {self.log_dir or self.home / 'logs'}"
        )

    def check_alive(self) -> None:
        """Raise, with the end of its log, if a service died while starting."""
        for record in self.processes.values():
            code = record.process.poll()
            if code is not None:
                log_path = Path(record.log_file.name)
                tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
                raise RuntimeError(f"{record.instance} exited with {code}; end of {log_path}:\n{tail}")

    def dead(self) -> list[ServiceProcess]:
        return [r for r in self.processes.values() if r.process.poll() is not None]

    def kill(self, instance: str) -> None:
        """SIGKILL one service instance (chaos)."""
        record = self.processes[instance]
        record.process.kill()
        record.process.wait()

    def restart(self, instance: str) -> ServiceProcess:
        record = self.processes[instance]
        if record.process.poll() is None:
            record.process.terminate()
            record.process.wait(15)
        return self.spawn(record.name, record.index)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the agents (they drain), then SIGTERM every service (they finish the event in hand),
        then stop nats-server."""
        self.stop_agents()
        for record in self.processes.values():
            if record.process.poll() is None:
                record.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for record in self.processes.values():
            remaining = max(0.1, deadline - time.monotonic())
            try:
                record.process.wait(remaining)
            except subprocess.TimeoutExpired:
                record.process.kill()
                record.process.wait()
            record.log_file.close()
        if self.nats is not None:
            self.nats.stop()
        if self.cluster is not None:
            self.cluster.stop()

    def supervise(self) -> list[Restart]:
        """Restart what died (dev mode): nats-server first (same configuration, store and users),
        then service instances, then the ``hive agent`` process; returns what was restarted, and why.

        A nats-server that will not start again (e.g. its port taken meanwhile) is reported as such
        and tried again at the next call; services and agents reconnect to it by themselves.
        """
        restarted: list[Restart] = []
        servers = self.cluster.nodes if self.cluster is not None else [self.nats] if self.nats else []
        for node in servers:
            code = node.process.poll() if node.process is not None else None
            if code is None:
                continue
            label = f"nats-server {node.server_name}" if self.cluster is not None else "nats-server"
            try:
                node.restart()
            except EmbeddedNatsError as exc:
                restarted.append(Restart(label, code, failed=str(exc)))
                continue
            restarted.append(Restart(label, code))
        for instance, record in list(self.processes.items()):
            code = record.process.poll()
            if code is not None:
                self.spawn(record.name, record.index)
                restarted.append(Restart(instance, code))
        if self.agent_process is not None:
            code = self.agent_process.poll()
            if code is not None:
                self.start_agents()
                restarted.append(Restart("hive agent", code))
        return restarted

    def start_agents(self) -> None:
        """The ``hive agent`` process running ``agent_ids`` (simulated agents, each as its own user)."""
        command = [sys.executable, "-m", "services.cli.main", "agent", "--count", str(len(self.agent_ids))]
        self.agent_process = subprocess.Popen(
            [*command, "--prefix", self.agent_prefix],
            env=self.agents_env(),
            start_new_session=True,
            preexec_fn=die_with_parent,
        )

    def stop_agents(self, timeout: float = 30.0) -> None:
        """SIGTERM: the agents drain (finish what they hold) and deregister."""
        process = self.agent_process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def local_stack(
    home: Path,
    *,
    scale: dict[str, int] | None = None,
    services: tuple[str, ...] = SERVICE_NAMES,
    cluster_size: int = 1,
    auth: bool = False,
    agent_ids: tuple[str, ...] = (),
    background_nice: int = 0,
    **settings: object,
) -> Stack:
    """A stack on free ports under `home` (tests and benchmarks); `auth` as ``hive up`` runs it."""
    nats_port = free_port()
    merged: dict[str, object] = {
        "hive_home": str(home),
        "gateway_port": free_port(),
        "nats_url": f"nats://127.0.0.1:{nats_port}",
    }
    merged.update(settings)
    if cluster_size > 1:
        merged["stream_replicas"] = cluster_size
    return Stack(
        settings=load_settings({}, **merged),
        scale=scale or {},
        services=services,
        nats_port=nats_port,
        cluster_size=cluster_size,
        auth=auth,
        agent_ids=agent_ids,
        background_nice=background_nice,
    )
