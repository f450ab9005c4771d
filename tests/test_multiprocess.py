"""Several real ``serve`` processes sharing one Redis, as a deployment with replicas runs them.

Each replica is a separate ``python -m gateway serve`` process (its own event loop, poller and
connection pools), all pointed at the test's Redis namespace and the in-process simulator. What
the replicas share is only Redis, so these tests prove that dedup, the one-poller-per-job rule,
poll takeover after a crash and key revocation hold across processes, not just across apps in
one process. Dedup exactness and takeover also run against a real Redis Cluster.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from tests.conftest import ADMIN_TOKEN, NANO, Simulator, assert_error_shape, on_single_and_cluster
from tests.replicas import POLL_ROUTES, Answer, Replica, Replicas, call, client_pool, problems

pytestmark = pytest.mark.slow  # real serve processes


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with client_pool() as session:
        yield session


async def new_team_key(http: aiohttp.ClientSession, replica: Replica) -> tuple[str, str]:
    """Create team ``design`` and a key through the admin API; returns (key, key_id)."""
    status, body, _ = await call(
        http, replica, "POST", "/admin/v1/teams", key=ADMIN_TOKEN, json={"team_id": "design"}
    )
    assert status == 201, body
    status, body, _ = await call(
        http, replica, "POST", "/admin/v1/teams/design/keys", key=ADMIN_TOKEN, json={}
    )
    assert status == 201, body
    return str(body["key"]), str(body["key_id"])


async def submit(http: aiohttp.ClientSession, replica: Replica, key: str, prompt: str) -> Answer:
    return await call(http, replica, "POST", f"/v1/models/{NANO}", key=key, json={"prompt": prompt})


async def poll_status_until_completed(
    http: aiohttp.ClientSession,
    replica: Replica,
    key: str,
    rid: str,
    *,
    every: float = 0.05,
    within: float = 10.0,
) -> int:
    """Poll ``/status`` like a client until ``completed``; returns how many polls it took."""
    deadline = time.monotonic() + within
    polls = 0
    while time.monotonic() < deadline:
        status, body, _ = await call(http, replica, "GET", f"/v1/requests/{rid}/status", key=key)
        polls += 1
        assert status == 200, f"{body}\n{replica.problems()}"
        assert body["request_id"] == rid
        if body["status"] == "completed":
            return polls
        await asyncio.sleep(every)
    raise AssertionError(
        f"{rid} not completed through {replica.name} within {within} s\n{replica.problems()}"
    )


async def result(http: aiohttp.ClientSession, replica: Replica, key: str, rid: str) -> Any:
    path = f"/v1/requests/{rid}/result?include_cost=true"
    status, body, _ = await call(http, replica, "GET", path, key=key)
    assert status == 200, f"{body}\n{replica.problems()}"
    assert body["request_id"] == rid
    return body


async def upstream_polls(simulator: Simulator) -> int:
    """RunComfy status and result calls so far (the gateway's poller makes all of them)."""
    counts = await simulator.calls()
    return sum(counts.get(route, 0) for route in POLL_ROUTES)


@on_single_and_cluster
async def test_concurrent_identical_submits_through_three_gateways_start_exactly_one_job(
    replicas: Replicas, simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    await simulator.configure(queue_seconds=1.0, run_seconds=1.0)  # in flight for ~2 s
    gws = await replicas.start_many(3, GATEWAY_POLL_INTERVAL_SECONDS="0.2")
    key, _ = await new_team_key(http, gws[0])

    answers = await asyncio.gather(*(submit(http, gws[i % 3], key, "same") for i in range(60)))

    refused = [a[1] for a in answers if a[0] != 200]
    assert not refused, f"{refused}\n{problems(gws)}"
    assert Counter(a[2] for a in answers) == {"miss": 1, "coalesced": 59}
    assert await simulator.count("model.submit") == 1
    rids = [str(a[1]["request_id"]) for a in answers]
    assert len(set(rids)) == 60

    await asyncio.gather(
        *(poll_status_until_completed(http, gws[i % 3], key, rid) for i, rid in enumerate(rids))
    )
    results = await asyncio.gather(
        *(result(http, gws[(i + 1) % 3], key, rid) for i, rid in enumerate(rids))
    )
    assert all(r["status"] == "succeeded" for r in results), results
    assert results[0]["output"]
    assert all(r["output"] == results[0]["output"] for r in results)
    owner = next(i for i, a in enumerate(answers) if a[2] == "miss")
    assert results[owner]["cost"] > 0  # paid once, by the request that started the job
    assert all(r["cost"] == 0 for i, r in enumerate(results) if i != owner)
    assert await simulator.count("model.submit") == 1


async def _poll_scenario(
    http: aiohttp.ClientSession,
    simulator: Simulator,
    gws: list[Replica],
    key: str,
    prompt: str,
    clients: int,
) -> int:
    """``clients`` clients each submit ``prompt``, poll their id until completed and read the
    result, spread round-robin over the replicas; returns the upstream status + result calls
    the job cost."""
    submits_before = await simulator.count("model.submit")
    before = await upstream_polls(simulator)
    answers = await asyncio.gather(
        *(submit(http, gws[i % len(gws)], key, prompt) for i in range(clients))
    )
    refused = [a[1] for a in answers if a[0] != 200]
    assert not refused, f"{refused}\n{problems(gws)}"
    rids = [str(a[1]["request_id"]) for a in answers]
    assert len(set(rids)) == clients

    async def client(i: int, rid: str) -> Any:
        gw = gws[i % len(gws)]
        await poll_status_until_completed(http, gw, key, rid, every=0.05)
        return await result(http, gw, key, rid)

    results = await asyncio.gather(*(client(i, rid) for i, rid in enumerate(rids)))
    assert all(r["status"] == "succeeded" for r in results), results
    await asyncio.sleep(0.5)  # a late or stray poll of this job would still be counted
    assert await simulator.count("model.submit") == submits_before + 1
    return await upstream_polls(simulator) - before


async def test_upstream_polls_do_not_grow_with_the_number_of_polling_clients(
    replicas: Replicas, simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    interval, queue, run = 0.2, 0.4, 0.8
    await simulator.configure(queue_seconds=queue, run_seconds=run)
    gws = await replicas.start_many(3, GATEWAY_POLL_INTERVAL_SECONDS=str(interval))
    key, _ = await new_team_key(http, gws[0])

    one = await _poll_scenario(http, simulator, gws, key, "one client", 1)
    hundred = await _poll_scenario(http, simulator, gws, key, "a hundred clients", 100)

    # The one poller of the job waits at least `interval` between two status polls, counted
    # from when the submit was answered, so at most ceil(D/I) of them happen before one sees
    # `completed`; then it reads /result once: ceil(D/I) + 1. The bound allows exactly one more,
    # for a /result that still lags /status (the poller then asks again; RunComfy allows that,
    # the simulator does not do it). No other allowance.
    duration = queue + run
    budget = math.ceil(round(duration / interval, 6)) + 2
    counts = f"upstream status+result calls: 1 client={one}, 100 clients={hundred}"
    assert one <= budget, f"{counts}; budget {budget}"
    assert hundred <= budget, f"{counts}; budget {budget}"
    assert hundred <= one + 1, counts


@on_single_and_cluster
async def test_a_killed_replica_polling_a_job_is_taken_over_by_another(
    replicas: Replicas, simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    await simulator.configure(queue_seconds=0.5, run_seconds=2.0)
    settings = {"GATEWAY_POLL_INTERVAL_SECONDS": "0.2", "GATEWAY_POLL_LEASE_SECONDS": "1.0"}
    first = await replicas.start("gw-a", **settings)
    key, _ = await new_team_key(http, first)
    status, answer, outcome = await submit(http, first, key, "long job")
    assert (status, outcome) == (200, "miss"), answer
    rid = str(answer["request_id"])

    await asyncio.sleep(0.5)
    status, body, _ = await call(http, first, "GET", f"/v1/requests/{rid}/status", key=key)
    assert status == 200 and body["status"] in ("in_queue", "in_progress"), body
    first.process.kill()  # SIGKILL: no graceful shutdown, a lease may be held mid-poll
    await first.process.wait()
    polls_at_kill = await upstream_polls(simulator)
    assert polls_at_kill >= 1  # A was polling the job when it died (it was the only replica)

    second = await replicas.start("gw-b", **settings)  # only B is alive from now on
    await poll_status_until_completed(http, second, key, rid, every=0.1, within=10.0)
    final = await result(http, second, key, rid)
    assert final["status"] == "succeeded", final
    assert final["output"]
    assert await upstream_polls(simulator) > polls_at_kill  # B polled RunComfy itself
    assert await simulator.count("model.submit") == 1


async def test_a_revoked_key_is_refused_by_every_process(
    replicas: Replicas, simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    gws = await replicas.start_many(3)
    key, key_id = await new_team_key(http, gws[0])
    status, answer, _ = await submit(http, gws[0], key, "before revocation")
    assert status == 200, answer
    rid = str(answer["request_id"])
    status_path = f"/v1/requests/{rid}/status"
    for gw in gws[1:]:  # the key works everywhere first (warms anything a replica might cache)
        status, body, _ = await call(http, gw, "GET", status_path, key=key)
        assert status == 200, (gw.name, body)

    status, body, _ = await call(
        http, gws[0], "DELETE", f"/admin/v1/keys/{key_id}", key=ADMIN_TOKEN
    )
    assert status == 200 and body["active"] is False, body

    refusals: list[Callable[[Replica], Awaitable[Answer]]] = [
        lambda gw: call(http, gw, "GET", status_path, key=key),
        lambda gw: submit(http, gw, key, "after revocation"),
    ]
    for gw in (gws[1], gws[2], gws[0]):
        for refuse in refusals:
            status, body, _ = await refuse(gw)
            assert status == 401, (gw.name, body)
            assert_error_shape(body)
    assert await simulator.count("model.submit") == 1
