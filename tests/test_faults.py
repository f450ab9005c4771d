"""Faults injected while traffic flows, and a count of what was lost (docs/guarantees.md's table).

Each test starts clients that behave as RunComfy's own clients do (submit, honour a 503's
``Retry-After`` by trying again, poll until the job ends), injects a fault meanwhile, and then
audits the outcome against RunComfy's side (the simulator's call counters and ledger) and the
gateway's records in Redis:

- every client ends with a final job state or a clear error in RunComfy's shape;
- every job RunComfy ran is known to the gateway (by its id, or as a submit of unknown outcome
  in the team's unreconciled ledger);
- no request was paid for twice (RunComfy ran no body twice);
- the books balance: once an admin resolves the unknown outcomes against RunComfy's records, the
  team's settled spend equals what RunComfy charged, to the micro-dollar.

Each test records its counts with ``faults_table.record`` (see ``tests/fault_report.py``), which
fails the test when docs/guarantees.md's table says something else.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.simulator.state import inputs_digest
from gateway.store.embedded import EmbeddedRedis
from tests import fault_report
from tests.conftest import (
    ADMIN_TOKEN,
    NANO,
    FaultReport,
    Gateway,
    GatewayClient,
    Simulator,
    assert_error_shape,
)
from tests.replicas import Replica, Replicas, problems

RETRY_LATER = frozenset({503001, 503003})  # nothing reached RunComfy: a client may resend
FINAL = frozenset({"completed", "failed", "cancelled"})
CLIENT_WITHIN = 45.0  # seconds a client may take from its first submit to its job's end


def shaped(body: Any) -> bool:
    """RunComfy's error shape."""
    return isinstance(body, dict) and set(body) == {"error_code", "error_message", "detail"}


@dataclass
class ClientLog:
    """What one client saw; ``problem`` says what it lost, if anything."""

    prompt: str
    rid: str = ""
    final: str = ""  # completed, failed, cancelled, or error:<error_code>
    retries: int = 0  # answers that said "retry later" (nothing reached RunComfy)
    problem: str = ""

    @property
    def digest(self) -> str:
        return inputs_digest({"prompt": self.prompt})


async def run_client(
    gw: GatewayClient,
    key: str,
    prompt: str,
    *,
    start_after: float = 0.0,
    cancel_after: float | None = None,
    every: float = 0.05,
) -> ClientLog:
    """Submit ``prompt``, poll until the job ends (cancelling it after ``cancel_after`` s if
    asked), read the result; retry whatever the gateway says nothing was sent for."""
    log = ClientLog(prompt)
    await asyncio.sleep(start_after)
    try:
        async with asyncio.timeout(CLIENT_WITHIN):
            await _client_steps(gw, key, log, cancel_after, every)
    except TimeoutError:
        log.problem = f"timed out (last: {log.final or 'none'})"
    except aiohttp.ClientError as exc:
        log.problem = f"no answer: {type(exc).__name__}"
    return log


async def _client_steps(
    gw: GatewayClient, key: str, log: ClientLog, cancel_after: float | None, every: float
) -> None:
    while True:
        status, body, _ = await gw.request(
            "POST", f"/v1/models/{NANO}", key=key, json={"prompt": log.prompt}
        )
        if status == 200:
            log.rid = body["request_id"]
            break
        if not _clear(log, status, body):
            return
        if body["error_code"] not in RETRY_LATER:
            log.final = f"error:{body['error_code']}"
            detail = body["detail"]
            log.rid = detail.get("request_id", "") if isinstance(detail, dict) else ""
            return
        log.retries += 1
        await asyncio.sleep(every * 2)
    started = time.monotonic()
    cancelled = False
    while True:
        if cancel_after is not None and not cancelled and time.monotonic() - started > cancel_after:
            status, body, _ = await gw.request("POST", f"/v1/requests/{log.rid}/cancel", key=key)
            if status < 300:
                cancelled = True
            elif not _clear(log, status, body):
                return
        status, body, _ = await gw.request("GET", f"/v1/requests/{log.rid}/status", key=key)
        if status == 200 and body["status"] in FINAL:
            break
        if status != 200:
            if not _clear(log, status, body):
                return
            if body["error_code"] not in RETRY_LATER:
                log.final = f"error:{body['error_code']}"
                return
            log.retries += 1
        await asyncio.sleep(every)
    while True:
        status, body, _ = await gw.request(
            "GET", f"/v1/requests/{log.rid}/result?include_cost=true", key=key
        )
        if status == 200:
            log.final = {"succeeded": "completed"}.get(body["status"], body["status"])
            return
        if not _clear(log, status, body) or body["error_code"] not in RETRY_LATER:
            log.problem = log.problem or f"result {status}: {body}"
            return
        log.retries += 1
        await asyncio.sleep(every)


def _clear(log: ClientLog, status: int, body: Any) -> bool:
    """A non-200 answer is clear when it is a 4xx/5xx in RunComfy's shape, never a bare 500."""
    if shaped(body) and status != 500 and body["error_code"] != 500001:
        return True
    log.problem = f"unclear answer {status}: {body}"
    return False


async def gateway_jobs(redis_url: str, namespace: str) -> list[dict[str, str]]:
    """Every job record the gateway holds (all teams)."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        jobs = []
        async for name in client.scan_iter(match=f"{namespace}:v1:*:job:*", count=1000):
            if name.endswith(":hooks"):
                continue
            fields = await client.hgetall(name)
            if fields:
                jobs.append({str(k): str(v) for k, v in fields.items()})
        return jobs
    finally:
        await client.aclose()


async def wait_until(
    check: Callable[[], Awaitable[bool]], within: float, what: str, every: float = 0.1
) -> float:
    """Wait until ``check()``; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if await check():
            return time.monotonic() - started
        await asyncio.sleep(every)
    raise AssertionError(f"not within {within} s: {what}")


@dataclass
class Audit:
    """The gateway's records against RunComfy's, once everything has settled."""

    unrecorded: int  # jobs RunComfy ran that the gateway knows nothing about
    duplicates: int  # bodies RunComfy ran more than once
    books_off_micro: int  # |settled spend - RunComfy's charges| after reconciliation
    unknown: int  # submits of unknown outcome the gateway listed for reconciliation
    sim_jobs: int

    def money_lost(self) -> dict[str, int]:
        """The two losses every fault's row reports, as the fault table names them."""
        return {
            "duplicate paid jobs": self.duplicates,
            "books off (micro-USD)": self.books_off_micro,
        }


async def audit(
    gw: GatewayClient, simulator: Simulator, logs: list[ClientLog], redis_url: str, namespace: str
) -> Audit:
    """Settle, reconcile the unknown outcomes as an admin would, and compare the books."""

    async def settled() -> bool:
        _, usage = await gw.admin("GET", "/admin/v1/teams/design/usage")
        _, ledger = await gw.admin("GET", "/admin/v1/teams/design/unreconciled")
        held = sum(round(e["reserved_usd"] * 1_000_000) for e in ledger["jobs"])
        sim = await simulator.ledger()
        running = [j for j in sim["jobs"] if j["state"] in ("in_queue", "in_progress")]
        return round(usage["budget"]["reserved_usd"] * 1_000_000) == held and not running

    await wait_until(settled, 30, "reservations settled and RunComfy idle")
    sim = await simulator.ledger()
    sim["jobs"] = [j for j in sim["jobs"] if j["api"] == "model"]  # team design's jobs
    sim["charged_micro"] = sum(j["billed_micro"] for j in sim["jobs"])
    jobs = await gateway_jobs(redis_url, namespace)
    known_ids = {j["upstream_id"] for j in jobs if j.get("upstream_id")}
    _, ledger = await gw.admin("GET", "/admin/v1/teams/design/unreconciled")
    prompt_of = {log.rid: log.prompt for log in logs if log.rid}
    ran = {j["inputs_sha256"]: j for j in sim["jobs"]}
    unknown_digests = set()
    for entry in ledger["jobs"]:  # the admin's reconciliation, against RunComfy's records
        prompt = prompt_of.get(entry["request_id"])  # None: a request id no client was given
        digest = inputs_digest({"prompt": prompt}) if prompt is not None else ""
        unknown_digests.add(digest)
        job = ran.get(digest)
        resolution: dict[str, Any] = {"outcome": "charged" if job else "refunded"}
        if job:
            resolution["cost_usd"] = job["billed_micro"] / 1_000_000
        status, body = await gw.admin(
            "POST", f"/admin/v1/teams/design/unreconciled/{entry['job_id']}", resolution
        )
        assert status == 200, body
    unrecorded = [
        j
        for j in sim["jobs"]
        if j["request_id"] not in known_ids and j["inputs_sha256"] not in unknown_digests
    ]
    counts = Counter(j["inputs_sha256"] for j in sim["jobs"])
    _, usage = await gw.admin("GET", "/admin/v1/teams/design/usage")
    settled_micro = round(usage["budget"]["settled_usd"] * 1_000_000)
    return Audit(
        unrecorded=len(unrecorded),
        duplicates=sum(n - 1 for n in counts.values()),
        books_off_micro=abs(settled_micro - int(sim["charged_micro"])),
        unknown=len(ledger["jobs"]),
        sim_jobs=len(sim["jobs"]),
    )


def lost_clients(logs: list[ClientLog]) -> list[str]:
    return [f"{log.prompt}: {log.problem}" for log in logs if log.problem]


# --- Redis ------------------------------------------------------------------------------------


async def _stop(server: EmbeddedRedis) -> None:
    await asyncio.get_running_loop().run_in_executor(None, server.stop)


async def _start(server: EmbeddedRedis) -> None:
    await asyncio.get_running_loop().run_in_executor(None, server.start)


@pytest.mark.slow
async def test_redis_stopped_and_restarted_mid_load_loses_nothing(
    tmp_path: Path,
    simulator: Simulator,
    gateway_factory: Any,
    namespace: str,
    faults_table: FaultReport,
) -> None:
    """Clients see 503 503003 while Redis is away and carry on; nothing reaches RunComfy
    unrecorded or unbilled, and the gateway recovers by itself."""
    restarts, clients, hooked = 3, 60, 10
    own = EmbeddedRedis(tmp_path / "redis", persistent=True).start()  # a fixed unix socket
    receiver = await _webhook_receiver()
    try:
        gw: Gateway = await gateway_factory(
            redis_url=own.url,
            poll_rate_per_second=0,
            webhook_allow_private=True,
            webhook_backoff_seconds=0.1,
        )
        key = await gw.new_team("design", budget_usd=100)
        hooks_key = await gw.new_team("hooks", deployments=["*"])
        _, deployments, _ = await gw.request("GET", "/prod/v2/deployments", key=ADMIN_TOKEN)
        await simulator.configure(queue_seconds=0.3, run_seconds=0.5)

        async def chaos() -> list[float]:
            recoveries = []
            for cycle in range(restarts):
                await asyncio.sleep(0.7)
                if cycle == 0:  # the next submit is answered while Redis is away
                    await simulator.fault(route="model.submit", action="delay", delay=0.3)
                    await asyncio.sleep(0.1)
                await _stop(own)
                await asyncio.sleep(0.5)
                await _start(own)
                recoveries.append(await wait_until(_answers(gw, key), 10, "recovery", 0.02))
            return recoveries

        outages = asyncio.create_task(chaos())
        hook_url = str(receiver.make_url("/hook"))
        hook_rids = asyncio.gather(
            *(
                _webhook_submit(gw, hooks_key, deployments[0]["id"], hook_url, f"hook {i}", i)
                for i in range(hooked)
            )
        )
        logs = await asyncio.gather(
            *(run_client(gw, key, f"redis {i}", start_after=i * 0.06) for i in range(clients))
        )
        recoveries = await outages
        found = await audit(gw, simulator, logs, own.url, namespace)
        rids = await hook_rids
        delivered = receiver.app[DELIVERED]
        with contextlib.suppress(AssertionError):
            await wait_until(_all_called_back(delivered, rids), 20, "webhooks delivered")
    finally:
        own.stop()
        await receiver.close()
    undelivered = [rid for rid in rids if f"{rid}:succeeded" not in delivered]

    faults_table.record(
        "redis-restart",
        injected=f"{restarts} stops of 0.5 s",
        traffic=f"{clients} clients, each a new job; {hooked} serverless jobs with a webhook",
        lost={
            "clients without a final answer": len(lost_clients(logs)),
            "clients told 'outcome unknown'": sum(log.final == "error:504002" for log in logs),
            "jobs RunComfy ran unrecorded": found.unrecorded,
            **found.money_lost(),
            "webhooks never delivered": len(undelivered),
        },
    )
    assert not lost_clients(logs), lost_clients(logs)
    assert [log.final for log in logs] == ["completed"] * clients
    assert sum(log.retries for log in logs) > 0  # the outages were seen, as clear 503s
    assert max(recoveries) < 10
    assert found.sim_jobs >= clients - found.unknown
    assert all(rids) and not undelivered, undelivered
    faults_table.assert_readme_agrees()


DELIVERED = web.AppKey("delivered", set[str])


async def _webhook_receiver() -> TestServer:
    """A slow webhook receiver that remembers every ``X-Gateway-Delivery`` mark it got."""

    async def hook(request: web.Request) -> web.Response:
        await asyncio.sleep(0.3)  # a slow receiver: deliveries are in flight when Redis stops
        request.app[DELIVERED].add(request.headers["X-Gateway-Delivery"])
        return web.Response(status=204)

    app = web.Application()
    app[DELIVERED] = set()
    app.router.add_post("/hook", hook)
    server = TestServer(app)
    await server.start_server()
    return server


async def _webhook_submit(
    gw: GatewayClient, key: str, deployment: str, hook: str, text: str, i: int
) -> str:
    """A serverless submit with a webhook, resent while the gateway says nothing was sent."""
    await asyncio.sleep(i * 0.3)
    path = f"/prod/v1/deployments/{deployment}/inference?webhook={quote(hook, safe='')}"
    body = {"overrides": {"6": {"inputs": {"text": text}}}}
    for _ in range(200):
        status, answer, _ = await gw.request("POST", path, key=key, json=body)
        if status == 200:
            return str(answer["request_id"])
        if not shaped(answer) or answer["error_code"] not in RETRY_LATER:
            return ""
        await asyncio.sleep(0.1)
    return ""


def _all_called_back(delivered: set[str], rids: list[str]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return all(f"{rid}:succeeded" in delivered for rid in rids)

    return check


@pytest.mark.slow
async def test_a_redis_stall_that_loses_the_answers_of_admissions_leaves_no_phantom_job(
    tmp_path: Path,
    simulator: Simulator,
    gateway_factory: Any,
    namespace: str,
    faults_table: FaultReport,
) -> None:
    """Redis stalls past the gateway's 2 s command timeout while submits wait on it: the clients
    get 503 (nothing sent), but Redis then runs their admissions. Those jobs must be taken back,
    not left holding a reservation that nobody sends (and that identical resubmits follow)."""
    import redis

    clients, stall = 6, 2.6
    # DEBUG SLEEP stalls it; Redis 7 and Valkey allow DEBUG only when told to
    own = EmbeddedRedis(
        tmp_path / "redis", persistent=True, extra_args=["--enable-debug-command", "local"]
    ).start()
    try:
        gw: Gateway = await gateway_factory(
            redis_url=own.url, poll_rate_per_second=0, redis_timeout_seconds=2.0
        )
        key = await gw.new_team("design", budget_usd=100, max_concurrent=3)
        warm = await run_client(gw, key, "warm")  # prices and schema cached: admission is next
        assert warm.final == "completed", warm

        def debug_sleep() -> None:
            with redis.Redis.from_url(own.url) as blocker:
                blocker.execute_command("DEBUG", "SLEEP", stall)

        stalled = asyncio.get_running_loop().run_in_executor(None, debug_sleep)
        await asyncio.sleep(0.2)
        logs = await asyncio.gather(*(run_client(gw, key, f"stalled {i}") for i in range(clients)))
        await stalled
        logs.append(warm)
        found = await audit(gw, simulator, logs, own.url, namespace)
        jobs = await gateway_jobs(own.url, namespace)
    finally:
        own.stop()
    withdrawn = [j for j in jobs if j.get("reason") == "admission interrupted"]
    faults_table.record(
        "redis-stall",
        injected=f"1 stall of {stall} s",
        traffic=f"{clients} clients submitting during it",
        lost={
            "clients without a final answer": len(lost_clients(logs)),
            "clients told 'outcome unknown'": sum(log.final == "error:504002" for log in logs),
            "jobs held for nobody": found.unknown,
            **found.money_lost(),
        },
    )
    assert not lost_clients(logs), lost_clients(logs)
    assert [log.final for log in logs] == ["completed"] * (clients + 1)
    assert sum(log.retries for log in logs) > 0  # the interrupted submits were answered 503
    assert withdrawn, "the stall was meant to interrupt admissions that Redis then ran"
    assert found.unknown == 0 and found.sim_jobs == clients + 1
    faults_table.assert_readme_agrees()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: a unix socket's path has at most 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="rcg-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
async def test_the_embedded_redis_restarts_with_every_job_mapping_usage_and_budget(
    short_dir: Path,
    simulator: Simulator,
    gateway_factory: Any,
    namespace: str,
    faults_table: FaultReport,
) -> None:
    """The gateway's own Redis (AOF on) stopped under it: the gateway starts it again by itself,
    and every request id, usage counter, budget figure and unknown outcome is still there."""
    data = short_dir
    gw: Gateway = await gateway_factory(
        redis_url="", data_dir=data, poll_rate_per_second=0, upstream_submit_timeout=0.3
    )
    key = await gw.new_team("design", budget_usd=50, daily_requests=1000)
    logs = list(await asyncio.gather(*(run_client(gw, key, f"kept {i}") for i in range(12))))
    logs.append(await run_client(gw, key, "kept 0"))  # a hit
    await simulator.fault(route="model.submit", action="delay", delay=0.6, after=True)
    logs.append(await run_client(gw, key, "unknown outcome"))
    # the job stays queued at RunComfy through both restarts (each waits for the gateway's 2 s
    # probe), so the figures compared below cannot move because it finished meanwhile
    await simulator.configure(queue_seconds=10.0)
    status, flying, _ = await gw.request(
        "POST", f"/v1/models/{NANO}", key=key, json={"prompt": "in flight"}
    )
    assert status == 200, flying
    assert [log.final for log in logs] == ["completed"] * 13 + ["error:504002"]
    await wait_until(_reservations_settled(gw, 0.3), 10, "only two jobs reserved")
    before = await _stored_state(gw, key, logs)

    restarts = 2
    for _ in range(restarts):
        pid = _pid(data)
        os.kill(pid, signal.SIGTERM)  # Redis writes its AOF out and exits
        await wait_until(_restarted(data, pid), 15, "the gateway started its Redis again")
        await wait_until(_answers(gw, key), 10, "the gateway answers from its Redis again")
    after = await _stored_state(gw, key, logs)
    changed = [name for name in before if before[name] != after[name]]
    status, body, _ = await gw.request(
        "GET", f"/v1/requests/{flying['request_id']}/status", key=key
    )
    flying_known = status == 200 and body["status"] in ("in_queue", "in_progress", "completed")
    await simulator.configure(queue_seconds=0.2)
    flying_log = ClientLog("in flight", rid=flying["request_id"])
    async with asyncio.timeout(CLIENT_WITHIN):
        while body.get("status") != "completed":
            await asyncio.sleep(0.1)
            _, body, _ = await gw.request("GET", f"/v1/requests/{flying_log.rid}/status", key=key)
    faults_table.record(
        "redis-persistence",
        injected=f"{restarts} stops of the embedded Redis",
        traffic=f"{len(logs)} request ids, 1 job in flight, 1 unknown outcome",
        lost={
            "request ids or figures changed": len(changed),
            "jobs in flight forgotten": 0 if flying_known else 1,
        },
    )
    assert not changed, {name: (before[name], after[name]) for name in changed}
    assert flying_known, body
    faults_table.assert_readme_agrees()


def _reservations_settled(gw: GatewayClient, reserved_usd: float) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        _, usage = await gw.admin("GET", "/admin/v1/teams/design/usage")
        return bool(usage["budget"]["reserved_usd"] == reserved_usd)

    return check


def _pid(data: Path) -> int:
    """The embedded redis-server's pid (0 while it has none)."""
    try:
        return int((data / "redis.pid").read_text())
    except (OSError, ValueError):
        return 0


def _restarted(data: Path, old: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return _pid(data) not in (0, old)

    return check


async def _stored_state(gw: GatewayClient, key: str, logs: list[ClientLog]) -> dict[str, Any]:
    """Everything a restart must keep: each request's status and result, usage, budget, the
    unreconciled ledger (one entry per name, so a difference names what changed)."""
    state: dict[str, Any] = {}
    for log in logs:
        for leaf in ("status", "result?include_cost=true"):
            _, body, _ = await gw.request("GET", f"/v1/requests/{log.rid}/{leaf}", key=key)
            state[f"{log.prompt} {leaf}"] = body
    _, state["usage"] = await gw.admin("GET", "/admin/v1/teams/design/usage")
    _, state["limits"] = await gw.admin("GET", "/admin/v1/teams/design/limits")
    _, state["unreconciled"] = await gw.admin("GET", "/admin/v1/teams/design/unreconciled")
    return state


def _answers(gw: GatewayClient, key: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        status, _, _ = await gw.request("GET", "/v1/requests/none/status", key=key)
        return status == 404  # the key was verified in Redis: Redis answers again

    return check


# --- RunComfy ---------------------------------------------------------------------------------

UPSTREAM_FAULTS: list[dict[str, Any]] = [
    # submits: a 5xx, a hang-up or garbage may hide an accepted job; a late answer does
    {"route": "model.submit", "action": "status", "status": 500, "times": 2},
    {"route": "model.submit", "action": "status", "status": 502, "times": 1},
    {"route": "model.submit", "action": "drop", "times": 2},
    {"route": "model.submit", "action": "invalid_json", "times": 2},
    {"route": "model.submit", "action": "delay", "delay": 1.0, "after": True, "times": 2},
    # polls: retried by the one poller of each job, never seen by clients
    {"route": "model.status", "action": "status", "status": 503, "times": 4},
    {"route": "model.status", "action": "status", "status": 500, "times": 2},
    {"route": "model.status", "action": "delay", "delay": 0.6, "times": 3},
    {"route": "model.status", "action": "drop", "times": 3},
    {"route": "model.status", "action": "invalid_json", "times": 3},
    {"route": "model.result", "action": "status", "status": 502, "times": 2},
    {"route": "model.result", "action": "drop", "times": 2},
    {"route": "model.result", "action": "invalid_json", "times": 2},
    # cancels: idempotent, so retried
    {"route": "model.cancel", "action": "status", "status": 503, "times": 1},
    {"route": "model.cancel", "action": "drop", "times": 1},
]


@pytest.mark.slow
async def test_runcomfy_failing_every_way_mid_load_loses_nothing_and_pays_nothing_twice(
    simulator: Simulator,
    gateway_factory: Any,
    redis_url: str,
    namespace: str,
    faults_table: FaultReport,
) -> None:
    """5xx, timeouts, hang-ups and garbage on submits, polls and cancels while 40 clients run
    jobs: submits are never resent once they may have reached RunComfy, idempotent calls are
    retried a bounded number of times, every client ends with a final state or a clear error,
    and the books balance."""
    clients, cancelling = 40, 4
    gw: Gateway = await gateway_factory(
        poll_rate_per_second=0,
        upstream_submit_timeout=0.5,
        upstream_read_timeout=0.3,
        upstream_retries=2,
        upstream_breaker_open_seconds=0.5,
    )
    key = await gw.new_team("design", budget_usd=100)
    await simulator.configure(queue_seconds=0.5, run_seconds=0.3)
    await simulator.fault_clear()
    async with gw.http.post(f"{simulator.url}/_sim/faults", json=UPSTREAM_FAULTS) as resp:
        assert resp.status == 200, await resp.text()
    injected: Counter[str] = Counter()
    for rule in UPSTREAM_FAULTS:
        injected[rule["route"].split(".")[1]] += rule["times"]

    async def long_queue_for_the_cancels() -> None:
        await asyncio.sleep(1.4)  # the cancelling clients' jobs wait long enough at RunComfy
        await simulator.configure(queue_seconds=5.0)

    slow_queue = asyncio.create_task(long_queue_for_the_cancels())
    logs = await asyncio.gather(
        *(run_client(gw, key, f"upstream {i}", start_after=i * 0.03) for i in range(clients)),
        *(
            run_client(gw, key, f"cancel {i}", start_after=1.5, cancel_after=0.1)
            for i in range(cancelling)
        ),
    )
    await slow_queue
    found = await audit(gw, simulator, logs, redis_url, namespace)
    left = await simulator.faults_left()
    jobs = await gateway_jobs(redis_url, namespace)
    sent = sum(1 for j in jobs if j.get("upstream_id") or j["state"] == "unknown")
    resent = await simulator.count("model.submit") - sent
    finals = Counter(log.final for log in logs)
    faults_table.record(
        "upstream-faults",
        injected=f"{sum(injected.values())} faults: "
        + ", ".join(f"{n} {call}" for call, n in injected.items()),
        traffic=f"{clients + cancelling} clients, {cancelling} of them cancelling",
        lost={
            "clients without a final answer": len(lost_clients(logs)),
            "submits resent after reaching RunComfy": resent,
            **found.money_lost(),
        },
    )
    assert not lost_clients(logs), lost_clients(logs)
    assert not left, f"faults never reached: {left}"
    assert resent == 0
    # The 9 submits that met a fault answered 504 "outcome unknown", listed for reconciliation;
    # polls and cancels met theirs out of the clients' sight.
    assert finals == {"completed": clients - 9, "error:504002": 9, "cancelled": cancelling}
    assert found.unknown == 9
    faults_table.assert_readme_agrees()


@pytest.mark.slow
async def test_runcomfy_down_opens_the_circuit_breaker_and_jobs_in_flight_survive(
    simulator: Simulator,
    gateway_factory: Any,
    redis_url: str,
    namespace: str,
    faults_table: FaultReport,
) -> None:
    """Every RunComfy call answers 503 for 2 s while 10 jobs are in flight and more clients
    submit: the breaker opens (calls fail fast, nothing sent), probes, closes again; the jobs
    in flight finish, and submits refused meanwhile are resent and run."""
    from tests.test_metrics import scrape, value

    in_flight, submitting, outage = 10, 10, 2.0
    gw: Gateway = await gateway_factory(
        poll_rate_per_second=0,
        poll_max_interval_seconds=0.05,  # 20 failed polls in 1 s would end a job as "lost"
        upstream_retries=1,
        upstream_breaker_failures=5,
        upstream_breaker_open_seconds=0.5,
    )
    key = await gw.new_team("design", budget_usd=100)
    await simulator.configure(queue_seconds=1.0, run_seconds=1.0)
    first = [asyncio.create_task(run_client(gw, key, f"flying {i}")) for i in range(in_flight)]
    await asyncio.sleep(0.5)
    before = sum((await simulator.calls()).values())
    await simulator.fault(route="model.*", action="status", status=503, times=None)
    late = [
        asyncio.create_task(run_client(gw, key, f"during {i}", start_after=i * 0.1))
        for i in range(submitting)
    ]
    await asyncio.sleep(outage)
    during = sum((await simulator.calls()).values()) - before
    await simulator.fault_clear()
    logs = list(await asyncio.gather(*first, *late))
    series = await scrape(gw)
    found = await audit(gw, simulator, logs, redis_url, namespace)
    finals = Counter(log.final for log in logs)
    faults_table.record(
        "upstream-outage",
        injected=f"1 outage of {outage:g} s (every call 503)",
        traffic=f"{in_flight} jobs in flight, {submitting} clients submitting during it",
        lost={
            "clients without a final answer": len(lost_clients(logs)),
            "jobs in flight lost": sum(1 for log in logs[:in_flight] if log.final != "completed"),
            **found.money_lost(),
        },
    )
    assert not lost_clients(logs), lost_clients(logs)
    assert value(series, "gateway_upstream_circuit_opened_total", upstream="model_api") >= 1
    assert value(series, "gateway_upstream_circuit_state", upstream="model_api") == 0
    # Fail-fast: 10 jobs polled every 50 ms with retries would call RunComfy hundreds of times
    # in 2 s; with the breaker, the calls that opened it and one probe per half-open period.
    assert during < 60, during
    # A submit that met a 503 may have started a job (504, for reconciliation); every other
    # submit was refused before it was sent and resent by its client.
    assert finals["completed"] + finals["error:504002"] == in_flight + submitting, finals
    assert found.unknown == finals["error:504002"]
    faults_table.assert_readme_agrees()


# --- replicas ---------------------------------------------------------------------------------

REPLICA_SETTINGS = {
    "GATEWAY_POLL_INTERVAL_SECONDS": "0.1",
    "GATEWAY_DISPATCH_INTERVAL_SECONDS": "0.2",
    "GATEWAY_UPSTREAM_READ_TIMEOUT": "10",
}


async def _team_at_its_limit(
    replicas: Replicas, http: aiohttp.ClientSession, simulator: Simulator, lease: str
) -> tuple[Replica, GatewayClient, str, list[ClientLog]]:
    """Replica A with 8 submits of a team limited to 2 jobs at once (2 running, 6 queued),
    its poller stuck in the middle of polling both running jobs (RunComfy answers slowly)."""
    a = await replicas.start("gw-a", GATEWAY_POLL_LEASE_SECONDS=lease, **REPLICA_SETTINGS)
    via_a = GatewayClient(a.url, http)
    key = await via_a.new_team("design", budget_usd=100, max_concurrent=2)
    await simulator.configure(queue_seconds=0.3, run_seconds=1.0)
    await simulator.fault(route="model.status", action="delay", delay=4.0, times=2)
    answers = []
    for i in range(8):
        status, body, headers = await via_a.request(
            "POST", f"/v1/models/{NANO}", key=key, json={"prompt": f"replica {i}"}
        )
        assert status == 200, body
        answers.append((body["request_id"], headers["X-Gateway-Cache"]))
    assert [outcome for _, outcome in answers] == ["miss"] * 2 + ["queued"] * 6
    await wait_until(_faults_used(simulator), 5, "A polling both running jobs")
    logs = [ClientLog(f"replica {i}", rid=rid) for i, (rid, _) in enumerate(answers)]
    return a, via_a, key, logs


def _faults_used(simulator: Simulator) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return not await simulator.faults_left()

    return check


async def _follow(gw: GatewayClient, key: str, logs: list[ClientLog]) -> None:
    """Each client polls its request id, now through the surviving replica, until it ends."""

    async def one(log: ClientLog) -> None:
        try:
            async with asyncio.timeout(CLIENT_WITHIN):
                while True:
                    status, body, _ = await gw.request(
                        "GET", f"/v1/requests/{log.rid}/status", key=key
                    )
                    if status != 200:
                        log.problem = f"status {status}: {body}"
                        return
                    if body["status"] in FINAL:
                        log.final = body["status"]
                        return
                    await asyncio.sleep(0.1)
        except TimeoutError:
            log.problem = f"not finished within {CLIENT_WITHIN} s"

    await asyncio.gather(*(one(log) for log in logs))


@pytest.mark.slow
async def test_a_replica_sigkilled_with_jobs_in_flight_and_a_queue_loses_nothing(
    replicas: Replicas,
    simulator: Simulator,
    http: aiohttp.ClientSession,
    redis_url: str,
    namespace: str,
    faults_table: FaultReport,
) -> None:
    """Replica A dies mid-poll (SIGKILL: no hand-back) with 2 jobs running and 6 queued behind
    the team's limit: replica B takes the polls over when A's leases lapse and starts the queued
    jobs as slots free; every client's job finishes, each paid once."""
    a, _, key, logs = await _team_at_its_limit(replicas, http, simulator, lease="1.0")
    b = await replicas.start("gw-b", GATEWAY_POLL_LEASE_SECONDS="1.0", **REPLICA_SETTINGS)
    a.process.kill()
    await a.process.wait()
    via_b = GatewayClient(b.url, http)
    await _follow(via_b, key, logs)
    found = await audit(via_b, simulator, logs, redis_url, namespace)
    faults_table.record(
        "replica-sigkill",
        injected="1 SIGKILL, mid-poll",
        traffic=f"{len(logs)} jobs of a team limited to 2 at once (2 running, 6 queued)",
        lost={
            "jobs not finished": sum(1 for log in logs if log.final != "completed"),
            **found.money_lost(),
        },
    )
    assert not lost_clients(logs), f"{lost_clients(logs)}\n{problems([a, b])}"
    assert [log.final for log in logs] == ["completed"] * len(logs)
    assert await simulator.count("model.submit") == len(logs) == found.sim_jobs
    faults_table.assert_readme_agrees()


@pytest.mark.slow
async def test_a_replica_sigtermed_with_jobs_in_flight_and_a_queue_drains_and_hands_over(
    replicas: Replicas,
    simulator: Simulator,
    http: aiohttp.ClientSession,
    redis_url: str,
    namespace: str,
    faults_table: FaultReport,
) -> None:
    """SIGTERM to replica A while a submit is at RunComfy and A is mid-poll of both running
    jobs: the submit is answered, A hands its polls back and exits 0, and replica B finishes
    everything long before A's 30 s poll leases would have lapsed."""
    a, via_a, key, logs = await _team_at_its_limit(replicas, http, simulator, lease="30")
    b = await replicas.start("gw-b", GATEWAY_POLL_LEASE_SECONDS="30", **REPLICA_SETTINGS)
    await simulator.fault(route="model.submit", action="delay", delay=0.5)
    in_flight = asyncio.create_task(
        via_a.request("POST", f"/v1/models/{NANO}", key=key, json={"prompt": "replica 8"})
    )
    await asyncio.sleep(0.2)
    a.process.send_signal(signal.SIGTERM)
    status, body, _ = await in_flight
    exit_code = await asyncio.wait_for(a.process.wait(), 20)
    answered = status == 200
    if answered:
        logs.append(ClientLog("replica 8", rid=body["request_id"]))
    started = time.monotonic()
    await _follow(GatewayClient(b.url, http), key, logs)
    took = time.monotonic() - started
    found = await audit(GatewayClient(b.url, http), simulator, logs, redis_url, namespace)
    faults_table.record(
        "replica-sigterm",
        injected="1 SIGTERM, mid-poll and mid-submit",
        traffic=f"{len(logs)} jobs of a team limited to 2 at once (2 running, 7 queued)",
        lost={
            "requests in flight cut off": 0 if answered else 1,
            "jobs not finished": sum(1 for log in logs if log.final != "completed"),
            **found.money_lost(),
        },
    )
    assert answered, body
    assert exit_code == 0, a.log_text()[-2000:]
    assert not lost_clients(logs), f"{lost_clients(logs)}\n{problems([a, b])}"
    assert [log.final for log in logs] == ["completed"] * len(logs)
    assert took < 25, f"polls handed back at SIGTERM, not left to the 30 s lease ({took:.1f} s)"
    faults_table.assert_readme_agrees()


# --- slow and oversized clients ---------------------------------------------------------------

SLOW_CLIENT_SETTINGS = {
    "GATEWAY_CLIENT_IDLE_TIMEOUT_SECONDS": "2",
    "GATEWAY_CLIENT_BODY_TIMEOUT_SECONDS": "2",
    "GATEWAY_MAX_BODY_BYTES": "65536",
}
TRICKLE_EVERY = 0.25  # seconds between two bytes of a slow client


async def _slowloris(url: str, held: float) -> float | None:
    """Open a connection and send a request's headers one byte at a time, never finishing;
    returns how long the gateway kept the connection (None: still open after ``held`` s)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    started = time.monotonic()
    head = f"POST /v1/models/{NANO} HTTP/1.1\r\nHost: {host}\r\n".encode()
    try:
        writer.write(head)
        for byte in b"X-Padding: " + b"a" * 10_000:
            await writer.drain()
            if reader.at_eof():
                return time.monotonic() - started
            try:
                if await asyncio.wait_for(reader.read(1), TRICKLE_EVERY) == b"":
                    return time.monotonic() - started
            except TimeoutError:
                pass
            if time.monotonic() - started > held:
                return None
            writer.write(bytes([byte]))
        return None
    except ConnectionError:
        return time.monotonic() - started
    finally:
        writer.close()


async def _slow_body(url: str, key: str, held: float) -> int:
    """Send complete headers, then the body one byte at a time; returns the status the gateway
    answered with (0: none within ``held`` s)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    body = b'{"prompt": "' + b"s" * 500 + b'"}'
    head = (
        f"POST /v1/models/{NANO} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    started = time.monotonic()
    try:
        writer.write(head)
        for byte in body:
            try:
                line = await asyncio.wait_for(reader.readline(), TRICKLE_EVERY)
            except TimeoutError:
                line = b""
            if line.startswith(b"HTTP/1.1 "):
                return int(line.split()[1])
            if reader.at_eof() or time.monotonic() - started > held:
                return 0
            writer.write(bytes([byte]))
            await writer.drain()
        return 0
    except ConnectionError:
        return 0
    finally:
        writer.close()


@pytest.mark.slow
async def test_slowloris_and_slow_bodies_do_not_starve_other_clients(
    replicas: Replicas,
    simulator: Simulator,
    http: aiohttp.ClientSession,
    redis_url: str,
    namespace: str,
    faults_table: FaultReport,
) -> None:
    """200 connections trickling their headers and 20 trickling their bodies, while 30 clients
    run jobs through the same replica: the clients' jobs all finish, slow headers are cut off
    after the idle timeout, slow bodies get 408 after the body timeout."""
    lorises, trickles, clients, held = 200, 20, 30, 10.0
    gw = await replicas.start("gw-slow", **SLOW_CLIENT_SETTINGS)
    client = GatewayClient(gw.url, http)
    key = await client.new_team("design", budget_usd=100)
    await simulator.configure(queue_seconds=0.3, run_seconds=0.5)
    attack = asyncio.gather(
        *(_slowloris(gw.url, held) for _ in range(lorises)),
        *(_slow_body(gw.url, key, held) for _ in range(trickles)),
    )
    await asyncio.sleep(0.5)
    logs = await asyncio.gather(
        *(run_client(client, key, f"meanwhile {i}", start_after=i * 0.1) for i in range(clients))
    )
    outcomes = await attack
    kept: list[float | None] = list(outcomes[:lorises])
    answered: list[float | None] = list(outcomes[lorises:])
    found = await audit(client, simulator, logs, redis_url, namespace)
    faults_table.record(
        "slowloris",
        injected=f"{lorises} connections",
        traffic=f"{clients} clients, each a new job",
        lost={
            "clients without a final answer": len(lost_clients(logs)),
            f"connections still open after {held:g} s": sum(1 for k in kept if k is None),
        },
    )
    faults_table.record(
        "slow-bodies",
        injected=f"{trickles} bodies",
        traffic=f"{clients} clients, each a new job",
        lost={
            "clients without a final answer": len(lost_clients(logs)),
            "slow bodies not answered 408": sum(1 for status in answered if status != 408),
        },
    )
    assert not lost_clients(logs), f"{lost_clients(logs)}\n{problems([gw])}"
    assert [log.final for log in logs] == ["completed"] * clients
    assert all(k is not None and k < held for k in kept), sorted(kept, key=str)[-5:]
    assert answered == [408] * trickles, answered
    assert found.sim_jobs == clients and found.books_off_micro == 0
    faults_table.assert_readme_agrees()


async def test_bodies_over_the_limit_get_413_and_never_reach_runcomfy(
    replicas: Replicas,
    simulator: Simulator,
    http: aiohttp.ClientSession,
    faults_table: FaultReport,
) -> None:
    """Declared too large (refused unread), chunked past the limit, or just over it: 413 in
    RunComfy's shape, and RunComfy never sees them; a body at the limit still goes through."""
    gw = await replicas.start("gw-413", **SLOW_CLIENT_SETTINGS)
    client = GatewayClient(gw.url, http)
    key = await client.new_team("design")
    limit = int(SLOW_CLIENT_SETTINGS["GATEWAY_MAX_BODY_BYTES"])
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    path = f"{gw.url}/v1/models/{NANO}"

    def body(size: int) -> bytes:
        wrapper = b'{"prompt": ""}'
        return b'{"prompt": "' + b"x" * (size - len(wrapper)) + b'"}'

    async def chunks(total: int) -> AsyncIterator[bytes]:
        data = body(total)
        for start in range(0, len(data), 8192):
            yield data[start : start + 8192]

    statuses: list[int] = []
    sent = [("just over", body(limit + 1)), ("ten times over", body(10 * limit))]
    for _, data in sent:
        async with http.post(path, data=data, headers=auth) as resp:
            statuses.append(resp.status)
            assert_error_shape(await resp.json(), 413001)
    for size in (limit + 1, 4 * limit):
        async with http.post(path, data=chunks(size), headers=auth) as resp:  # chunked
            statuses.append(resp.status)
            assert_error_shape(await resp.json(), 413001)
    huge = f"POST /v1/models/{NANO} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
    huge += "Content-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n"
    host, port = gw.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(huge.encode())  # and never a byte of the body: refused unread
    statuses.append(int((await asyncio.wait_for(reader.readline(), 10)).split()[1]))
    writer.close()
    reached = await simulator.count("model.submit")
    async with http.post(path, data=body(limit), headers=auth) as resp:
        at_limit = resp.status
    faults_table.record(
        "oversized-bodies",
        injected=f"{len(statuses)} bodies (2 sized, 2 chunked, 1 declared 10 GB)",
        traffic="1 body at the limit",
        lost={
            "oversized bodies not answered 413": sum(1 for s in statuses if s != 413),
            "oversized bodies that reached RunComfy": reached,
        },
    )
    assert statuses == [413] * 5 and reached == 0
    assert at_limit == 200
    faults_table.assert_readme_agrees()


# --- the table itself -------------------------------------------------------------------------


def test_the_readme_fault_table_has_one_row_per_fault_test() -> None:
    rows = fault_report.readme_rows(fault_report.TABLE_DOC.read_text())
    assert list(rows) == list(fault_report.FAULTS), "run: python -m tests.fault_report --update"
    names = {name for name, _ in inspect.getmembers(sys.modules[__name__], inspect.isfunction)}
    for key, line in rows.items():
        test = line.rstrip(" |").rsplit("`", 2)[-2]
        assert test in names, f"{key}: {test} is not a test in this file"


def test_the_fault_table_is_rendered_from_the_measured_rows_only(tmp_path: Path) -> None:
    measured = fault_report.FaultRow(
        "slowloris", "3 connections", "1 client", {"clients lost": 0}, "test_x"
    )
    fault_report.write(tmp_path, measured)
    kept = fault_report.FaultRow("oversized-bodies", "1 body", "none", {}, "test_y").markdown()
    before = f"intro\n\n{fault_report.render({'oversized-bodies': kept})}\n\nafter\n"
    updated = fault_report.updated_readme(before, fault_report.load(tmp_path))
    assert updated.startswith("intro\n\n") and updated.endswith("\n\nafter\n")
    rows = updated.split(fault_report.START)[1].split(fault_report.END)[0].strip().splitlines()
    assert rows[2:] == [measured.markdown(), kept]  # in the table's order
    assert measured.markdown() == (
        "| Slowloris: connections sending their headers a byte at a time | 3 connections "
        "| 1 client | clients lost: 0 | `test_x` |"
    )
