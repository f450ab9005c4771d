"""Body attacks before credentials: what they do to another team's status polls and to memory.

One command, rerunnable: ``python bench/attack.py [--source DIR] [--label NAME]``. It starts the
simulator and one ``serve`` process (embedded Redis, in a temporary data directory) from the
gateway source in ``DIR`` (default: this checkout; pass a checkout of an older commit to measure
"before"), creates two teams, and measures a victim team's status polls (4 clients in a closed
loop) while each attack runs from 3 separate attacker processes:

* ``none``: no attack (the baseline);
* ``gzip-no-key``: a 91 KB gzip body that inflates to 90 MiB, posted with no credential to an
  unknown path;
* ``forged-key``: an 80 MiB JSON body posted to a submit route with a well-formed but unissued key.

It reports the victim's p50/p99 and req/s, the gateway's and its Redis's peak RSS, and how many
attack requests were answered (or cut off unread), as a markdown table (and JSON with
``--json``). Figures depend on
the machine; compare runs made on the same machine, one after the other.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

ADMIN = "bench-attack-admin-token"
NANO = "google/nano-banana/pro/text-to-image"
FORGED = "rcg_aaaaaaaabbbbbbbb_" + "x" * 40
ATTACKERS = 3
POLLERS = 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    """The process's children, whichever of its threads started them (the embedded Redis is
    started from an executor thread)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def wait_ready(url: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 (loopback)
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not become ready")


def attack_payload(kind: str, port: int) -> bytes:
    """The bytes one attack request sends (built once per attacker process)."""
    if kind == "gzip-no-key":
        body = gzip.compress(b"\0" * (90 * 1024 * 1024), compresslevel=9)
        head = (
            f"POST /no/such/path HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Encoding: gzip\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body
    body = b'{"prompt": "' + b"x" * (80 * 1024 * 1024) + b'"}'
    head = (
        f"POST /v1/models/{NANO} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {FORGED}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def attacker(kind: str, port: int, until: float, answered: Any) -> None:
    """One attacker process: send the attack request again and again until ``until``."""
    payload = attack_payload(kind, port)
    while time.time() < until:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                try:
                    sock.sendall(payload)
                    sock.shutdown(socket.SHUT_WR)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # answered and closed before the whole body was sent: it was not read
                while sock.recv(65536):
                    pass
        except ConnectionResetError:
            pass
        except OSError:
            time.sleep(0.05)
            continue
        with answered.get_lock():
            answered.value += 1


async def poll(url: str, key: str, rid: str, until: float) -> list[float]:
    """The victim: POLLERS clients polling one job's status in a closed loop."""
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as session:

        async def one() -> None:
            while time.time() < until:
                started = time.perf_counter()
                async with session.get(f"{url}/v1/requests/{rid}/status", headers=headers) as r:
                    await r.read()
                    if r.status == 200:
                        latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(one() for _ in range(POLLERS)))
    return latencies


async def setup(url: str) -> tuple[str, str]:
    """A victim team with one submitted job, and an attacker team nobody uses."""
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with aiohttp.ClientSession() as session:
        await session.post(f"{url}/admin/v1/teams", json={"team_id": "victim"}, headers=admin)
        async with session.post(f"{url}/admin/v1/teams/victim/keys", json={}, headers=admin) as r:
            key = str((await r.json())["key"])
        submit = f"{url}/v1/models/{NANO}"
        auth = {"Authorization": f"Bearer {key}"}
        async with session.post(submit, json={"prompt": "lighthouse"}, headers=auth) as r:
            rid = str((await r.json())["request_id"])
    return key, rid


def measure(kind: str, url: str, port: int, pid: int, key: str, rid: str, seconds: float) -> Any:
    until = time.time() + seconds
    answered = multiprocessing.Value("i", 0)
    procs = [
        multiprocessing.Process(target=attacker, args=(kind, port, until, answered))
        for _ in range(ATTACKERS if kind != "none" else 0)
    ]
    peak = {"gateway": rss_kb(pid), "redis": sum(rss_kb(c) for c in children(pid))}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak["gateway"] = max(peak["gateway"], rss_kb(pid))
            peak["redis"] = max(peak["redis"], sum(rss_kb(c) for c in children(pid)))
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for proc in procs:
        proc.start()
    latencies = sorted(asyncio.run(poll(url, key, rid, until)))
    for proc in procs:
        proc.join(timeout=60)
    stop.set()
    sampler.join()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {
        "attack": kind,
        "polls": len(latencies),
        "polls_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": round(pct(0.50), 2) if latencies else None,
        "p99_ms": round(pct(0.99), 2) if latencies else None,
        "gateway_peak_rss_mib": round(peak["gateway"] / 1024, 1),
        "redis_peak_rss_mib": round(peak["redis"] / 1024, 1),
        "attacks_answered": int(answered.value),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--label", default="this checkout")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    sim_port, port = free_port(), free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(args.source.resolve()),
        "GATEWAY_UPSTREAM_MODEL_API_URL": f"http://127.0.0.1:{sim_port}",
        "GATEWAY_UPSTREAM_SERVERLESS_URL": f"http://127.0.0.1:{sim_port}",
        "GATEWAY_UPSTREAM_TOKEN": "bench-upstream-token",
        "GATEWAY_ADMIN_TOKEN": ADMIN,
        "GATEWAY_LOG_LEVEL": "warning",
        "GATEWAY_POLL_RATE_PER_SECOND": "0",
    }
    with tempfile.TemporaryDirectory() as data:
        env["GATEWAY_DATA_DIR"] = data
        sim = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            [sys.executable, "-m", "gateway", "simulator", "--port", str(sim_port),
             "--token", "bench-upstream-token", "--queue-seconds", "3600"],
            env=env, cwd=data, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        gw = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "gateway", "serve", "--port", str(port)],
            env=env, cwd=data, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(f"http://127.0.0.1:{sim_port}/_sim/calls")
            wait_ready(f"{url}/readyz")
            key, rid = asyncio.run(setup(url))
            rows = [
                measure(kind, url, port, gw.pid, key, rid, args.seconds)
                for kind in ("none", "gzip-no-key", "forged-key")
            ]
        finally:
            for proc in (gw, sim):
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    print(f"### {args.label}\n")
    print(
        "| attack | victim polls/s | p50 ms | p99 ms | gateway peak RSS MiB | Redis peak RSS MiB "
        "| attack requests answered |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['attack']} | {r['polls_per_s']} | {r['p50_ms']} | {r['p99_ms']} "
              f"| {r['gateway_peak_rss_mib']} | {r['redis_peak_rss_mib']} "
              f"| {r['attacks_answered']} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"label": args.label, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
