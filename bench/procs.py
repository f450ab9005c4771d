"""Processes of the benchmark: start and stop by pid, CPU and memory from /proc, the machine's load.

Shared by ``bench/run.py`` and ``bench/peers.py``; nothing here knows what it starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Protocol

HZ = os.sysconf("SC_CLK_TCK")
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never an env proxy

# --- small helpers -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, dict[str, str], Any]:
    """One control-plane request (urllib, no proxies); JSON in and out."""
    assert url.startswith("http://127.0.0.1:"), url
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))  # noqa: S310
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            raw = resp.read()
            status, hdrs = resp.status, dict(resp.headers.items())
    except urllib.error.HTTPError as exc:
        raw, status, hdrs = exc.read(), exc.code, dict(exc.headers.items())
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return status, hdrs, parsed


def proc_stat(pid: int) -> tuple[int, float, int] | None:
    """(ppid, cpu seconds, start time in ticks) of a live process, from /proc/<pid>/stat."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = raw[raw.rfind(")") + 2 :].split()
    return int(rest[1]), (int(rest[11]) + int(rest[12])) / HZ, int(rest[19])


def proc_comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def children_of(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = proc_stat(int(entry))
            if st and st[0] == pid:
                out.append(int(entry))
    return out


def machine_busy_seconds() -> tuple[float, float]:
    """CPU seconds all cores spent busy since boot (user+nice+system+irq+softirq), and those
    the hypervisor gave to other machines while this one wanted them (steal): on a shared host
    steal slows every process of a run alike, so it is reported apart from other processes."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    v = [int(x) for x in fields]
    steal = v[7] if len(v) > 7 else 0
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / HZ, steal / HZ


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


# --- processes -----------------------------------------------------------------------------------


class Proc:
    """A server this run started; stopped by its own pid only."""

    def __init__(self, name: str, args: list[str], log: Path, env: dict[str, str] | None = None):
        self.name, self.log_path = name, log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(  # noqa: S603 - fixed argv
            args,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(log.parent),
            start_new_session=True,
        )
        self.pid = self.popen.pid

    def pids(self) -> list[int]:
        return [self.pid, *children_of(self.pid)]

    def cpu(self) -> float:
        return sum((proc_stat(p) or (0, 0.0, 0))[1] for p in self.pids())

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._log.close()


class CpuSource(Protocol):
    def cpu(self) -> float: ...


class ProcGroup:
    """Several processes serving as one (e.g. one port, SO_REUSEPORT): their CPU summed."""

    def __init__(self, procs: list[Proc]) -> None:
        self.procs = procs

    def cpu(self) -> float:
        return sum(p.cpu() for p in self.procs)


def wait_http(
    url: str, proc: Proc | None, timeout: float = 30.0, ok: tuple[int, ...] = (200,)
) -> None:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited early; see {proc.log_path}")
        try:
            status, _, _ = http("GET", url, timeout=2)
            if status in ok:
                return
            last = status
        except OSError as exc:
            last = exc
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer in {timeout} s (last: {last})")


def serving_processes(procs: list[Proc]) -> int:
    """How many processes serve for ``procs``: each one, or, for a single supervisor, its
    children (the workers; the bench gives the gateway its own Redis)."""
    if len(procs) == 1:
        return len(children_of(procs[0].pid)) or 1
    return sum(p.alive() for p in procs)


def wait_every_process(
    url: str, procs: list[Proc], count: int, timeout: float = 60.0, ok: tuple[int, ...] = (200,)
) -> int:
    """Wait until ``count`` processes serve ``url``'s port (SO_REUSEPORT); how many probes it
    took.

    :func:`serving_processes` must count ``count``; then ``16 * count`` probes in a row, each
    on a new connection (the kernel spreads connections over the processes' sockets), must
    each answer within 2 s. A process not yet accepting holds the connections its socket is
    dealt: one that never answers breaks the run. The chance that 16 * N connections all miss
    one socket of N is (1 - 1/N) ** (16 * N): 2e-10 for N = 2, below e**-16 (1e-7) for any N.
    (``serve --workers`` logs ``supervisor_ready`` when every worker
    answers, but at info level, and the bench runs its gateways at warning: the access log of
    every request would cost CPU the bare servers do not spend.)"""
    deadline = time.monotonic() + timeout
    streak, probes = 0, 0
    last: int | OSError | None = None
    while streak < 16 * count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url}: {count} processes did not all answer (last: {last})")
        for proc in procs:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited early; see {proc.log_path}")
        serving = serving_processes(procs)
        probes += 1
        try:
            last, _, _ = http("GET", url, timeout=2)  # urllib: a new connection each time
        except OSError as exc:
            last = exc
        streak = streak + 1 if serving >= count and last in ok else 0
        if not streak:
            time.sleep(0.05)
    return probes


# --- load monitor -------------------------------------------------------------------------------


class Monitor(threading.Thread):
    """Samples load average and which other processes use CPU while the benchmark runs."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop_event = threading.Event()
        self.samples: list[list[float]] = []
        self.first: dict[int, tuple[float, str]] = {}
        self.last: dict[int, tuple[float, str]] = {}
        self.me = os.getpid()
        self.boot_ticks_at_start = 0

    def _ours(self, pid: int, table: dict[int, int]) -> bool:
        seen = 0
        while pid > 1 and seen < 64:
            if pid == self.me:
                return True
            pid = table.get(pid, 1)
            seen += 1
        return False

    def scan(self) -> None:
        table: dict[int, int] = {}
        stats: dict[int, tuple[float, int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                st = proc_stat(int(entry))
                if st:
                    table[int(entry)] = st[0]
                    stats[int(entry)] = (st[1], st[2])
        for pid, (cpu, start) in stats.items():
            if self._ours(pid, table):
                continue
            if pid not in self.first:
                # a process born during the run counts from zero
                base = 0.0 if start > self.boot_ticks_at_start else cpu
                self.first[pid] = (base, proc_comm(pid))
            self.last[pid] = (cpu, self.first[pid][1])

    def run(self) -> None:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        self.boot_ticks_at_start = int(uptime * HZ)
        while not self.stop_event.is_set():
            self.samples.append(loadavg())
            with contextlib.suppress(Exception):
                self.scan()
            self.stop_event.wait(5.0)

    def report(self) -> dict[str, Any]:
        used: dict[int, tuple[float, str]] = {}
        for pid, (cpu, name) in self.last.items():
            delta = cpu - self.first[pid][0]
            if delta > 0.05:
                used[pid] = (delta, name)
        by_name: dict[str, float] = {}
        for delta, name in used.values():
            by_name[name] = by_name.get(name, 0.0) + delta
        busiest = sorted(by_name.items(), key=lambda item: -item[1])[:10]
        ones = [s[0] for s in self.samples]
        return {
            "loadavg_1m_min": min(ones) if ones else None,
            "loadavg_1m_max": max(ones) if ones else None,
            "loadavg_1m_mean": round(sum(ones) / len(ones), 2) if ones else None,
            "other_processes_using_cpu": len(used),
            "other_cpu_seconds_by_command": {k: round(v, 1) for k, v in busiest},
        }
