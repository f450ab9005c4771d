"""A small async HTTP load generator: N concurrent workers, a fixed request count or duration.

Run by ``bench/run.py`` as its own process, so the load does not share an event loop with any
server under test. Every request's latency is taken with ``time.perf_counter`` around the whole
exchange (send, wait, read the full body); the output is one JSON object:

    {"requests": n, "ok": n, "errors": {...}, "elapsed_s": s, "rps": r,
     "p50_ms": ..., "p90_ms": ..., "p99_ms": ..., "max_ms": ..., "mean_ms": ...,
     "cpu_s": seconds of CPU this process used while measuring}

Spec (JSON, from ``--spec FILE``)::

    {"url": "http://127.0.0.1:8080/v1/models/...", "method": "POST",
     "headers": {"Authorization": "Bearer ..."},
     "body": "{\"prompt\": \"bench %%I%%\"}",   # %%I%% -> a distinct number per request
     "concurrency": 16, "requests": 2000,          # or "duration": 5.0
     "warmup": 100, "expect": 200, "max_seconds": 120}

Only 127.0.0.1 URLs are accepted: this tool never sends traffic anywhere else.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

import aiohttp

PLACEHOLDER = "%%I%%"


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarise(latencies: list[float], statuses: Counter[str], elapsed: float) -> dict[str, Any]:
    ordered = sorted(latencies)
    ms = [v * 1000.0 for v in ordered]
    ok = statuses.get("ok", 0)
    return {
        "requests": len(latencies),
        "ok": ok,
        "errors": {k: v for k, v in statuses.items() if k != "ok"},
        "elapsed_s": round(elapsed, 4),
        "rps": round(len(latencies) / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": round(percentile(ms, 50), 3),
        "p90_ms": round(percentile(ms, 90), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "max_ms": round(ms[-1], 3) if ms else float("nan"),
        "mean_ms": round(sum(ms) / len(ms), 3) if ms else float("nan"),
    }


async def run_phase(
    session: aiohttp.ClientSession,
    spec: dict[str, Any],
    count: int | None,
    duration: float | None,
    first_index: int,
    hard_deadline: float,
) -> tuple[list[float], Counter[str], float]:
    """Run one phase (warm-up or measurement) with ``spec['concurrency']`` workers."""
    method = spec.get("method", "GET")
    url = spec["url"]
    headers = spec.get("headers", {})
    body_template: str | None = spec.get("body")
    template = body_template if body_template is not None and PLACEHOLDER in body_template else None
    static_body = body_template.encode() if body_template is not None and template is None else None
    expect = int(spec.get("expect", 200))
    counter = itertools.count(first_index)
    last_index = first_index + count if count is not None else None
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    started = time.perf_counter()
    stop_at = min(hard_deadline, started + duration) if duration is not None else hard_deadline

    async def worker() -> None:
        perf = time.perf_counter
        while True:
            i = next(counter)
            if last_index is not None and i >= last_index:
                return
            if perf() >= stop_at:
                return
            data = template.replace(PLACEHOLDER, str(i)).encode() if template else static_body
            t0 = perf()
            try:
                async with session.request(method, url, headers=headers, data=data) as resp:
                    await resp.read()
                    status = resp.status
            except (TimeoutError, aiohttp.ClientError) as exc:
                latencies.append(perf() - t0)
                statuses[type(exc).__name__] += 1
                continue
            latencies.append(perf() - t0)
            statuses["ok" if status == expect else str(status)] += 1

    await asyncio.gather(*(worker() for _ in range(int(spec["concurrency"]))))
    return latencies, statuses, time.perf_counter() - started


async def main_async(spec: dict[str, Any]) -> dict[str, Any]:
    host = urlsplit(spec["url"]).hostname
    if host != "127.0.0.1":
        raise SystemExit(f"refusing to send load to {host!r}: only 127.0.0.1 is allowed")
    concurrency = int(spec["concurrency"])
    hard_deadline = time.perf_counter() + float(spec.get("max_seconds", 120.0))
    timeout = aiohttp.ClientTimeout(total=float(spec.get("timeout", 30.0)))
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, skip_auto_headers=("User-Agent",)
    ) as session:
        warmup = int(spec.get("warmup", 0))
        if warmup:
            await run_phase(session, spec, warmup, None, 0, hard_deadline)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        latencies, statuses, elapsed = await run_phase(
            session,
            spec,
            spec.get("requests"),
            spec.get("duration"),
            warmup,
            hard_deadline,
        )
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    out = summarise(latencies, statuses, elapsed)
    out["concurrency"] = concurrency
    out["cpu_s"] = round((cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime), 3)
    out["timed_out"] = time.perf_counter() >= hard_deadline
    return out


def run_spec_cli(
    description: str, run: Callable[[dict[str, Any]], Coroutine[Any, Any, Any]]
) -> None:
    """The command line of a load process (this one and ``workload.py``): read the JSON spec,
    run it on uvloop when installed, write the JSON result to ``--out`` or stdout."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--spec", required=True, help="JSON spec file")
    parser.add_argument("--out", help="write the JSON result here (default: stdout)")
    args = parser.parse_args()
    with open(args.spec, encoding="utf-8") as fh:
        spec = json.load(fh)
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover
        pass
    text = json.dumps(asyncio.run(run(spec)))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text + "\n")


def main() -> None:
    run_spec_cli(__doc__.splitlines()[0], main_async)


if __name__ == "__main__":
    main()
