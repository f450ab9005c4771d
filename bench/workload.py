"""A realistic client workload for the upstream-savings scenario, run as its own process.

``submits`` Model API submits arrive at a steady rate over ``arrival_s`` seconds; their prompts
are drawn (seeded) from ``distinct`` different prompts, each used at least once. After each
submit, ``pollers`` independent clients poll that request's ``/status`` every ``poll_interval``
seconds (first poll at a random offset within the interval) until it is finished; then the
submitter fetches ``/result?include_cost=true`` once and adds up ``cost``.

The same workload runs straight against the simulator (every submit is a RunComfy job and every
poll a RunComfy call) and through the gateway; ``bench/run.py`` counts what reached the simulator.
Output: one JSON object (see ``Stats.to_json``). Only 127.0.0.1 is accepted as a target.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from loadgen import run_spec_cli

DONE_WORDS = frozenset({"completed", "succeeded", "failed", "cancelled", "canceled"})


@dataclass
class Stats:
    submits_ok: int = 0
    submit_errors: Counter[str] = field(default_factory=Counter)
    cache_outcomes: Counter[str] = field(default_factory=Counter)
    status_polls: int = 0
    poll_errors: Counter[str] = field(default_factory=Counter)
    results: int = 0
    result_states: Counter[str] = field(default_factory=Counter)
    cost_usd: float = 0.0
    job_latency: list[float] = field(default_factory=list)  # submit sent -> first poll saw done
    unfinished: int = 0

    def to_json(self, elapsed: float) -> dict[str, Any]:
        lat = sorted(self.job_latency)

        def pct(p: float) -> float | None:
            if not lat:
                return None
            return round(lat[min(len(lat) - 1, max(0, int(p / 100 * len(lat) + 0.999) - 1))], 3)

        return {
            "submits_ok": self.submits_ok,
            "submit_errors": dict(self.submit_errors),
            "cache_outcomes": dict(self.cache_outcomes),
            "client_status_polls": self.status_polls,
            "poll_errors": dict(self.poll_errors),
            "results": self.results,
            "result_states": dict(self.result_states),
            "cost_usd_seen_by_clients": round(self.cost_usd, 6),
            "job_done_p50_s": pct(50),
            "job_done_p99_s": pct(99),
            "unfinished": self.unfinished,
            "elapsed_s": round(elapsed, 3),
        }


def prompt_plan(submits: int, distinct: int, seed: int) -> list[int]:
    """Which prompt each submit uses: every one of ``distinct`` at least once, then random."""
    rng = random.Random(seed)
    plan = list(range(min(distinct, submits)))
    plan += [rng.randrange(distinct) for _ in range(submits - len(plan))]
    rng.shuffle(plan)
    return plan


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    base = spec["base_url"].rstrip("/")
    if urlsplit(base).hostname != "127.0.0.1":
        raise SystemExit("refusing to send load anywhere but 127.0.0.1")
    headers = {"Authorization": f"Bearer {spec['token']}"}
    submits, distinct = int(spec["submits"]), int(spec["distinct"])
    pollers, interval = int(spec["pollers"]), float(spec["poll_interval"])
    arrival = float(spec["arrival_s"])
    deadline = time.monotonic() + float(spec.get("max_seconds", 120.0))
    plan = prompt_plan(submits, distinct, int(spec.get("seed", 8)))
    rng = random.Random(int(spec.get("seed", 8)) + 1)
    stats = Stats()
    connector = aiohttp.TCPConnector(limit=int(spec.get("connections", 256)))
    timeout = aiohttp.ClientTimeout(total=30)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def poll(rid: str, sent: float, first_done: list[float]) -> None:
            await asyncio.sleep(rng.uniform(0, interval))
            url = f"{base}/v1/requests/{rid}/status"
            while time.monotonic() < deadline:
                try:
                    async with session.get(url, headers=headers) as resp:
                        body = await resp.json(content_type=None)
                        stats.status_polls += 1
                        if resp.status != 200:
                            stats.poll_errors[str(resp.status)] += 1
                        elif body.get("status") in DONE_WORDS:
                            if not first_done:
                                first_done.append(time.monotonic() - sent)
                            return
                except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                    stats.poll_errors[type(exc).__name__] += 1
                await asyncio.sleep(interval)
            stats.unfinished += 1

        async def one(i: int, prompt: int) -> None:
            await asyncio.sleep(i * arrival / submits)
            body = {"prompt": f"{spec['prefix']} prompt number {prompt}"}
            sent = time.monotonic()
            try:
                async with session.post(
                    f"{base}/v1/models/{spec['model']}", headers=headers, json=body
                ) as resp:
                    answer = await resp.json(content_type=None)
                    if resp.status != 200:
                        stats.submit_errors[str(resp.status)] += 1
                        return
                    stats.cache_outcomes[resp.headers.get("X-Gateway-Cache", "direct")] += 1
            except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                stats.submit_errors[type(exc).__name__] += 1
                return
            stats.submits_ok += 1
            rid = answer["request_id"]
            first_done: list[float] = []
            await asyncio.gather(*(poll(rid, sent, first_done) for _ in range(pollers)))
            if first_done:
                stats.job_latency.append(first_done[0])
            try:
                async with session.get(
                    f"{base}/v1/requests/{rid}/result",
                    headers=headers,
                    params={"include_cost": "true"},
                ) as resp:
                    result = await resp.json(content_type=None)
                    stats.results += 1
                    stats.result_states[str(result.get("status"))] += 1
                    cost = result.get("cost")
                    if isinstance(cost, int | float):
                        stats.cost_usd += float(cost)
            except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                stats.poll_errors["result_" + type(exc).__name__] += 1

        started = time.monotonic()
        await asyncio.gather(*(one(i, p) for i, p in enumerate(plan)))
        elapsed = time.monotonic() - started
    out = stats.to_json(elapsed)
    out["spec"] = {k: v for k, v in spec.items() if k != "token"}
    return out


def main() -> None:
    run_spec_cli("bench workload (upstream savings)", run)


if __name__ == "__main__":
    main()
