#!/usr/bin/env python
"""The gateway process's CPU per request under load, for paired runs between checkouts.

``bench/cpu_ab.py`` counts client, gateway and simulator in one process, so the client's own
cost dilutes a change in the gateway. This one runs the gateway as ``serve`` does, in its own
process, loads it with wrk at 16 connections, and reads that process's CPU from ``/proc``
around a timed run: microseconds of gateway CPU per request on the status poll and the cache
hit path (and the Redis floor server of ``bench/servers.py``, for scale). Give each checkout's
virtualenv Python with ``--gateway-python`` and alternate::

    for i in 1 2 3 4; do
      .venv/bin/python bench/server_cpu.py --gateway-python ../before/.venv/bin/python
      .venv/bin/python bench/server_cpu.py
    done

CPU time, unlike throughput, moves little when the machine is shared, though not nothing
(caches and other processes' wake-ups): compare medians of alternated runs. Needs wrk.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from procs import free_port, http, proc_stat, wait_http  # noqa: E402
from servers import FLOOR_KEY  # noqa: E402
from wrk import WRK_LUA, parse_wrk  # noqa: E402

from gateway.store.embedded import EmbeddedRedis  # noqa: E402

MODEL = "google/nano-banana/pro/text-to-image"
ADMIN = "a" * 32


def _cpu_seconds(pid: int) -> float:
    stat = proc_stat(pid)
    return stat[1] if stat else 0.0


def _wrk(script: Path, url: str, seconds: int) -> int:
    out = subprocess.run(  # noqa: S603
        ["wrk", "-t1", "-c16", f"-d{seconds}s", "-s", str(script), url],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = parse_wrk(out)
    if result["errors"]:
        raise SystemExit(f"wrk saw errors:\n{out}")
    return int(result["requests"])


def _port(url: str) -> str:
    return url.rsplit(":", 1)[1]


def _spawn(
    argv: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Started in the log's directory, not here: ``python -m gateway`` would otherwise import
    this checkout's package rather than the one installed for ``--gateway-python``."""
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(  # noqa: S603
            argv, env=env, cwd=log.parent, stdout=out, stderr=subprocess.STDOUT
        )


def measure(gateway_python: str, seconds: int, work: Path) -> dict[str, float]:
    redis = EmbeddedRedis(work / "redis", persistent=False, port=free_port())
    redis.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        sim = f"http://127.0.0.1:{free_port()}"
        sim_args = ["simulator", "--port", _port(sim), "--queue-seconds", "0", "--run-seconds", "0"]
        procs.append(_spawn([sys.executable, "-m", "gateway", *sim_args], work / "simulator.log"))
        wait_http(f"{sim}/_sim/config", None)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env.update(
            GATEWAY_UPSTREAM_MODEL_API_URL=sim,
            GATEWAY_UPSTREAM_SERVERLESS_URL=sim,
            GATEWAY_UPSTREAM_TOKEN="sim-token",  # noqa: S106 - the simulator's test token
            GATEWAY_ADMIN_TOKEN=ADMIN,
            GATEWAY_REDIS_URL=redis.url,
            GATEWAY_LOG_LEVEL="warning",
            GATEWAY_DATA_DIR=str(work / "gateway"),
            GATEWAY_POLL_RATE_PER_SECOND="0",
        )
        gw = f"http://127.0.0.1:{free_port()}"
        serve = [gateway_python, "-m", "gateway", "serve", "--port", _port(gw)]
        gateway = _spawn(serve, work / "gateway.log", env)
        procs.append(gateway)
        try:
            wait_http(f"{gw}/readyz", None)
        except RuntimeError:
            raise SystemExit((work / "gateway.log").read_text()[-2000:]) from None
        floor_url = f"http://127.0.0.1:{free_port()}"
        floor_args = ["--mode", "redis", "--port", _port(floor_url), "--redis", redis.url]
        floor = _spawn([sys.executable, str(BENCH / "servers.py"), *floor_args], work / "floor.log")
        procs.append(floor)
        wait_http(f"{floor_url}/", None, ok=(401,))
        admin = {"Authorization": f"Bearer {ADMIN}"}
        http("POST", f"{gw}/admin/v1/teams", {"team_id": "cpu"}, admin)
        key = http("POST", f"{gw}/admin/v1/teams/cpu/keys", {"name": "cpu"}, admin)[2]["key"]
        auth = {"Authorization": f"Bearer {key}"}
        rid = http("POST", f"{gw}/v1/models/{MODEL}", {"prompt": "cached"}, auth)[2]["request_id"]
        for _ in range(200):
            status = http("GET", f"{gw}/v1/requests/{rid}/status", None, auth)[2]["status"]
            if status in ("completed", "succeeded"):
                break
            time.sleep(0.05)
        cells = {
            "status": (f"{gw}/v1/requests/{rid}/status", "GET", "nil", key, gateway.pid),
            "hit": (
                f"{gw}/v1/models/{MODEL}",
                "POST",
                json.dumps(json.dumps({"prompt": "cached"})),  # a Lua string of the JSON body
                key,
                gateway.pid,
            ),
            "floor": (f"{floor_url}/", "GET", "nil", FLOOR_KEY, floor.pid),
        }
        out: dict[str, float] = {}
        for name, (url, method, body, token, pid) in cells.items():
            script = work / f"{name}.lua"
            script.write_text(WRK_LUA.format(method=method, auth=f"Bearer {token}", body=body))
            _wrk(script, url, 1)  # warm-up
            before = _cpu_seconds(pid)
            requests = _wrk(script, url, seconds)
            out[f"{name}_cpu_us"] = round((_cpu_seconds(pid) - before) / requests * 1e6, 1)
        return out
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait()
        redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway-python", default=sys.executable, help="the checkout's Python")
    parser.add_argument("--seconds", type=int, default=4)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed")
    with tempfile.TemporaryDirectory(prefix="rcg-cpu-") as work:
        print(json.dumps(measure(args.gateway_python, args.seconds, Path(work))))


if __name__ == "__main__":
    main()
