#!/usr/bin/env python
"""Benchmarks of runcomfy-gateway, each figure next to its baseline measured in the same run.

    .venv/bin/python bench/run.py          # full run, < 10 min on 2 cores: results/latest.json
    .venv/bin/python bench/run.py --quick  # smoke run, < 2 min: results/latest-quick.json

Starts, each as its own process, on 127.0.0.1 only: a Redis (the embedded redis-server, TCP), the
RunComfy simulator (no artificial delay), the gateway (``python -m gateway serve``), a bare aiohttp
server answering a fixed JSON from memory, the same server checking a key and reading the JSON
with one Redis script (the floor of any path served from Redis), a naive aiohttp pass-through
proxy to the simulator, and nginx as a reverse proxy to the simulator (if installed). Load comes
from separate processes: ``bench/loadgen.py`` (own async generator, per-request perf_counter
latencies), ``wrk --latency`` for the throughput scenario when wrk is installed, and
``bench/workload.py`` for the realistic client workload. Scenarios (see docs/benchmarks.md):

  1. submit, cache miss: direct to the simulator vs through the gateway (+ naive proxy, nginx)
     at concurrency 1, 16, 64 -> added latency p50/p99;
  2. submit cache hit and status poll of a completed job: gateway vs the Redis floor vs bare
     aiohttp vs nginx->simulator (+ naive proxy, direct simulator) at concurrency 16 and 64;
  3. upstream calls per job and cost for a realistic workload, direct vs through the gateway,
     with 1 and with many polling clients per job;
  4. gateway RSS and Redis used_memory per 10,000 in-flight jobs and per 10,000 cached results;
  5. peer gateways (LiteLLM, Portkey; bench/peers.py) in front of an OpenAI-compatible stub, at
     scenario 1's concurrencies: each one's added latency beside the gateway's;
  6. each Redis script's calls per request and microseconds inside Redis (SLOWLOG, INFO
     commandstats) for misses, hits and status polls at c=1;
  7. status polls and cache hits at c=16 and 64: ``serve --workers N`` (N usable CPUs) vs bare
     aiohttp and the Redis floor, each at N processes on one port (SO_REUSEPORT).

Scenarios 1 and 2 also measure two variants of the gateway at a few concurrencies: a team with
every limit set (the admission's real branches) and a gateway on redis-py (through a Sentinel)
instead of the pipelined connection.

Then targets PASS/MISS, a comparison with bench/results/previous.json when present, and (full
run, or ``--profile``) py-spy profiles of the gateway on the status and hit paths.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
sys.path.insert(0, str(ROOT))

from peers import (  # noqa: E402
    PEERS,
    LoadTarget,
    PeerUnavailable,
    cache_dir,
    chat_body,
    direct_target,
)
from procs import (  # noqa: E402
    CpuSource,
    Monitor,
    Proc,
    ProcGroup,
    cpu_model,
    free_port,
    http,
    loadavg,
    machine_busy_seconds,
    proc_stat,
    rss_kb,
    wait_every_process,
    wait_http,
)
from profiling import render_profile_text, summarise_profile  # noqa: E402
from report import (  # noqa: E402
    TARGET_LABELS,
    all_tables,
    compare_previous,
    evaluate_targets,
    markdown,
    num,
    peer_added,
    print_tables,
    ratio,
)
from rich.console import Console  # noqa: E402
from scriptstats import BENCH_CLIENT, commandstats, costs, script_names, slowest  # noqa: E402
from servers import FLOOR_KEY  # noqa: E402
from wrk import WRK_LUA, parse_wrk  # noqa: E402

console = Console(width=170)
PY = sys.executable
MODEL = "google/nano-banana/pro/text-to-image"
SIM_TOKEN = "sim-token"  # noqa: S105 - the simulator's well-known test token
ADMIN_TOKEN = "bench-admin-token"  # noqa: S105 - local benchmark only
BIG_BALANCE = 1_000_000_000.0
# Every limit the admission checks, each set high enough never to refuse in a cell (3,000
# misses at c=64 spend ~$450), so every request takes the branches a limited team takes.
LIMITS = {
    "rate_per_minute": 1_000_000,
    "rate_burst": 1_000_000,
    "daily_requests": 1_000_000_000_000,
    "budget_usd": "1000000000",
    "max_concurrent": 100_000,
}
SENTINEL_SERVICE = "bench"
# measured at Plan.variants_* only
VARIANTS = ("gateway_limits", "gateway_redispy", "gateway_logged")
S1_VARIANT_NAMES = {  # target -> its prefix in scenario 1's "added"
    "gateway_nopoll": "poller_deferred",
    "gateway_limits": "limits",
    "gateway_redispy": "redispy",
}
DONE_WORDS = {"completed", "succeeded", "failed", "cancelled"}

# --- plans ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """How much work each scenario does; --quick shrinks everything."""

    quick: bool
    s1_cells: dict[int, tuple[int, int]]  # concurrency -> (requests, warm-up requests)
    s1_targets: tuple[str, ...]
    s2_concurrency: tuple[int, ...]
    s2_targets: tuple[str, ...]
    s2_seconds: int  # wrk takes whole seconds
    s2_warmup_seconds: int
    s3_submits: int
    s3_distinct: int
    s3_arrival_s: float
    s3_runs: tuple[tuple[str, int], ...]  # (direct|gateway, polling clients per job)
    s4_jobs: int
    s4_batch: int
    profile: bool
    # the admission's real branches (a team with every limit set) and the redis-py connection,
    # measured beside the plain gateway at these concurrencies only
    variants_s1: tuple[int, ...]
    variants_s2: tuple[int, ...]
    script_calls: int  # scenario 6: sequential misses, hits and polls, each


# Scenario 2's servers; the full run adds the slow upstream paths (naive proxy, direct).
S2_TARGETS = (
    "gateway",
    "gateway_limits",
    "gateway_redispy",
    "gateway_logged",
    "redis_floor",
    "bare",
    "nginx",
)


FULL = Plan(
    quick=False,
    s1_cells={1: (600, 50), 16: (2000, 200), 64: (3000, 300)},
    s1_targets=(
        "direct",
        "gateway",
        "gateway_limits",
        "gateway_redispy",
        "gateway_nopoll",
        "proxy",
        "nginx",
    ),
    s2_concurrency=(16, 64),
    s2_targets=(*S2_TARGETS, "proxy", "direct"),
    s2_seconds=5,
    s2_warmup_seconds=1,
    s3_submits=200,
    s3_distinct=60,
    s3_arrival_s=20.0,
    s3_runs=(("direct", 1), ("direct", 50), ("gateway", 1), ("gateway", 50)),
    s4_jobs=10_000,
    s4_batch=2_000,
    profile=True,
    variants_s1=(1, 16),
    variants_s2=(16,),
    script_calls=200,
)
QUICK = Plan(
    quick=True,
    s1_cells={1: (150, 20), 16: (400, 50), 64: (640, 64)},
    s1_targets=("direct", "gateway", "gateway_limits", "gateway_redispy", "gateway_nopoll"),
    s2_concurrency=(16, 64),
    s2_targets=S2_TARGETS,
    s2_seconds=2,
    s2_warmup_seconds=1,
    s3_submits=60,
    s3_distinct=20,
    s3_arrival_s=4.0,
    s3_runs=(("direct", 10), ("gateway", 1), ("gateway", 10)),
    s4_jobs=600,
    s4_batch=2_000,
    profile=False,
    variants_s1=(1, 16),
    variants_s2=(16,),
    script_calls=50,
)


def _shown(arg: str) -> str:
    """A command-line argument as results may keep it: a path outside the repository by its
    name only (results are committed; a path of the machine that ran them is not)."""
    if not Path(arg).is_absolute():
        return arg
    shown = rel(Path(arg))
    return shown if not Path(shown).is_absolute() else Path(arg).name


def rel(path: Path) -> str:
    """``path`` relative to the repository when inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


@dataclass
class Gateway:
    proc: Proc
    port: int
    namespace: str
    key: str = ""
    team: str = ""
    limits_key: str = ""  # a key of a second team with every limit set (LIMITS)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


# --- load tools ----------------------------------------------------------------------------------


def print_cell(conc: int, target: str, res: dict[str, Any]) -> None:
    """One latency cell (scenarios 1 and 5) as it is measured."""
    console.print(
        f"  c={conc:<3} {TARGET_LABELS[target]:<38} p50 {res['p50_ms']:7.3f} ms  "
        f"p99 {res['p99_ms']:7.3f} ms  {res['rps']:8.1f} req/s  ok {res['ok']}/{res['requests']}"
    )


# --- the bench -----------------------------------------------------------------------------------


class Bench:
    def __init__(self, plan: Plan, work: Path, redis_unix: bool) -> None:
        self.plan = plan
        self.work = work
        self.redis_unix = redis_unix
        self.procs: list[Proc] = []
        self.redis_server: Any = None
        self.redis_url = ""
        self.redis: Any = None
        self.sim: Proc | None = None
        self.sim_port = 0
        self.bare: Proc | None = None
        self.bare_port = 0
        self.floor: Proc | None = None
        self.floor_port = 0
        self.proxy: Proc | None = None
        self.proxy_port = 0
        self.nginx: Proc | None = None
        self.nginx_port = 0
        self.nginx_note = ""
        self.gateway: Gateway | None = None
        self.gateway_nopoll: Gateway | None = None
        self.gateway_redispy: Gateway | None = None
        self.redispy_note = ""
        self.gateway_logged: Gateway | None = None
        self.wrk = shutil.which("wrk")
        self.pyspy = shutil.which("py-spy") or (
            str(Path(PY).parent / "py-spy") if (Path(PY).parent / "py-spy").exists() else None
        )
        self._gw_count = 0
        self.notes: list[str] = []

    # -- lifecycle ------------------------------------------------------------------------------

    def start_common(self) -> None:
        import redis

        from gateway.store.embedded import EmbeddedRedis

        port = 0 if self.redis_unix else free_port()
        self.redis_server = EmbeddedRedis(self.work / "redis", persistent=False, port=port)
        self.redis_server.start()
        self.redis_url = self.redis_server.url
        # named, so that scenario 6 can leave the bench's own commands out of SLOWLOG's
        self.redis = redis.Redis.from_url(
            self.redis_url, decode_responses=True, client_name=BENCH_CLIENT
        )
        self.sim_port = free_port()
        self.sim = self._spawn(
            "simulator",
            [
                PY,
                "-m",
                "gateway",
                "simulator",
                "--port",
                str(self.sim_port),
                "--queue-seconds",
                "0",
                "--run-seconds",
                "0",
            ],
        )
        wait_http(f"{self.sim_url}/_sim/config", self.sim)
        self.sim_config(0, 0)
        self.bare_port = free_port()
        self.bare = self._spawn(
            "bare", [PY, str(BENCH / "servers.py"), "--mode", "bare", "--port", str(self.bare_port)]
        )
        wait_http(f"http://127.0.0.1:{self.bare_port}/", self.bare)
        self.floor_port = free_port()
        self.floor = self._spawn(
            "redis_floor",
            [
                PY,
                str(BENCH / "servers.py"),
                "--mode",
                "redis",
                "--port",
                str(self.floor_port),
                "--redis",
                self.redis_url,
            ],
        )
        wait_http(f"http://127.0.0.1:{self.floor_port}/", self.floor, ok=(401,))
        self.proxy_port = free_port()
        self.proxy = self._spawn(
            "proxy",
            [
                PY,
                str(BENCH / "servers.py"),
                "--mode",
                "proxy",
                "--port",
                str(self.proxy_port),
                "--upstream",
                self.sim_url,
            ],
        )
        wait_http(f"http://127.0.0.1:{self.proxy_port}/_sim/config", self.proxy)
        self.start_nginx()

    def start_nginx(self) -> None:
        binary = shutil.which("nginx") or (
            "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
        )
        if not binary:
            self.nginx_note = "nginx: not installed"
            console.print(
                "[yellow]nginx: not installed[/] (apt-get install -y nginx); its rows are skipped"
            )
            return
        self.nginx_port = free_port()
        prefix = self.work / "nginx"
        for d in ("temp", "logs"):
            (prefix / d).mkdir(parents=True, exist_ok=True)
            os.chmod(prefix / d, 0o777)  # noqa: S103 - nginx workers (nobody) write temp files
        user = "user root root;\n" if os.geteuid() == 0 else ""
        conf = f"""{user}worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/temp/body;
  proxy_temp_path {prefix}/temp/proxy;
  fastcgi_temp_path {prefix}/temp/fastcgi;
  uwsgi_temp_path {prefix}/temp/uwsgi;
  scgi_temp_path {prefix}/temp/scgi;
  upstream simulator {{ server 127.0.0.1:{self.sim_port}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{self.nginx_port};
    location / {{
      proxy_pass http://simulator;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
    }}
  }}
}}
"""
        (prefix / "nginx.conf").write_text(conf)
        self.nginx = self._spawn(
            "nginx",
            [
                binary,
                "-p",
                str(prefix),
                "-c",
                str(prefix / "nginx.conf"),
                "-e",
                str(prefix / "logs" / "error.log"),
                "-g",
                "daemon off;",
            ],
        )
        wait_http(f"http://127.0.0.1:{self.nginx_port}/_sim/config", self.nginx)
        version = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False)  # noqa: S603
        self.nginx_note = (version.stderr or version.stdout).strip()

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Proc:
        proc = Proc(name, args, self.work / f"{name}-{len(self.procs)}.log", env)
        self.procs.append(proc)
        return proc

    def start_gateway(self, label: str, *, primary: bool = True, **env_overrides: str) -> Gateway:
        """A fresh gateway process (own Redis namespace), with one team and key.

        The primary gateway replaces the previous one; a secondary one (a diagnostic variant)
        runs beside it and is stopped by the caller."""
        if primary and self.gateway is not None:
            self.stop_gateway()
        self._gw_count += 1
        ns = f"bench{self._gw_count}"
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env.update(
            GATEWAY_UPSTREAM_MODEL_API_URL=self.sim_url,
            GATEWAY_UPSTREAM_SERVERLESS_URL=self.sim_url,
            GATEWAY_UPSTREAM_TOKEN=SIM_TOKEN,
            GATEWAY_ADMIN_TOKEN=ADMIN_TOKEN,
            GATEWAY_REDIS_URL=self.redis_url,
            GATEWAY_REDIS_NAMESPACE=ns,
            GATEWAY_LOG_LEVEL="warning",
            GATEWAY_LOG_FORMAT="json",
            GATEWAY_DATA_DIR=str(self.work / "gwdata"),
            GATEWAY_POLL_RATE_PER_SECOND="0",  # the load generator polls with one key
        )
        env.update(env_overrides)
        proc = self._spawn(
            f"gateway-{label}", [PY, "-m", "gateway", "serve", "--port", str(port)], env
        )
        gw = Gateway(proc, port, ns)
        wait_http(f"{gw.url}/readyz", proc)
        if primary:
            self.gateway = gw
        self.new_team(gw)
        return gw

    def new_team(self, gw: Gateway) -> str:
        """A new team and key on ``gw`` (an empty per-team cache); returns the key."""
        gw.team, gw.key = self.create_team(gw)
        return gw.key

    def limited_key(self, gw: Gateway) -> str:
        """The key of a second team of ``gw`` with rate, daily, budget and concurrency limits."""
        if not gw.limits_key:
            team, gw.limits_key = self.create_team(gw, "limits")
            admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            url = f"{gw.url}/admin/v1/teams/{team}/limits"
            status, _, body = http("PUT", url, LIMITS, admin)
            if status != 200:
                raise RuntimeError(f"limits set failed: {status} {body}")
        return gw.limits_key

    def create_team(self, gw: Gateway, suffix: str = "") -> tuple[str, str]:
        """A new team with one key on ``gw``: (team, key)."""
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        team = f"bench-{int(time.time() * 1000) % 10_000_000}-{len(self.procs)}{suffix}"
        status, _, body = http("POST", f"{gw.url}/admin/v1/teams", {"team_id": team}, admin)
        if status != 201:
            raise RuntimeError(f"team create failed: {status} {body}")
        status, _, body = http(
            "POST", f"{gw.url}/admin/v1/teams/{team}/keys", {"name": "bench"}, admin
        )
        if status != 201:
            raise RuntimeError(f"key create failed: {status} {body}")
        return team, str(body["key"])

    def start_redispy(self) -> Gateway | None:
        """A second gateway whose Redis URL names a Sentinel watching the bench Redis: it finds
        the same Redis through it and talks to it over redis-py (as TLS, Cluster and Sentinel
        URLs do), not over the pipelined connection a ``redis://`` URL gets. None, with the
        reason in ``redispy_note``, when it cannot run."""
        if self.gateway_redispy is not None or self.redispy_note:
            return self.gateway_redispy
        if self.redis_unix:
            self.redispy_note = "redis-py path: needs Redis over TCP for its Sentinel"
            return None
        from gateway.store.embedded import find_redis_server

        port = free_port()
        conf = self.work / "sentinel.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {self.work}\n"
            f"sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {self.redis_server.port} 1\n"
        )
        self._spawn("sentinel", [str(find_redis_server()), str(conf), "--sentinel"])
        import redis

        probe = redis.Redis(port=port, decode_responses=True)
        deadline = time.monotonic() + 20
        while True:
            try:
                if probe.sentinel_get_master_addr_by_name(SENTINEL_SERVICE):
                    break
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                self.redispy_note = "redis-py path: the Sentinel did not start"
                return None
            time.sleep(0.1)
        probe.close()
        url = f"redis+sentinel://127.0.0.1:{port}/{SENTINEL_SERVICE}"
        self.gateway_redispy = self.start_gateway("redispy", primary=False, GATEWAY_REDIS_URL=url)
        return self.gateway_redispy

    def start_logged(self) -> Gateway:
        """A second gateway at the default log level (info): one JSON access line per request,
        written to its log file as to a log collector's pipe. The others log warnings only."""
        if self.gateway_logged is None:
            self.gateway_logged = self.start_gateway(
                "logged", primary=False, GATEWAY_LOG_LEVEL="info"
            )
        return self.gateway_logged

    def stop_variants(self) -> None:
        """Stop the secondary gateways (the Sentinel stays; it costs nothing idle)."""
        for gw in (self.gateway_nopoll, self.gateway_redispy, self.gateway_logged):
            if gw is not None:
                gw.proc.stop()
        self.gateway_nopoll = self.gateway_redispy = self.gateway_logged = None

    def stop_gateway(self) -> None:
        if self.gateway is not None:
            self.gateway.proc.stop()
            self.gateway = None

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                proc.stop()
        if self.redis is not None:
            with contextlib.suppress(Exception):
                self.redis.close()
        if self.redis_server is not None:
            with contextlib.suppress(Exception):
                self.redis_server.stop()

    # -- simulator and redis --------------------------------------------------------------------

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    def sim_config(self, queue: float, run: float, balance: float = BIG_BALANCE) -> None:
        status, _, body = http(
            "POST",
            f"{self.sim_url}/_sim/config",
            {"queue_seconds": queue, "run_seconds": run, "balance_usd": balance},
        )
        assert status == 200, body

    def sim_reset(self, queue: float = 0, run: float = 0, balance: float = BIG_BALANCE) -> None:
        status, _, body = http("POST", f"{self.sim_url}/_sim/reset", {})
        assert status == 200, body
        self.sim_config(queue, run, balance)

    def sim_counts(self) -> dict[str, int]:
        return dict(http("GET", f"{self.sim_url}/_sim/calls")[2]["counts"])

    def sim_balance(self) -> float:
        return float(http("GET", f"{self.sim_url}/_sim/config")[2]["balance_usd"])

    def in_flight(self, gw: Gateway) -> int:
        return int(self.redis.zcard(f"{gw.namespace}:v1:{{poll}}:due"))

    def wait_drained(self, gw: Gateway, timeout: float = 90.0) -> float:
        """Wait until the gateway's poller has no job left in flight; returns seconds waited."""
        start = time.monotonic()
        while self.in_flight(gw) and time.monotonic() - start < timeout:
            time.sleep(0.1)
        left = self.in_flight(gw)
        if left:
            self.notes.append(f"{left} jobs still in flight after {timeout:.0f} s drain wait")
        return time.monotonic() - start

    # -- load -----------------------------------------------------------------------------------

    def cpu_snapshot(self, extra: Mapping[str, CpuSource | None]) -> dict[str, float]:
        snap = {name: p.cpu() for name, p in extra.items() if p is not None}
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        snap["_children"] = ru.ru_utime + ru.ru_stime
        snap["_t"] = time.perf_counter()
        return snap

    def cpu_usage(self, before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        wall = after["_t"] - before["_t"]
        out = {
            f"{k}_cpu_pct": round(100 * (after[k] - before[k]) / wall, 1)
            for k in before
            if not k.startswith("_")
        }
        out["load_tool_cpu_pct"] = round(100 * (after["_children"] - before["_children"]) / wall, 1)
        return out

    def watched(self, target: str) -> dict[str, Proc | None]:
        gw = self.gateway_of(target)
        if gw is not None:
            return {"server": gw.proc, "simulator": self.sim}
        server = {
            "bare": self.bare,
            "redis_floor": self.floor,
            "proxy": self.proxy,
            "nginx": self.nginx,
            "direct": self.sim,  # the simulator is the server under test
        }[target]
        procs: dict[str, Proc | None] = {"server": server, "simulator": self.sim}
        return procs

    def redis_cpu(self) -> float:
        pid = (
            self.redis_server._process.pid
            if self.redis_server and self.redis_server._process
            else 0
        )
        return (proc_stat(pid) or (0, 0.0, 0))[1] if pid else 0.0

    def loadgen(
        self, spec: dict[str, Any], watch: Mapping[str, CpuSource | None]
    ) -> dict[str, Any]:
        spec_path = self.work / "spec.json"
        out_path = self.work / "loadgen-out.json"
        spec_path.write_text(json.dumps(spec))
        before, r0 = self.cpu_snapshot(watch), self.redis_cpu()
        subprocess.run(  # noqa: S603
            [PY, str(BENCH / "loadgen.py"), "--spec", str(spec_path), "--out", str(out_path)],
            check=True,
            timeout=float(spec.get("max_seconds", 120)) + 60,
        )
        after, r1 = self.cpu_snapshot(watch), self.redis_cpu()
        result: dict[str, Any] = json.loads(out_path.read_text())
        result.update(self.cpu_usage(before, after))
        result["redis_cpu_pct"] = round(100 * (r1 - r0) / (after["_t"] - before["_t"]), 1)
        result["tool"] = "loadgen"
        return result

    def run_wrk(
        self,
        url: str,
        method: str,
        auth: str,
        body: str | None,
        conc: int,
        seconds: float,
        watch: Mapping[str, CpuSource | None],
        warmup: float,
    ) -> dict[str, Any]:
        assert self.wrk
        script = self.work / "wrk.lua"
        script.write_text(
            WRK_LUA.format(
                method=method, body=json.dumps(body) if body is not None else "nil", auth=auth
            )
        )
        base = [self.wrk, "-t1", f"-c{conc}", "--timeout", "10s", "-s", str(script)]
        if warmup > 0:
            subprocess.run(  # noqa: S603
                [*base, f"-d{warmup}s", url], capture_output=True, check=False, timeout=60
            )
        before, r0 = self.cpu_snapshot(watch), self.redis_cpu()
        proc = subprocess.run(  # noqa: S603
            [*base, "--latency", f"-d{seconds}s", url],
            capture_output=True,
            text=True,
            check=False,
            timeout=seconds + 60,
        )
        after, r1 = self.cpu_snapshot(watch), self.redis_cpu()
        result = parse_wrk(proc.stdout)
        result.update(self.cpu_usage(before, after))
        result["redis_cpu_pct"] = round(100 * (r1 - r0) / (after["_t"] - before["_t"]), 1)
        result["concurrency"] = conc
        result["tool"] = "wrk"
        return result

    def measure_duration(
        self,
        target: str,
        url: str,
        method: str,
        auth: str,
        body: str | None,
        conc: int,
        watch: Mapping[str, CpuSource | None] | None = None,
    ) -> dict[str, Any]:
        """Scenario 2's throughput cell: wrk if installed, else the own load generator."""
        watch = self.watched(target) if watch is None else watch
        p = self.plan
        if self.wrk:
            return self.run_wrk(
                url, method, auth, body, conc, p.s2_seconds, watch, p.s2_warmup_seconds
            )
        spec = {
            "url": url,
            "method": method,
            "headers": {"Authorization": auth, "Content-Type": "application/json"},
            "concurrency": conc,
            "duration": p.s2_seconds,
            "warmup": conc * 10,
            "max_seconds": 60,
        }
        if body is not None:
            spec["body"] = body
        return self.loadgen(spec, watch)

    def gateway_of(self, target: str) -> Gateway | None:
        """The gateway process behind a ``gateway*`` target (None for the others)."""
        return {
            "gateway": self.gateway,
            "gateway_limits": self.gateway,
            "gateway_nopoll": self.gateway_nopoll,
            "gateway_redispy": self.gateway_redispy,
            "gateway_logged": self.gateway_logged,
        }.get(target)

    def base_url(self, target: str) -> str:
        gw = self.gateway_of(target)
        if gw is not None:
            return gw.url
        return {
            "direct": self.sim_url,
            "proxy": f"http://127.0.0.1:{self.proxy_port}",
            "nginx": f"http://127.0.0.1:{self.nginx_port}",
            "bare": f"http://127.0.0.1:{self.bare_port}",
            "redis_floor": f"http://127.0.0.1:{self.floor_port}",
        }[target]

    def auth(self, target: str) -> str:
        gw = self.gateway_of(target)
        if gw is not None:
            return f"Bearer {self.limited_key(gw) if target == 'gateway_limits' else gw.key}"
        if target == "redis_floor":
            return f"Bearer {FLOOR_KEY}"
        return f"Bearer {SIM_TOKEN}"

    def skipped(self, target: str, conc: int, variants: tuple[int, ...]) -> str | None:
        """None to measure ``target`` at ``conc``; else why not ("": leave the row out)."""
        if target == "nginx" and self.nginx is None:
            return self.nginx_note
        if target in VARIANTS and conc not in variants:
            return ""
        if target == "gateway_redispy" and self.start_redispy() is None:
            return self.redispy_note
        if target == "gateway_logged":
            self.start_logged()
        return None

    # -- scenario 1: submit, cache miss ---------------------------------------------------------

    def scenario1(self) -> dict[str, Any]:
        console.rule("[bold]1. submit, cache miss: added latency")
        self.start_gateway("s1")
        if "gateway_nopoll" in self.plan.s1_targets:
            # The same gateway with its first poll 10 minutes away: the submit path alone,
            # without the poller's work for earlier jobs competing for the event loop.
            self.gateway_nopoll = self.start_gateway(
                "s1-nopoll", primary=False, GATEWAY_POLL_INTERVAL_SECONDS="600"
            )
        cells: dict[str, dict[str, Any]] = {}
        for conc, (count, warm) in self.plan.s1_cells.items():
            row: dict[str, Any] = {}
            for target in self.plan.s1_targets:
                why = self.skipped(target, conc, self.plan.variants_s1)
                if why is not None:
                    if why:
                        row[target] = {"skipped": why}
                    continue
                self.sim_reset()
                label = f"s1-{target}-c{conc}-{time.time_ns()}"
                spec = {
                    "url": f"{self.base_url(target)}/v1/models/{MODEL}",
                    "method": "POST",
                    "headers": {
                        "Authorization": self.auth(target),
                        "Content-Type": "application/json",
                    },
                    "body": json.dumps({"prompt": f"{label} %%I%%"}),
                    "concurrency": conc,
                    "requests": count,
                    "warmup": warm,
                    "max_seconds": 120,
                }
                res = self.loadgen(spec, self.watched(target))
                polled = self.gateway_of(target)
                if polled is not None and target != "gateway_nopoll":
                    res["drain_wait_s"] = round(self.wait_drained(polled), 2)
                row[target] = res
                print_cell(conc, target, res)
            cells[f"c{conc}"] = row
        added: dict[str, Any] = {}
        for key, row in cells.items():
            d, g = row.get("direct"), row.get("gateway")
            if d and g:
                added[key] = {
                    "p50_ms": round(g["p50_ms"] - d["p50_ms"], 3),
                    "p99_ms": round(g["p99_ms"] - d["p99_ms"], 3),
                    "p50_ratio": ratio(g["p50_ms"], d["p50_ms"]),
                    "p99_ratio": ratio(g["p99_ms"], d["p99_ms"]),
                    "rps_ratio": ratio(g["rps"], d["rps"]),
                }
                for target, name in S1_VARIANT_NAMES.items():
                    n = row.get(target)
                    if n and "p50_ms" in n:
                        added[key][f"{name}_p50_ms"] = round(n["p50_ms"] - d["p50_ms"], 3)
                        added[key][f"{name}_p99_ms"] = round(n["p99_ms"] - d["p99_ms"], 3)
        if self.gateway_nopoll is not None:
            self.gateway_nopoll.proc.stop()
            self.gateway_nopoll = None
        self.sim_reset()
        return {"model": MODEL, "cells": cells, "added": added}

    # -- scenario 2: hit and status -------------------------------------------------------------

    def completed_request(self, target: str) -> tuple[str, str]:
        """(request id, prompt) of a job completed through ``target`` (a gateway) with its key;
        the same prompt sent again is checked to be a cache hit."""
        url, hdr = self.base_url(target), {"Authorization": self.auth(target)}
        prompt = f"bench hit {target} {time.time_ns()}"
        status, _, body = http("POST", f"{url}/v1/models/{MODEL}", {"prompt": prompt}, hdr)
        assert status == 200, body
        rid = str(body["request_id"])
        deadline = time.monotonic() + 30
        while (
            http("GET", f"{url}/v1/requests/{rid}/status", headers=hdr)[2].get("status")
            not in DONE_WORDS
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{target} never completed the scenario-2 job")
            time.sleep(0.1)
        _, hdrs, _ = http("POST", f"{url}/v1/models/{MODEL}", {"prompt": prompt}, hdr)
        if hdrs.get("X-Gateway-Cache") != "hit":
            raise RuntimeError(f"expected a cache hit, got {hdrs.get('X-Gateway-Cache')}")
        return rid, prompt

    def scenario2(self) -> dict[str, Any]:
        console.rule("[bold]2. cache hit and status poll: throughput")
        if self.gateway is None:
            self.start_gateway("s2")
        completed = {
            target: self.completed_request(target)
            for target in self.plan.s2_targets
            if target.startswith("gateway") and self.skipped(target, 0, (0,)) is None
        }
        rid, prompt = completed["gateway"]
        self.sim_reset()
        sim_rid = http(
            "POST",
            f"{self.sim_url}/v1/models/{MODEL}",
            {"prompt": "bench status"},
            {"Authorization": f"Bearer {SIM_TOKEN}"},
        )[2]["request_id"]
        cells: dict[str, dict[str, dict[str, Any]]] = {"status": {}, "hit": {}}
        for path in ("status", "hit"):
            for conc in self.plan.s2_concurrency:
                row: dict[str, Any] = {}
                for target in self.plan.s2_targets:
                    why = self.skipped(target, conc, self.plan.variants_s2)
                    if why is not None:
                        if why:
                            row[target] = {"skipped": why}
                        continue
                    base = self.base_url(target)
                    the_rid, the_prompt = completed.get(target, (rid, prompt))
                    if path == "status":
                        the_rid = sim_rid if target in ("direct", "proxy", "nginx") else the_rid
                        url, method, body = f"{base}/v1/requests/{the_rid}/status", "GET", None
                    else:
                        url, method = f"{base}/v1/models/{MODEL}", "POST"
                        body = json.dumps({"prompt": the_prompt})
                    mem0 = (self._redis_used(), int(self.redis.dbsize()))
                    res = self.measure_duration(target, url, method, self.auth(target), body, conc)
                    if path == "hit" and target == "gateway":
                        # Every hit writes one request record (TTL GATEWAY_REQUEST_TTL_SECONDS).
                        used, keys = (
                            self._redis_used() - mem0[0],
                            int(self.redis.dbsize()) - mem0[1],
                        )
                        res["redis_keys_added"] = keys
                        res["redis_bytes_per_hit"] = round(used / keys) if keys > 0 else None
                    if path == "hit" and target in ("direct", "proxy", "nginx"):
                        res["note"] = "no cache upstream: every request is a new simulator job"
                        self.sim_reset()
                    row[target] = res
                    console.print(
                        f"  {path:<6} c={conc:<3} {TARGET_LABELS[target]:<38} "
                        f"{num(res['rps'], 0):>7} req/s  p50 {num(res['p50_ms'], 3):>8} ms  "
                        f"p99 {num(res['p99_ms'], 3):>8} ms  "
                        f"server cpu {res.get('server_cpu_pct', '-')}%  errors {res['errors'] or 0}"
                    )
                cells[path][f"c{conc}"] = row
        ratios: dict[str, dict[str, Any]] = {}
        for path, by_conc in cells.items():
            ratios[path] = {}
            for key, row in by_conc.items():
                g = row.get("gateway", {})
                r: dict[str, Any] = {}
                for base_name in ("redis_floor", "bare", "nginx", "proxy", "direct"):
                    b = row.get(base_name)
                    if b and "rps" in b:
                        r[f"rps_vs_{base_name}"] = ratio(g.get("rps"), b.get("rps"))
                        r[f"p99_vs_{base_name}"] = ratio(g.get("p99_ms"), b.get("p99_ms"))
                ratios[path][key] = r
        tool = "wrk " + self.wrk_version() if self.wrk else "bench/loadgen.py (wrk not installed)"
        return {
            "tool": tool,
            "gateway_request_id": rid,
            "hit_prompt": prompt,
            "cells": cells,
            "ratios": ratios,
            "seconds_per_cell": self.plan.s2_seconds,
        }

    def wrk_version(self) -> str:
        if not self.wrk:
            return ""
        out = subprocess.run([self.wrk, "-v"], capture_output=True, text=True, check=False)  # noqa: S603
        m = re.search(r"wrk\s+(\S+)", out.stdout + out.stderr)
        return m[1] if m else "?"

    # -- profiling ------------------------------------------------------------------------------

    def profile(self, s2: dict[str, Any]) -> dict[str, Any]:
        """py-spy on the gateway under load (16 connections): status, hit, and miss paths.

        Each path gets a text summary (profile-<path>.txt: categories, on-stack shares, top
        functions, one py-spy dump); the status path also a flame graph (profile-status.svg).
        Sampling perturbs the process, so these runs are not part of the measured figures."""
        console.rule("[bold]profile (py-spy) of the gateway: status, hit and miss paths")
        if not self.pyspy or not self.gateway:
            return {"skipped": "py-spy not installed (pip install py-spy)"}
        gw = self.gateway
        auth = f"Bearer {gw.key}"
        out: dict[str, Any] = {}
        for path in ("status", "hit", "miss"):
            load_seconds = 24 if path == "status" else 13
            body: str | None = None
            if path == "status":
                url, method = f"{gw.url}/v1/requests/{s2['gateway_request_id']}/status", "GET"
            elif path == "hit":
                url, method = f"{gw.url}/v1/models/{MODEL}", "POST"
                body = json.dumps({"prompt": s2["hit_prompt"]})
            else:
                url, method = f"{gw.url}/v1/models/{MODEL}", "POST"
                body = json.dumps({"prompt": f"profile miss {time.time_ns()} %%I%%"})
                self.sim_reset()
            if self.wrk and path != "miss":
                script = self.work / f"wrk-prof-{path}.lua"
                lua_body = json.dumps(body) if body else "nil"
                script.write_text(WRK_LUA.format(method=method, body=lua_body, auth=auth))
                argv = [self.wrk, "-t1", "-c16", f"-d{load_seconds}s", "-s", str(script), url]
            else:
                spec: dict[str, Any] = {
                    "url": url,
                    "method": method,
                    "headers": {"Authorization": auth, "Content-Type": "application/json"},
                    "concurrency": 16,
                    "duration": load_seconds,
                    "max_seconds": load_seconds + 10,
                }
                if body:
                    spec["body"] = body
                spec_file = self.work / f"prof-{path}.json"
                spec_file.write_text(json.dumps(spec))
                argv = [PY, str(BENCH / "loadgen.py"), "--spec", str(spec_file), "--out"]
                argv.append(str(self.work / f"prof-{path}-out.json"))
            load = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
            svg = RESULTS / f"profile-{path}.svg"
            raw = self.work / f"profile-{path}.raw"
            pid = str(gw.proc.pid)
            try:
                time.sleep(1.5)
                common = ["--pid", pid, "--duration", "10", "--rate", "200"]
                if path == "status":
                    self._pyspy(["record", "-o", str(svg), *common])
                    if svg.exists():  # its title is the command line: no machine paths in it
                        title = svg.read_text().replace(str(self.pyspy), "py-spy")
                        svg.write_text(title.replace(str(svg), rel(svg)))
                self._pyspy(["record", "-o", str(raw), "--format", "raw", *common])
                dump = self._pyspy(["dump", "--pid", pid])
            finally:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    load.wait(load_seconds + 30)
                if load.poll() is None:
                    load.kill()
                    load.wait()
            if path == "miss":
                self.wait_drained(gw)
                self.sim_reset()
            summary = summarise_profile(raw.read_text() if raw.exists() else "")
            text = RESULTS / f"profile-{path}.txt"
            text.write_text(
                render_profile_text(path, summary)
                + "\n\n# py-spy dump (one snapshot)\n"
                + re.sub(
                    r"(?<![\w.])/\S*/(?=[^/\s]+)", "", dump
                )  # program names, not this machine's paths
            )
            out[path] = {
                "svg": rel(svg) if svg.exists() and path == "status" else None,
                "text": rel(text),
                **summary,
            }
            cats = summary["categories_pct"]
            console.print(
                f"  {path}: {summary['samples']} samples; "
                + ", ".join(f"{k} {v:.0f}%" for k, v in cats.items() if v >= 3)
            )
        return out

    def _pyspy(self, args: list[str]) -> str:
        assert self.pyspy
        proc = subprocess.run(  # noqa: S603
            [self.pyspy, *args], capture_output=True, text=True, check=False, timeout=60
        )
        if proc.returncode != 0:
            self.notes.append(f"py-spy {args[0]} failed: {proc.stderr.strip()[-300:]}")
        return proc.stdout

    # -- scenario 3: upstream calls and cost ----------------------------------------------------

    def scenario3(self) -> dict[str, Any]:
        console.rule("[bold]3. upstream calls per job and cost, realistic workload")
        self.stop_variants()
        p = self.plan
        queue_s, run_s, poll_s = 0.5, 1.0, 0.5
        runs: dict[str, Any] = {}
        gw = self.start_gateway("s3", GATEWAY_POLL_INTERVAL_SECONDS=str(poll_s))
        for where, pollers in p.s3_runs:
            name = f"{where}_p{pollers}"
            self.sim_reset(queue_s, run_s, balance=1_000_000.0)
            if where == "gateway":
                self.new_team(gw)  # an empty cache: savings come from this workload only
                key, base = gw.key, gw.url
            else:
                key, base = SIM_TOKEN, self.sim_url
            spec = {
                "base_url": base,
                "token": key,
                "model": MODEL,
                "submits": p.s3_submits,
                "distinct": p.s3_distinct,
                "arrival_s": p.s3_arrival_s,
                "pollers": pollers,
                "poll_interval": 0.5,
                "seed": 8,
                "prefix": f"s3 {name} {time.time_ns()}",
                "max_seconds": 150,
            }
            spec_path, out_path = self.work / "wl-spec.json", self.work / "wl-out.json"
            spec_path.write_text(json.dumps(spec))
            c0 = self.cpu_snapshot({"gateway": gw.proc, "simulator": self.sim})
            subprocess.run(  # noqa: S603
                [
                    PY,
                    str(BENCH / "workload.py"),
                    "--spec",
                    str(spec_path),
                    "--out",
                    str(out_path),
                ],
                check=True,
                timeout=240,
            )
            c1 = self.cpu_snapshot({"gateway": gw.proc, "simulator": self.sim})
            if where == "gateway":
                self.wait_drained(gw, 30)
            time.sleep(0.2)
            wl = json.loads(out_path.read_text())
            counts = self.sim_counts()
            spent = round(1_000_000.0 - self.sim_balance(), 6)
            jobs = counts.get("model.submit", 0)
            calls = sum(counts.values())  # every API call, catalog included
            wl.pop("spec", None)
            res = {
                **wl,
                "pollers_per_job": pollers,
                "sim_calls": counts,
                "upstream_jobs": jobs,
                "upstream_calls": calls,
                "upstream_status_per_job": round(counts.get("model.status", 0) / jobs, 2)
                if jobs
                else None,
                "upstream_result_per_job": round(counts.get("model.result", 0) / jobs, 2)
                if jobs
                else None,
                "upstream_calls_per_client_submit": round(calls / p.s3_submits, 2),
                "cost_billed_usd": spent,
                **self.cpu_usage(c0, c1),
            }
            runs[name] = res
            console.print(
                f"  {name:<12} submits {wl['submits_ok']}/{p.s3_submits}  "
                f"upstream jobs {jobs:>4}  status/job {res['upstream_status_per_job']}  "
                f"calls {calls:>6}  billed ${spent:.2f}  "
                f"client polls {wl['client_status_polls']}  outcomes {wl['cache_outcomes']}"
            )
        self.sim_reset()
        comparisons = {}
        for pollers in sorted({n for _, n in p.s3_runs}):
            if f"direct_p{pollers}" not in runs or f"gateway_p{pollers}" not in runs:
                continue
            d, g = runs[f"direct_p{pollers}"], runs[f"gateway_p{pollers}"]
            comparisons[f"p{pollers}"] = {
                "upstream_calls_ratio": ratio(g["upstream_calls"], d["upstream_calls"]),
                "upstream_jobs_ratio": ratio(g["upstream_jobs"], d["upstream_jobs"]),
                "cost_ratio": ratio(g["cost_billed_usd"], d["cost_billed_usd"]),
                "cost_saved_usd": round(d["cost_billed_usd"] - g["cost_billed_usd"], 4),
            }
        return {
            "workload": {
                "submits": p.s3_submits,
                "distinct_prompts": p.s3_distinct,
                "arrival_s": p.s3_arrival_s,
                "client_poll_interval_s": 0.5,
                "sim_queue_s": queue_s,
                "sim_run_s": run_s,
                "gateway_poll_interval_s": poll_s,
                "model": MODEL,
            },
            "runs": runs,
            "comparisons": comparisons,
        }

    # -- scenario 5: peer gateways --------------------------------------------------------------

    def scenario5(self) -> dict[str, Any]:
        """LiteLLM and Portkey forwarding a chat completion to the OpenAI stub, beside direct ->
        stub, at scenario 1's concurrencies and counts, with the same load generator."""
        console.rule("[bold]5. peer gateways -> OpenAI-compatible stub: added latency")
        port = free_port()
        stub = self._spawn(
            "openai-stub",
            [PY, str(BENCH / "servers.py"), "--mode", "openai", "--port", str(port)],
        )
        stub_url = f"http://127.0.0.1:{port}"
        wait_http(f"{stub_url}/", stub, ok=(404,))
        running, unavailable = self._start_peers(stub_url)
        cells: dict[str, dict[str, Any]] = {}
        try:
            for conc, (count, warm) in self.plan.s1_cells.items():
                row: dict[str, Any] = {}
                for name in ("stub_direct", *(p.name for p in PEERS)):
                    if name in unavailable:
                        row[name] = {"skipped": unavailable[name]}
                        continue
                    proc, target = running[name]
                    spec = {
                        "url": target.url,
                        "method": "POST",
                        "headers": target.headers,
                        "body": chat_body(),
                        "concurrency": conc,
                        "requests": count,
                        "warmup": warm,
                        "max_seconds": 300,  # LiteLLM ran at ~10 req/s on a busy machine
                    }
                    row[name] = self.loadgen(spec, {"server": proc or stub, "upstream": stub})
                    print_cell(conc, name, row[name])
                cells[f"c{conc}"] = row
        finally:
            for proc, _ in running.values():
                if proc is not None:
                    proc.stop()
            stub.stop()
        return {
            "versions": {p.name: p.version for p in PEERS},
            "runtimes": {p.name: p.runtime() for p in PEERS},
            "cells": cells,
            "added": peer_added(cells),
        }

    def _start_peers(
        self, stub_url: str
    ) -> tuple[dict[str, tuple[Proc | None, LoadTarget]], dict[str, str]]:
        """Each peer started in front of the stub (and the direct target), and why the others
        could not be."""
        running: dict[str, tuple[Proc | None, LoadTarget]] = {
            "stub_direct": (None, direct_target(stub_url))
        }
        unavailable: dict[str, str] = {}
        for peer in PEERS:
            console.print(f"  starting {peer.label} (installs on first use into {cache_dir()})")
            try:
                running[peer.name] = peer.start(self._spawn, self.work, stub_url)
            except PeerUnavailable as exc:
                unavailable[peer.name] = f"{peer.name}: {exc}"
                console.print(f"  [yellow]{peer.name} unavailable[/]: {exc}")
        return running, unavailable

    # -- scenario 6: what each script costs inside Redis ----------------------------------------

    def scenario6(self) -> dict[str, Any]:
        """Sequential misses (each polled to completion), hits and status polls at c=1 on a
        flushed Redis, each path twice: once with SLOWLOG off (INFO commandstats' EVALSHA time,
        unperturbed), once logging every command (each script's calls per request and
        microseconds per call; logging its inner commands costs the script a little)."""
        console.rule("[bold]6. each Redis script's cost inside Redis, c=1")
        self.stop_variants()
        self.redis.flushall()
        self.sim_reset()
        gw = self.start_gateway("scripts")
        rid, prompt = self.completed_request("gateway")  # also loads the scripts (NOSCRIPT)
        saved = self.redis.config_get("slowlog-*")
        self.redis.config_set("slowlog-max-len", 1_000_000)
        loads = {
            "miss": (f"/v1/models/{MODEL}", "POST", None),
            "hit": (f"/v1/models/{MODEL}", "POST", json.dumps({"prompt": prompt})),
            "status": (f"/v1/requests/{rid}/status", "GET", None),
        }
        phases: dict[str, Any] = {}
        try:
            calibration = self._calibrate_scripts()
            console.print(f"  a script of 10 HINCRBY: {calibration} us per call (the yardstick)")
            for phase, (path, method, body) in loads.items():
                plain = self._script_pass(gw, phase, path, method, body, logged=False)
                logged = self._script_pass(gw, phase, path, method, body, logged=True)
                logged["commandstats_unlogged"] = plain["commandstats"]
                phases[phase] = logged
                top = [c for c in logged["costs"] if c["what"].startswith("script")][:4]
                evalsha = plain["commandstats"].get("evalsha", {})
                console.print(
                    f"  {phase:<6} EVALSHA {evalsha.get('usec_per_call')} us/call unlogged; "
                    + ", ".join(
                        f"{c['what']} {c['usec_per_call']} us x{c['calls_per_request']}"
                        for c in top
                    )
                )
        finally:
            for name, value in saved.items():
                self.redis.config_set(name, value)
        self.stop_gateway()
        return {
            "calls_per_phase": self.plan.script_calls,
            "ten_hincrby_usec_per_call": calibration,
            "phases": phases,
        }

    def _calibrate_scripts(self) -> float:
        """INFO commandstats' µs per call of a script making 10 ``HINCRBY`` calls, sent 200
        times in a row with SLOWLOG off: what a ``redis.call`` costs on this Redis build."""
        script = self.redis.register_script(
            "for i = 1, 10 do redis.call('HINCRBY', KEYS[1], 'f' .. i, 1) end return 1"
        )
        script(keys=["rcg-bench:calibration"])  # loaded, so every call below is one EVALSHA
        self.redis.config_set("slowlog-log-slower-than", -1)
        self.redis.config_resetstat()
        for _ in range(200):
            script(keys=["rcg-bench:calibration"])
        stats = commandstats(self.redis.info("commandstats"))
        self.redis.delete("rcg-bench:calibration")
        return stats.get("evalsha", {}).get("usec_per_call", 0.0)

    def _script_pass(
        self, gw: Gateway, phase: str, path: str, method: str, body: str | None, *, logged: bool
    ) -> dict[str, Any]:
        """One path's requests at c=1 with fresh INFO commandstats (and SLOWLOG if ``logged``)."""
        n, names = self.plan.script_calls, script_names()
        self.redis.config_set("slowlog-log-slower-than", 0 if logged else -1)
        self.redis.slowlog_reset()
        self.redis.config_resetstat()
        if phase == "miss":
            body = json.dumps({"prompt": f"s6 miss {time.time_ns()} %%I%%"})
        auth = {"Authorization": f"Bearer {gw.key}", "Content-Type": "application/json"}
        spec = {"url": gw.url + path, "method": method, "headers": auth, "concurrency": 1}
        spec.update(requests=n, warmup=0, max_seconds=120)
        if body is not None:
            spec["body"] = body
        res = self.loadgen(spec, {"server": gw.proc})
        if phase == "miss":
            self.wait_drained(gw)  # each miss's job polled to completion: its whole life
        stats = commandstats(self.redis.info("commandstats"))
        entries = self.redis.slowlog_get(1_000_000) if logged else []
        return {
            "requests": n,
            "ok": res["ok"],
            "p50_ms": res["p50_ms"],
            "costs": costs(entries, names, n, BENCH_CLIENT),
            "slowest": slowest(entries, names, BENCH_CLIENT),
            "commandstats": stats,
        }

    # -- scenario 7: several worker processes -----------------------------------------------------

    def scenario7(self) -> dict[str, Any]:
        """Status polls and cache hits at c=16 and 64: ``serve --workers N`` (N: the CPUs this
        process may use) vs the bare aiohttp server and the Redis floor, each at N processes on
        one port (SO_REUSEPORT); each side's CPU counted over all of its processes."""
        console.rule("[bold]7. gateway at N workers vs bare aiohttp at N processes")
        from gateway.cli.cpus import available_cpus

        workers = available_cpus()
        self.stop_variants()
        gw = self.start_gateway("workers", GATEWAY_WORKERS=str(workers))
        probes = {"gateway": wait_every_process(f"{gw.url}/readyz", [gw.proc], workers)}
        rid, prompt = self.completed_request("gateway")
        bare = self._reuse_port_group("bare", workers)
        floor = self._reuse_port_group("redis", workers)
        cells: dict[str, dict[str, dict[str, Any]]] = {"status": {}, "hit": {}}
        try:
            for name, (port, procs) in (("bare", bare), ("redis_floor", floor)):
                url = f"http://127.0.0.1:{port}/"
                probes[name] = wait_every_process(url, procs, workers, ok=(200, 401))
            sides = {
                "gateway": (gw.url, self.auth("gateway"), [gw.proc]),
                "redis_floor": (f"http://127.0.0.1:{floor[0]}", f"Bearer {FLOOR_KEY}", floor[1]),
                "bare": (f"http://127.0.0.1:{bare[0]}", f"Bearer {SIM_TOKEN}", bare[1]),
            }
            for path in ("status", "hit"):
                for conc in self.plan.s2_concurrency:
                    row: dict[str, Any] = {}
                    for target, (base, auth, procs) in sides.items():
                        if path == "status":
                            url, method, body = f"{base}/v1/requests/{rid}/status", "GET", None
                        else:
                            url, method = f"{base}/v1/models/{MODEL}", "POST"
                            body = json.dumps({"prompt": prompt})
                        watch = {"server": ProcGroup(procs), "simulator": self.sim}
                        row[target] = res = self.measure_duration(
                            target, url, method, auth, body, conc, watch
                        )
                        console.print(
                            f"  {path:<6} c={conc:<3} {TARGET_LABELS[target]:<38} x{workers} "
                            f"{num(res['rps'], 0):>7} req/s  p99 {num(res['p99_ms'], 3):>8} ms  "
                            f"server cpu {res.get('server_cpu_pct', '-')}%  "
                            f"errors {res['errors'] or 0}"
                        )
                    cells[path][f"c{conc}"] = row
        finally:
            for proc in (*bare[1], *floor[1]):
                proc.stop()
        gw.proc.stop(timeout=60.0)  # SIGTERM: the supervisor drains every worker
        self.gateway = None
        code = gw.proc.popen.returncode
        if code != 0:
            self.notes.append(f"serve --workers {workers} exited {code} after SIGTERM")
        return {
            "workers": workers,
            "readiness_probes": probes,
            "gateway_exit_code": code,
            "cells": cells,
        }

    def _reuse_port_group(self, mode: str, count: int) -> tuple[int, list[Proc]]:
        """``count`` processes of a baseline server (bench/servers.py) sharing one new port."""
        port = free_port()
        args = [PY, str(BENCH / "servers.py"), "--mode", mode, "--port", str(port), "--reuse-port"]
        if mode == "redis":
            args += ["--redis", self.redis_url]
        return port, [self._spawn(f"{mode}-reuse-{i}", args) for i in range(count)]

    # -- scenario 4: memory ---------------------------------------------------------------------

    def _redis_used(self) -> int:
        return int(self.redis.info("memory")["used_memory"])

    def _key_census(self, ns: str) -> dict[str, Any]:
        """Keys of one gateway namespace by kind (req, job, inflight, dedup, ...), with the mean
        ``MEMORY USAGE`` of up to 50 keys of each kind."""
        census: Counter[str] = Counter()
        samples: dict[str, list[str]] = {}
        pattern = re.compile(r"^[^:]+:v1:(?:\{t:[^}]+\}:([a-z]+)|\{(poll|hooks)\}|([a-z]+))")
        for key in self.redis.scan_iter(match=f"{ns}:*", count=2000):
            m = pattern.match(key)
            kind = next((g for g in m.groups() if g), "?") if m else "?"
            if kind == "job" and key.endswith(":hooks"):
                kind = "job:hooks"
            census[kind] += 1
            if len(samples.setdefault(kind, [])) < 50:
                samples[kind].append(key)
        sizes = {
            kind: round(sum(int(self.redis.memory_usage(k) or 0) for k in keys) / len(keys))
            for kind, keys in samples.items()
        }
        return {"keys": dict(census), "mean_bytes": sizes}

    def _submit_batches(
        self, gw: Gateway, n: int, label: str, after_batch: Any
    ) -> list[dict[str, Any]]:
        out = []
        done = 0
        while done < n:
            size = min(self.plan.s4_batch, n - done)
            spec = {
                "url": f"{gw.url}/v1/models/{MODEL}",
                "method": "POST",
                "headers": {
                    "Authorization": f"Bearer {gw.key}",
                    "Content-Type": "application/json",
                },
                "body": json.dumps({"prompt": f"{label} b{done} %%I%%"}),
                "concurrency": 64,
                "requests": size,
                "warmup": 0,
                "max_seconds": 120,
            }
            res = self.loadgen(spec, {"server": gw.proc})
            out.append({k: res[k] for k in ("requests", "ok", "errors", "rps", "p50_ms", "p99_ms")})
            after_batch()
            done += size
        return out

    def _memory_phase(self, kind: str) -> dict[str, Any]:
        n = self.plan.s4_jobs
        warm = 500 if not self.plan.quick else 100
        self.redis.flushall()
        if kind == "inflight":
            # Jobs queued 10 minutes upstream, never polled during the measurement (first poll
            # after 600 s): pure in-flight state. The simulator's submit is O(jobs queued), so it
            # is reset between batches; the gateway never asks it about these jobs again.
            self.sim_reset(600, 0)
            gw = self.start_gateway("s4-inflight", GATEWAY_POLL_INTERVAL_SECONDS="600")
            after_batch = lambda: self.sim_reset(600, 0)  # noqa: E731
        else:
            self.sim_reset(0, 0)
            gw = self.start_gateway("s4-cached", GATEWAY_POLL_INTERVAL_SECONDS="0.5")

            def after_batch() -> None:
                self.wait_drained(gw, 120)
                self.sim_reset(0, 0)

        self._submit_batches(gw, warm, f"s4 {kind} warm {time.time_ns()}", after_batch)
        time.sleep(1.0)
        rss0, mem0, keys0 = rss_kb(gw.proc.pid), self._redis_used(), int(self.redis.dbsize())
        t0 = time.monotonic()
        batches = self._submit_batches(gw, n, f"s4 {kind} {time.time_ns()}", after_batch)
        elapsed = time.monotonic() - t0
        time.sleep(1.0)
        rss1, mem1, keys1 = rss_kb(gw.proc.pid), self._redis_used(), int(self.redis.dbsize())
        census = self._key_census(gw.namespace)
        ok = sum(b["ok"] for b in batches)
        scale = 10_000 / n
        res = {
            "jobs_measured": n,
            "submits_ok": ok,
            "scaled_to_10k": n != 10_000,
            "warmup_jobs": warm,
            "seconds": round(elapsed, 1),
            "gateway_rss_before_mb": round(rss0 / 1024, 1),
            "gateway_rss_after_mb": round(rss1 / 1024, 1),
            "gateway_rss_per_10k_mb": round((rss1 - rss0) * scale / 1024, 1),
            "redis_used_before_mb": round(mem0 / 2**20, 2),
            "redis_used_after_mb": round(mem1 / 2**20, 2),
            "redis_used_per_10k_mb": round((mem1 - mem0) * scale / 2**20, 2),
            "redis_bytes_per_job": round((mem1 - mem0) / n),
            "redis_keys_per_job": round((keys1 - keys0) / n, 2),
            "keys_by_kind": census["keys"],
            "mean_key_bytes_by_kind": census["mean_bytes"],
            "in_flight_now": self.in_flight(gw),
            "batches": batches,
        }
        console.print(
            f"  {kind:<9} {n} jobs in {elapsed:.1f} s: gateway RSS "
            f"{res['gateway_rss_before_mb']} -> {res['gateway_rss_after_mb']} MB "
            f"({res['gateway_rss_per_10k_mb']:+} MB per 10k), Redis "
            f"{res['redis_used_before_mb']} -> {res['redis_used_after_mb']} MB "
            f"({res['redis_used_per_10k_mb']} MB per 10k, {res['redis_bytes_per_job']} B/job, "
            f"{res['redis_keys_per_job']} keys/job)"
        )
        return res

    def scenario4(self) -> dict[str, Any]:
        console.rule("[bold]4. memory per 10,000 in-flight jobs and per 10,000 cached results")
        out = {"inflight": self._memory_phase("inflight"), "cached": self._memory_phase("cached")}
        self.stop_gateway()
        self.sim_reset()
        out["baselines"] = {
            "bare_aiohttp_rss_mb": round(rss_kb(self.bare.pid) / 1024, 1) if self.bare else None,
            "naive_proxy_rss_mb": round(rss_kb(self.proxy.pid) / 1024, 1) if self.proxy else None,
            "simulator_rss_mb": round(rss_kb(self.sim.pid) / 1024, 1) if self.sim else None,
        }
        return out


# --- machine ---------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    import aiohttp
    import redis

    info: dict[str, Any] = {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "mem_total_mb": int(Path("/proc/meminfo").read_text().split()[1]) // 1024,
        "aiohttp": aiohttp.__version__,
        "redis_py": redis.__version__,
    }
    with contextlib.suppress(ImportError):
        import uvloop

        info["uvloop"] = uvloop.__version__  # type: ignore[attr-defined]
    from gateway.store.embedded import find_redis_server

    out = subprocess.run(  # noqa: S603
        [str(find_redis_server()), "--version"], capture_output=True, text=True, check=False
    )
    info["redis_server"] = out.stdout.strip()
    return info


# --- main ----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description="runcomfy-gateway benchmarks (see docs/benchmarks.md)"
    )
    parser.add_argument("--quick", action="store_true", help="small counts, no profile: < 2 min")
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="py-spy profiles of the gateway (default: on in the full run)",
    )
    parser.add_argument(
        "--only",
        default="1,2,3,4,5,6,7",
        help="scenarios to run, e.g. 1,2 (5: peers, 6: script costs, 7: workers)",
    )
    parser.add_argument("--peers", action="store_true", help="only the peers: --only 5")
    parser.add_argument("--scripts", action="store_true", help="only script costs: --only 6")
    parser.add_argument(
        "--redis-unix", action="store_true", help="Redis over a unix socket instead of TCP"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON output (default bench/results/latest.json, latest-quick.json with --quick)",
    )
    parser.add_argument("--previous", type=Path, default=RESULTS / "previous.json")
    parser.add_argument(
        "--render",
        type=Path,
        default=None,
        help="run nothing: print the tables of an earlier run's JSON and rewrite its .md",
    )
    args = parser.parse_args()
    if args.render is not None:
        earlier: dict[str, Any] = json.loads(args.render.read_text())
        earlier["targets"] = evaluate_targets(earlier)
        print_tables(console, all_tables(earlier))
        args.render.with_suffix(".md").write_text(markdown(all_tables(earlier)))
        return 0
    plan = QUICK if args.quick else FULL
    if args.profile is not None:
        plan = Plan(**{**plan.__dict__, "profile": args.profile})
    only = {s.strip() for s in args.only.split(",")}
    if args.peers or args.scripts:
        only = {"5"} if args.peers else set()
        only |= {"6"} if args.scripts else set()
    out_path = args.out or RESULTS / ("latest-quick.json" if plan.quick else "latest.json")
    RESULTS.mkdir(parents=True, exist_ok=True)

    work = Path(tempfile.mkdtemp(prefix="rcg-bench-"))
    started_wall = time.time()
    monitor = Monitor()
    monitor.start()
    load_before = loadavg()
    busy0, steal0 = machine_busy_seconds()
    ru_self0 = resource.getrusage(resource.RUSAGE_SELF)
    results: dict[str, Any] = {
        "mode": "quick" if plan.quick else "full",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started_wall)),
        "command": " ".join([Path(sys.executable).name, *map(_shown, sys.argv)]),
        "machine": machine_info(),
        "loadavg_before": load_before,
    }
    console.print(
        f"[bold]runcomfy-gateway benchmarks[/] ({results['mode']}), work dir {work}, "
        f"load average {load_before}"
    )
    bench = Bench(plan, work, args.redis_unix)
    failed = False
    try:
        bench.start_common()
        results["setup"] = {
            "redis": bench.redis_url.split("?")[0].replace(str(work), "<work>"),
            "nginx": bench.nginx_note,
            "wrk": ("wrk " + bench.wrk_version()) if bench.wrk else "not installed",
            "py_spy": Path(bench.pyspy).name if bench.pyspy else "not installed",
            "bench_processes": [
                "redis-server",
                "simulator",
                "gateway (one at a time)",
                "bare aiohttp",
                "aiohttp + 1 Redis script (floor)",
                "naive aiohttp proxy",
            ]
            + (["nginx master + 1 worker"] if bench.nginx else [])
            + ["one load generator at a time (loadgen.py, wrk or workload.py)"],
        }
        timings = results["scenario_seconds"] = {}
        steps = [
            ("s1", "1", bench.scenario1),
            ("peers", "5", bench.scenario5),
            ("s2", "2", bench.scenario2),
            ("profile", "2" if plan.profile else "-", lambda: bench.profile(results["s2"])),
            ("s3", "3", bench.scenario3),
            ("s4", "4", bench.scenario4),
            ("scripts", "6", bench.scenario6),
            ("workers", "7", bench.scenario7),
        ]
        for key, number, step in steps:
            if number in only:
                t0 = time.monotonic()
                results[key] = step()
                timings[key] = round(time.monotonic() - t0, 1)
    except Exception as exc:  # keep what was measured
        failed = True
        console.print_exception()
        results["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        bench.stop_all()
        monitor.stop_event.set()
        monitor.join(timeout=10)
    ru_self1 = resource.getrusage(resource.RUSAGE_SELF)
    ru_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy1, steal1 = machine_busy_seconds()
    busy, steal = busy1 - busy0, steal1 - steal0
    ours = (
        (ru_self1.ru_utime + ru_self1.ru_stime - ru_self0.ru_utime - ru_self0.ru_stime)
        + ru_children.ru_utime
        + ru_children.ru_stime
    )
    wall = time.time() - started_wall
    ncpu = results["machine"]["nproc"]
    results["duration_s"] = round(wall, 1)
    results["loadavg_after"] = loadavg()
    results["load"] = {
        **monitor.report(),
        "machine_cpu_seconds_available": round(wall * ncpu, 1),
        "machine_cpu_seconds_busy": round(busy, 1),
        "bench_cpu_seconds": round(ours, 1),
        "other_cpu_seconds": round(max(0.0, busy - ours), 1),
        "other_cpu_share_pct": round(100 * max(0.0, busy - ours) / (wall * ncpu), 1),
        "steal_cpu_seconds": round(steal, 1),
        "steal_share_pct": round(100 * steal / (wall * ncpu), 1),
    }
    results["notes"] = bench.notes
    results["targets"] = evaluate_targets(results)
    console.rule("[bold]results")
    tables = all_tables(results)
    print_tables(console, tables)
    results["comparison"] = compare_previous(console, results, args.previous, rel(args.previous))
    out_path.write_text(json.dumps(results, indent=2) + "\n")
    md_path = out_path.with_suffix(".md")
    md_path.write_text(markdown(tables))
    ld = results["load"]
    console.print(
        f"load average before {load_before}, after {results['loadavg_after']}; during: 1-min "
        f"min/mean/max {ld['loadavg_1m_min']}/{ld['loadavg_1m_mean']}/{ld['loadavg_1m_max']}; "
        "other processes used "
        f"{ld['other_cpu_seconds']} CPU-s ({ld['other_cpu_share_pct']} % of the machine) "
        f"in {ld['other_processes_using_cpu']} processes; the hypervisor took "
        f"{ld['steal_cpu_seconds']} CPU-s ({ld['steal_share_pct']} %) as steal"
    )
    console.print(f"wrote {rel(out_path)} and {rel(md_path)} in {wall:.0f} s")
    if not failed:
        shutil.rmtree(work, ignore_errors=True)
    else:
        console.print(f"[red]failed[/]; logs kept in {work}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
