"""``GATEWAY_WORKERS=auto``: the CPUs a process may use, from sample cgroup files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.cli.cpus import available_cpus, cgroup_cpu_limit, quota_v1, quota_v2, usable_cpus


def _write(root: Path, relative: str, name: str, text: str) -> None:
    directory = root / relative
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(text)


@pytest.mark.parametrize(
    ("cpu_max", "cpus"),
    [
        ("200000 100000\n", 2.0),
        ("150000 100000", 1.5),
        ("max 100000\n", None),
        ("50000 100000", 0.5),
    ],
)
def test_a_v2_cpu_max_reads_as_cpus(cpu_max: str, cpus: float | None) -> None:
    assert quota_v2(cpu_max) == cpus


def test_a_v1_quota_reads_as_cpus_and_minus_one_as_none() -> None:
    assert quota_v1("300000\n", "100000\n") == 3.0
    assert quota_v1("-1\n", "100000\n") is None


def test_a_container_limited_by_cgroup_v2_counts_its_quota(tmp_path: Path) -> None:
    """Inside a container the process's own cgroup is the root of the mount (``0::/``)."""
    _write(tmp_path, "", "cpu.max", "400000 100000\n")
    assert cgroup_cpu_limit("0::/\n", tmp_path) == 4.0


def test_a_parents_quota_bounds_a_child_without_one(tmp_path: Path) -> None:
    _write(tmp_path, "kubepods.slice", "cpu.max", "200000 100000\n")
    _write(tmp_path, "kubepods.slice/pod1/gateway", "cpu.max", "max 100000\n")
    assert cgroup_cpu_limit("0::/kubepods.slice/pod1/gateway\n", tmp_path) == 2.0


def test_the_smallest_quota_on_the_way_up_wins(tmp_path: Path) -> None:
    _write(tmp_path, "a", "cpu.max", "800000 100000\n")
    _write(tmp_path, "a/b", "cpu.max", "300000 100000\n")
    assert cgroup_cpu_limit("0::/a/b\n", tmp_path) == 3.0


def test_cgroup_v1_cfs_files_are_read_where_docker_mounts_them(tmp_path: Path) -> None:
    proc = "12:cpu,cpuacct:/docker/abc\n11:memory:/docker/abc\n"
    _write(tmp_path, "cpu,cpuacct", "cpu.cfs_quota_us", "250000\n")
    _write(tmp_path, "cpu,cpuacct", "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_limit(proc, tmp_path) == 2.5


def test_no_quota_anywhere_is_none(tmp_path: Path) -> None:
    _write(tmp_path, "", "cpu.max", "max 100000\n")
    assert cgroup_cpu_limit("0::/\n", tmp_path) is None
    assert cgroup_cpu_limit("0::/\n", tmp_path / "absent") is None


@pytest.mark.parametrize(
    ("affinity", "limit", "workers"),
    [(8, None, 8), (8, 2.0, 2), (8, 2.5, 2), (2, 6.0, 2), (8, 0.5, 1), (1, None, 1)],
)
def test_workers_are_the_cpus_rounded_down_and_never_none(
    affinity: int, limit: float | None, workers: int
) -> None:
    assert usable_cpus(affinity, limit) == workers


def test_this_machine_has_at_least_one_and_no_more_than_its_affinity() -> None:
    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))


def test_every_worker_gets_the_role_host_and_port_serve_was_given() -> None:
    """``serve --workers 2 --role api``: options given on the command line reach the workers,
    which read their settings from the environment the supervisor gives them."""
    from gateway.cli.supervisor import worker_env
    from gateway.settings import Settings

    settings = Settings(host="127.0.0.2", port=9123, role="api")
    env = worker_env(settings, "redis://127.0.0.1:7000/0", None)
    assert (env["GATEWAY_ROLE"], env["GATEWAY_HOST"], env["GATEWAY_PORT"]) == (
        "api",
        "127.0.0.2",
        "9123",
    )
    assert env["GATEWAY_WORKERS"] == "1"
    assert env["GATEWAY_REDIS_URL"] == "redis://127.0.0.1:7000/0"
