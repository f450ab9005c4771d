"""Limits hold exactly across real replica processes and hundreds of concurrent clients.

Three ``serve`` processes share one Redis; 200 clients per process submit at once. Each check and
its charge is one Lua script against Redis's clock, so no interleaving of replicas can admit more
than a limit allows, and none is refused while the limit still has room. Both tests also run
against a real Redis Cluster of three primaries, the team's keys on one of them.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import ADMIN_TOKEN, Simulator, assert_error_shape, on_single_and_cluster
from tests.replicas import Replica, Replicas, call, client_pool, problems

pytestmark = pytest.mark.slow  # three real replicas under a stampede


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with client_pool() as session:
        yield session


FLUX = "blackforestlabs/flux-2/flash/text-to-image"  # $0.012 per image
CLIENTS_PER_REPLICA = 200


async def team_with(http: aiohttp.ClientSession, replica: Replica, team: str, **limits: Any) -> str:
    status, body, _ = await call(
        http, replica, "POST", "/admin/v1/teams", key=ADMIN_TOKEN, json={"team_id": team}
    )
    assert status == 201, body
    status, body, _ = await call(
        http, replica, "POST", f"/admin/v1/teams/{team}/keys", key=ADMIN_TOKEN, json={}
    )
    assert status == 201, body
    key = str(body["key"])
    path = f"/admin/v1/teams/{team}/limits"
    status, body, _ = await call(http, replica, "PUT", path, key=ADMIN_TOKEN, json=limits)
    assert status == 200, body
    return key


async def stampede(
    http: aiohttp.ClientSession, gws: list[Replica], key: str, tag: str
) -> list[tuple[int, Any, str]]:
    """600 distinct submits at once, 200 through each replica."""
    total = CLIENTS_PER_REPLICA * len(gws)
    return list(
        await asyncio.gather(
            *(
                call(
                    http,
                    gws[i % len(gws)],
                    "POST",
                    f"/v1/models/{FLUX}",
                    key=key,
                    json={"prompt": f"{tag} {i}"},
                )
                for i in range(total)
            )
        )
    )


@on_single_and_cluster
async def test_three_replicas_and_600_clients_admit_exactly_a_daily_budget_or_slot_limit_of_100(
    replicas: Replicas, simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    await simulator.configure(queue_seconds=60.0)  # admitted jobs hold their slots
    gws = await replicas.start_many(3)
    daily = await team_with(http, gws[0], "daily", daily_requests=100)
    budget = await team_with(http, gws[0], "budget", budget_usd=1.2)  # 100 x $0.012
    slots = await team_with(http, gws[0], "slots", max_concurrent=100, max_queue=0)

    for key, tag, refusal, code in (
        (daily, "daily", 429, 429002),
        (budget, "budget", 402, 402001),
        (slots, "slots", 429, 429003),
    ):
        before = await simulator.count("model.submit")
        answers = await stampede(http, gws, key, tag)
        statuses = Counter(a[0] for a in answers)
        assert statuses == {200: 100, refusal: 500}, f"{tag}: {statuses}\n{problems(gws)}"
        for status, body, _ in answers:
            if status != 200:
                assert_error_shape(body, code)
        assert {a[2] for a in answers if a[0] == 200} == {"miss"}
        assert await simulator.count("model.submit") - before == 100


@on_single_and_cluster
async def test_a_rate_limit_is_never_exceeded_by_a_stampede_over_three_replicas(
    replicas: Replicas, simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    gws = await replicas.start_many(3)
    per_minute, burst = 600, 20  # 10 per second after a burst of 20
    key = await team_with(http, gws[0], "rate", rate_per_minute=per_minute, rate_burst=burst)
    started = time.monotonic()
    answers = await stampede(http, gws, key, "rate")
    elapsed = time.monotonic() - started
    admitted = sum(1 for a in answers if a[0] == 200)
    allowed = burst + elapsed * per_minute / 60
    assert burst <= admitted <= allowed + 1, f"{admitted} admitted in {elapsed:.2f} s"
    refused = [a for a in answers if a[0] != 200]
    assert refused and all(a[0] == 429 and a[1]["error_code"] == 429002 for a in refused)
    assert await simulator.count("model.submit") == admitted
