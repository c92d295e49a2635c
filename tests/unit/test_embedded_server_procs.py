"""The embedded nats-server's Go threads: half the cores, unless the environment says otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import embedded
from shared.embedded import GO_MAX_PROCS, machine_cores, server_environment, server_procs, usable_cores


def test_on_two_cores_the_server_runs_go_code_on_one_thread() -> None:
    assert server_procs(2) == 1


def test_an_unknown_or_single_core_count_still_gives_one_thread() -> None:
    assert server_procs(None) == 1
    assert server_procs(1) == 1


@given(st.integers(min_value=1, max_value=4096))
def test_the_server_gets_half_the_cores_and_at_least_one(cores: int) -> None:
    procs = server_procs(cores)
    assert 1 <= procs <= cores
    assert procs == max(1, cores // 2)


@given(st.dictionaries(st.text("ABCXYZ_", min_size=1, max_size=8), st.text(max_size=8), max_size=5))
def test_the_environment_is_passed_on_with_gomaxprocs_added(environ: dict[str, str]) -> None:
    environ.pop(GO_MAX_PROCS, None)
    env = server_environment(environ, 8)
    assert env == {**environ, GO_MAX_PROCS: "4"}


def test_a_gomaxprocs_set_in_the_environment_is_kept() -> None:
    assert server_environment({GO_MAX_PROCS: "3", "PATH": "/bin"}, 2) == {GO_MAX_PROCS: "3", "PATH": "/bin"}


def test_the_cores_are_those_the_process_may_run_on_without_a_cpu_quota() -> None:
    assert usable_cores(8, None) == 8
    assert usable_cores(8, "max 100000\n") == 8
    assert usable_cores(None, None) is None


def test_a_container_cpu_quota_below_the_cores_limits_them() -> None:
    assert usable_cores(64, "200000 100000\n") == 2
    assert usable_cores(64, "150000 100000") == 2  # 1.5 CPUs: rounded up
    assert usable_cores(64, "50000 100000") == 1
    assert usable_cores(None, "400000 100000") == 4
    assert usable_cores(2, "800000 100000") == 2


def test_an_unreadable_quota_is_ignored() -> None:
    assert usable_cores(4, "garbage") == 4
    assert usable_cores(4, "100000 0") == 4


@given(st.integers(min_value=1, max_value=512), st.integers(min_value=1, max_value=10**7))
def test_a_quota_gives_at_most_the_affinity_and_at_least_one_core(affinity: int, quota: int) -> None:
    cores = usable_cores(affinity, f"{quota} 100000")
    assert cores is not None
    assert 1 <= cores <= affinity


def test_without_a_cgroup_quota_file_the_cores_are_the_affinity(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(embedded, "CPU_MAX", tmp_path / "absent")
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2}, raising=False)
    assert machine_cores() == 3


def test_a_cgroup_quota_file_limits_the_cores(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    quota = tmp_path / "cpu.max"
    quota.write_text("100000 100000\n")
    monkeypatch.setattr(embedded, "CPU_MAX", quota)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2}, raising=False)
    assert machine_cores() == 1
