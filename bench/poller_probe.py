"""What the poller costs a client: misses at a steady rate, poller on vs deferred.

Starts an embedded Redis, the simulator and, per run, one gateway whose event loop carries two
probes: a stall probe (a 2 ms sleep in a loop; how late it wakes is how long something else held
the loop) and counters around the poller (the size of each claim, polls in flight, the most
polls started within 10 ms). A client in this process submits distinct prompts (every one a
miss) one at a time at a steady rate and times each. Each repetition runs "on" (the default poll
interval) and "deferred" (the first poll 10 minutes away, as bench/run.py's diagnostic cell), in
alternating order, so drift of a shared machine falls on both; "split" serves with ``--role api``
beside a ``--role poller`` process (its poller counters are reported, the stalls are the API's).

    python bench/poller_probe.py --rate 150 --seconds 8 --repeat 3 [--modes on,deferred]
    python bench/poller_probe.py ... --env GATEWAY_POLL_CONCURRENCY=8   # any gateway setting

Prints one JSON line per run, then per mode each figure's median and its runs.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

PY = sys.executable
SIM_TOKEN = "sim-token"  # noqa: S105 - the simulator's well-known test token
ADMIN_TOKEN = "probe-admin-token-0123456789"  # noqa: S105 - a throwaway local gateway's
MODEL = "google/nano-banana/pro/text-to-image"
PROBE_OUT = "POLLER_PROBE_OUT"


# --- inside the gateway process ------------------------------------------------------------------


class Probe:
    """Loop stalls and poller counters of this process, written to a JSON file."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.lateness: list[float] = []
        self.claims: Counter[int] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.starts: list[float] = []

    def install(self) -> None:
        from gateway.jobs.poller import Poller
        from gateway.jobs.schedule import PollSchedule

        probe = self
        claim_due, poll_once = PollSchedule.claim_due, Poller.poll_once

        async def counted_claim(self: PollSchedule, lease: float, batch: int) -> Any:
            claimed = await claim_due(self, lease, batch)
            if claimed:
                probe.claims[len(claimed)] += 1
            return claimed

        async def counted_poll(self: Poller, shard: str, jid: str) -> None:
            probe.starts.append(time.monotonic())
            probe.in_flight += 1
            probe.max_in_flight = max(probe.max_in_flight, probe.in_flight)
            try:
                await poll_once(self, shard, jid)
            finally:
                probe.in_flight -= 1

        PollSchedule.claim_due = counted_claim  # type: ignore[method-assign]
        Poller.poll_once = counted_poll  # type: ignore[method-assign]

    async def ctx(self, _: Any) -> AsyncIterator[None]:
        task = asyncio.create_task(self._watch())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self.write()

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        last_write = loop.time()
        while True:
            before = loop.time()
            await asyncio.sleep(0.002)
            now = loop.time()
            self.lateness.append(now - before - 0.002)
            if now - last_write > 0.5:
                self.write()
                last_write = now

    def write(self) -> None:
        late = sorted(self.lateness)
        starts = self.starts
        burst = max(
            (bisect.bisect_left(starts, t + 0.010) - i for i, t in enumerate(starts)), default=0
        )
        sizes = sorted(self.claims.elements())
        self.out.write_text(
            json.dumps(
                {
                    "stall_max_ms": round(late[-1] * 1000, 2) if late else 0,
                    "stall_p99_ms": round(late[int(len(late) * 0.99)] * 1000, 2) if late else 0,
                    "stalls_over_5ms": sum(1 for x in late if x > 0.005),
                    "claims": len(sizes),
                    "claim_max": sizes[-1] if sizes else 0,
                    "claim_mean": round(statistics.fmean(sizes), 1) if sizes else 0,
                    "polls": len(starts),
                    "polls_in_flight_max": self.max_in_flight,
                    "polls_started_in_10ms_max": burst,
                }
            )
        )


def serve_probed(port: int) -> None:
    """``gateway serve`` with the probes in its event loop."""
    import gateway.web.app as web_app
    from gateway.commands import main

    probe = Probe(Path(os.environ[PROBE_OUT]))
    probe.install()
    create_app = web_app.create_app

    def probed(settings: Any) -> Any:
        app = create_app(settings)
        app.cleanup_ctx.append(probe.ctx)
        return app

    web_app.create_app = probed  # type: ignore[assignment]
    sys.argv = ["gateway", "serve", "--port", str(port)]
    main()


# --- the driver ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call(port: int, method: str, path: str, body: Any = None, token: str = "") -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request(method, path, json.dumps(body) if body is not None else None, headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    assert resp.status < 300, (method, path, resp.status, data[:300])
    return json.loads(data) if data else None


def wait_up(port: int, path: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        assert proc.poll() is None, f"exited early ({path})"
        with contextlib.suppress(OSError, AssertionError):
            call(port, "GET", path)
            return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} never answered {path}")


def spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(  # noqa: S603 - fixed argv
            args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)


def steady(port: int, key: str, rate: float, seconds: float, label: str) -> list[float]:
    """Latencies (s) of sequential misses sent every 1/rate s (or back to back if slower)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    latencies = []
    start = time.perf_counter()
    i = 0
    while (now := time.perf_counter()) - start < seconds:
        due = start + i / rate
        if due > now:
            time.sleep(due - now)
        body = json.dumps({"prompt": f"{label} {i}"})
        t0 = time.perf_counter()
        conn.request("POST", f"/v1/models/{MODEL}", body, headers)
        resp = conn.getresponse()
        data = resp.read()
        latencies.append(time.perf_counter() - t0)
        assert resp.status == 200, (resp.status, data[:300])
        i += 1
    conn.close()
    return latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def one_run(
    args: argparse.Namespace, work: Path, redis_url: str, sim: int, mode: str, n: int
) -> dict[str, Any]:
    port, out = free_port(), work / f"probe-{mode}-{n}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        GATEWAY_UPSTREAM_MODEL_API_URL=f"http://127.0.0.1:{sim}",
        GATEWAY_UPSTREAM_SERVERLESS_URL=f"http://127.0.0.1:{sim}",
        GATEWAY_UPSTREAM_TOKEN=SIM_TOKEN,
        GATEWAY_ADMIN_TOKEN=ADMIN_TOKEN,
        GATEWAY_REDIS_URL=redis_url,
        GATEWAY_REDIS_NAMESPACE=f"probe{mode}{n}",
        GATEWAY_LOG_LEVEL="warning",
        GATEWAY_DATA_DIR=str(work / "gwdata"),
        GATEWAY_POLL_RATE_PER_SECOND="0",
        **{PROBE_OUT: str(out)},
    )
    env.update(dict(kv.split("=", 1) for kv in args.env))
    if mode == "deferred":
        env["GATEWAY_POLL_INTERVAL_SECONDS"] = "600"
    call(sim, "POST", "/_sim/reset", {})
    config = {"queue_seconds": 0, "run_seconds": args.run_seconds, "balance_usd": 1e9}
    call(sim, "POST", "/_sim/config", config)
    procs = []
    if mode == "split":  # serve --role api, beside a serve --role poller that gets no traffic
        port2 = free_port()
        env2 = {**env, PROBE_OUT: str(work / f"probe-poller-{n}.json"), "GATEWAY_ROLE": "poller"}
        procs.append(spawn([PY, __file__, "--serve", str(port2)], work / f"gwp-{n}.log", env2))
        wait_up(port2, "/readyz", procs[-1])
        env["GATEWAY_ROLE"] = "api"
    procs.append(spawn([PY, __file__, "--serve", str(port)], work / f"gw-{mode}-{n}.log", env))
    try:
        wait_up(port, "/readyz", procs[-1])
        admin = ADMIN_TOKEN
        call(port, "POST", "/admin/v1/teams", {"team_id": "probe"}, admin)
        key = call(port, "POST", "/admin/v1/teams/probe/keys", {"name": "probe"}, admin)["key"]
        steady(port, key, args.rate, 1.0, f"warm {mode} {n} {time.time_ns()}")
        lat = steady(port, key, args.rate, args.seconds, f"run {mode} {n} {time.time_ns()}")
    finally:
        for proc in procs:
            stop(proc)
    probe = json.loads(out.read_text())
    if mode == "split":  # the poller process's counters
        polled = json.loads((work / f"probe-poller-{n}.json").read_text())
        probe.update({k: v for k, v in polled.items() if not k.startswith("stall")})
    return {
        "mode": mode,
        "rep": n,
        "requests": len(lat),
        "p50_ms": round(pct(lat, 0.5) * 1000, 3),
        "p99_ms": round(pct(lat, 0.99) * 1000, 3),
        "max_ms": round(max(lat) * 1000, 3),
        **probe,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=150.0, help="submits per second")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--run-seconds", type=float, default=0.0, help="simulated job length")
    parser.add_argument("--env", action="append", default=[], help="GATEWAY_X=value")
    parser.add_argument("--modes", default="on,deferred,split")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_probed(args.serve)
        return
    from gateway.store.embedded import EmbeddedRedis

    with tempfile.TemporaryDirectory(prefix="poller-probe-") as tmp:
        work = Path(tmp)
        redis = EmbeddedRedis(work / "redis", persistent=False, port=free_port())
        redis.start()
        sim_port = free_port()
        sim = spawn([PY, "-m", "gateway", "simulator", "--port", str(sim_port)], work / "sim.log")
        runs: list[dict[str, Any]] = []
        try:
            wait_up(sim_port, "/_sim/config", sim)
            modes = args.modes.split(",")
            for n in range(args.repeat):
                for mode in modes if n % 2 == 0 else modes[::-1]:
                    runs.append(one_run(args, work, redis.url, sim_port, mode, n))
                    print(json.dumps(runs[-1]), flush=True)
        finally:
            stop(sim)
            redis.stop()
    summary = {}
    for mode in args.modes.split(","):
        mine = [r for r in runs if r["mode"] == mode]
        summary[mode] = {
            k: {"median": statistics.median(r[k] for r in mine), "runs": [r[k] for r in mine]}
            for k in (
                "p50_ms",
                "p99_ms",
                "stall_max_ms",
                "stall_p99_ms",
                "claim_max",
                "polls_started_in_10ms_max",
            )
        }
    print(json.dumps({"summary": summary, "env": args.env, "rate": args.rate}, indent=1))


if __name__ == "__main__":
    main()
