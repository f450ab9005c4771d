"""wrk, the load generator of the throughput cells: the Lua script each cell gives it, and its
``--latency`` output as numbers. Shared by ``bench/run.py`` and ``bench/server_cpu.py``."""

from __future__ import annotations

import re
from typing import Any

WRK_LUA = """
wrk.method = "{method}"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "{auth}"
"""
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse_wrk(text: str) -> dict[str, Any]:
    def lat(label: str) -> float | None:
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        return round(float(m[1]) * _UNITS[m[2]], 3) if m else None

    reqs = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    n = int(reqs[1]) if reqs else 0
    errors: dict[str, int] = {}
    if non2xx:
        errors["non_2xx"] = int(non2xx[1])
    if sock and any(int(x) for x in sock.groups()):
        errors["socket"] = sum(int(x) for x in sock.groups())
    return {
        "requests": n,
        "ok": n - errors.get("non_2xx", 0),
        "errors": errors,
        "elapsed_s": round(float(reqs[2]) * _UNITS[reqs[3]] / 1000, 3) if reqs else None,
        "rps": float(rps[1]) if rps else None,
        "p50_ms": lat("50"),
        "p90_ms": lat("90"),
        "p99_ms": lat("99"),
    }
