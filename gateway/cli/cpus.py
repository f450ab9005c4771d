"""How many CPUs this process may really use, for ``GATEWAY_WORKERS=auto``.

``os.cpu_count()`` counts the machine's CPUs; a container limited to 2 of a 64-CPU node by its
cgroup CPU quota would start 64 workers that the quota then throttles. The count here is the
smallest of the CPU affinity (``taskset``, cpusets) and the quota of every cgroup the process is
in (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), rounded down as
Go's automaxprocs does (1.5 CPUs: 1 worker never throttled, not 2 that are), and at least 1.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def quota_v2(cpu_max: str) -> float | None:
    """CPUs allowed by a v2 ``cpu.max`` (``"200000 100000"`` is 2; ``"max 100000"`` none)."""
    quota, _, period = cpu_max.strip().partition(" ")
    if quota == "max" or not period:
        return None
    return int(quota) / int(period)


def quota_v1(cfs_quota_us: str, cfs_period_us: str) -> float | None:
    """CPUs allowed by v1 CFS files (a quota of ``-1`` is none)."""
    quota = int(cfs_quota_us.strip())
    if quota <= 0:
        return None
    return quota / int(cfs_period_us.strip())


def _ancestors(root: Path, relative: str) -> list[Path]:
    """``root/relative`` and each of its parents up to ``root``: a quota set on a parent
    cgroup bounds every child."""
    here = root / relative.strip("/")
    found = [here]
    while here != root:
        here = here.parent
        found.append(here)
    return found


def cgroup_cpu_limit(proc_cgroup: str, root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota of the cgroups named in ``proc_cgroup`` (the text of
    ``/proc/self/cgroup``) as mounted under ``root``; None when none is set or readable."""
    limits: list[float] = []
    for line in proc_cgroup.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, relative = rest.partition(":")
        if hierarchy == "0" and not controllers:  # v2, one unified hierarchy
            for directory in _ancestors(root, relative):
                text = _read(directory / "cpu.max")
                limit = quota_v2(text) if text else None
                limits += [limit] if limit else []
        elif "cpu" in controllers.split(","):  # v1, mounted as cpu or cpu,cpuacct
            for mount in (root / controllers, root / "cpu", root / "cpu,cpuacct"):
                for directory in _ancestors(mount, relative):
                    quota = _read(directory / "cpu.cfs_quota_us")
                    period = _read(directory / "cpu.cfs_period_us")
                    limit = quota_v1(quota, period) if quota and period else None
                    limits += [limit] if limit else []
    return min(limits) if limits else None


def usable_cpus(affinity: int, limit: float | None) -> int:
    """Workers for ``affinity`` CPUs under a quota of ``limit`` CPUs: rounded down, at least 1."""
    if limit is None:
        return max(1, affinity)
    return max(1, min(affinity, math.floor(limit)))


def available_cpus() -> int:
    """The CPUs this process may use, as ``GATEWAY_WORKERS=auto`` counts them."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS and Windows have no affinity call
        affinity = os.cpu_count() or 1
    text = _read(PROC_CGROUP)
    return usable_cpus(affinity, cgroup_cpu_limit(text) if text else None)
