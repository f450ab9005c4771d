"""CPU per request of one checkout against another, paired, for refactors that must not slow
the request path.

Wall-clock throughput on a shared two-core machine swings by 2-3x between runs (three quick
runs of ``bench/run.py`` on one tree gave 1,329-2,660 status polls per second), so a change of
a few percent cannot be read from it. This counts CPU instead: one process holds the simulator,
the gateway (embedded Redis, whose own process is not counted) and a client at concurrency 1,
and ``time.process_time`` is read around each phase: misses (distinct prompts), hits (one
prompt again) and status polls. Run it alternately with each checkout's own virtualenv (its
editable install decides which gateway is measured) and compare medians::

    for i in 1 2 3 4 5; do
      ../before/.venv/bin/python bench/cpu_ab.py
      .venv/bin/python bench/cpu_ab.py
    done

Each run prints one JSON line: microseconds of CPU per request of each phase.
``AB_LOG_LEVEL=info`` runs the gateway at its default level (one access line per request)
instead of warning.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import SecretStr

from gateway.settings import Settings
from gateway.simulator import SimulatorConfig, create_simulator_app

MODEL = "google/nano-banana/pro/text-to-image"
ADMIN = "a" * 32


def _create_app(settings: Settings) -> web.Application:
    """The checkout's app, its logs at ``settings.log_level`` as ``serve`` sets them (an access
    line per request would otherwise be rendered for the console, and counted)."""
    try:
        from gateway.observability.logs import configure_logging
        from gateway.web.app import create_app
    except ImportError:  # a checkout from before the package's layers
        from gateway.app import create_app  # type: ignore[import-not-found,no-redef]
        from gateway.logs import configure_logging  # type: ignore[import-not-found,no-redef]
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)


async def _listen(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


async def _cpu_per_call(n: int, call: Callable[[int], Awaitable[None]]) -> float:
    start = time.process_time()
    for i in range(n):
        await call(i)
    return (time.process_time() - start) / n * 1e6


async def measure(polls: int, misses: int) -> dict[str, float]:
    sim_runner, sim = await _listen(
        create_simulator_app(SimulatorConfig(queue_seconds=0.01, run_seconds=0.01))
    )
    settings = Settings(
        upstream_model_api_url=sim,
        upstream_serverless_url=sim,
        upstream_token=SecretStr("sim-token"),
        admin_token=SecretStr(ADMIN),
        data_dir=Path(tempfile.mkdtemp()),
        redis_namespace="ab" + uuid.uuid4().hex[:8],
        log_level=os.environ.get("AB_LOG_LEVEL", "warning"),
        log_format="json",
        poll_rate_per_second=1e6,
        poll_burst=1_000_000,
    )
    gw_runner, gw = await _listen(_create_app(settings))
    try:
        async with aiohttp.ClientSession() as http:
            key = await _team_key(http, gw)
            auth = {"Authorization": f"Bearer {key}"}

            async def submit(prompt: str) -> dict[str, Any]:
                url = f"{gw}/v1/models/{MODEL}"
                async with http.post(url, json={"prompt": prompt}, headers=auth) as resp:
                    assert resp.status == 200, await resp.text()
                    body: dict[str, Any] = await resp.json()
                    return body

            async def status(rid: str) -> str:
                async with http.get(f"{gw}/v1/requests/{rid}/status", headers=auth) as resp:
                    assert resp.status == 200, await resp.text()
                    return str((await resp.json()).get("status"))

            rid = (await submit("cached"))["request_id"]
            for _ in range(200):  # the simulator's job takes about 20 ms
                if await status(rid) in ("completed", "succeeded"):
                    break
                await asyncio.sleep(0.05)

            async def miss(i: int) -> None:
                await submit(f"miss {i} {uuid.uuid4()}")

            async def hit(_: int) -> None:
                await submit("cached")

            async def poll(_: int) -> None:
                await status(rid)

            return {
                "miss_cpu_us": await _cpu_per_call(misses, miss),
                "hit_cpu_us": await _cpu_per_call(polls, hit),
                "status_cpu_us": await _cpu_per_call(polls, poll),
            }
    finally:
        await gw_runner.cleanup()
        await sim_runner.cleanup()


async def _team_key(http: aiohttp.ClientSession, gw: str) -> str:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with http.post(f"{gw}/admin/v1/teams", json={"team_id": "ab"}, headers=admin) as resp:
        assert resp.status == 201, await resp.text()
    url = f"{gw}/admin/v1/teams/ab/keys"
    async with http.post(url, json={"name": "ab"}, headers=admin) as resp:
        assert resp.status == 201, await resp.text()
        return str((await resp.json())["key"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=800, help="hits, and status polls")
    parser.add_argument("--misses", type=int, default=30)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.polls, args.misses))), file=sys.__stdout__)


if __name__ == "__main__":
    main()
