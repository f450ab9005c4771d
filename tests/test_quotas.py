"""Team limits, budgets and access, as a team developer and a platform engineer see them."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import pytest

from gateway.store.client import connect
from gateway.web.appkeys import METRICS, QUOTAS, TEAMS
from tests.conftest import NANO, Gateway, Simulator, assert_error_shape, on_single_and_cluster
from tests.test_metrics import scrape, team_gauges
from tests.test_metrics import value as metric

FLUX = "blackforestlabs/flux-2/flash/text-to-image"  # $0.012 per image
GPT_IMAGE = "openai/gpt-image-2/text-to-image"  # $0.042 per image, num_images
DAY = 86400


async def submit(gw: Gateway, key: str, prompt: str, model: str = NANO, **extra: Any) -> Any:
    return await gw.request(
        "POST", f"/v1/models/{model}", key=key, json={"prompt": prompt, **extra}
    )


async def wait_status(gw: Gateway, key: str, rid: str, wanted: str, within: int = 400) -> Any:
    body: Any = None
    for _ in range(within):
        status, body, _ = await gw.request("GET", f"/v1/requests/{rid}/status", key=key)
        assert status == 200, body
        if body["status"] == wanted:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"{rid} never reached {wanted}: {body}")


async def usage(gw: Gateway, team: str) -> Any:
    status, body = await gw.admin("GET", f"/admin/v1/teams/{team}/usage")
    assert status == 200, body
    return body


async def settled(gw: Gateway, team: str, reserved: float = 0.0) -> dict[str, Any]:
    """The team's budget record once nothing is reserved any more."""
    budget: dict[str, Any] = {}
    for _ in range(200):
        budget = (await usage(gw, team))["budget"]
        if budget["reserved_usd"] == reserved:
            return budget
        await asyncio.sleep(0.05)
    raise AssertionError(f"still reserved: {budget}")


# --- access ------------------------------------------------------------------------------------


async def test_a_model_not_on_the_teams_list_is_403_naming_the_limit(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await gateway.new_team("design", models=["blackforestlabs/*"])
    status, body, _ = await submit(gateway, key, "fox")
    assert status == 403
    assert_error_shape(body, 403002)
    assert NANO in body["error_message"] and "not on your team's list" in body["error_message"]
    assert body["detail"]["limit"] == "access"
    status, _, _ = await submit(gateway, key, "fox", model=FLUX)
    assert status == 200
    assert await simulator.count("model.submit") == 1


async def test_serverless_deployments_are_closed_until_an_admin_opens_one(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await gateway.new_team("design")
    _, deployments = await gateway.admin("GET", "/prod/v2/deployments")
    deployment = deployments[0]["id"]
    path = f"/prod/v1/deployments/{deployment}/inference"
    status, body, _ = await gateway.request("POST", path, key=key, json={"overrides": {}})
    assert status == 403
    assert_error_shape(body, 403002)
    assert await simulator.count("serverless.inference") == 0
    await gateway.set_limits("design", deployments=[deployment])
    status, body, _ = await gateway.request("POST", path, key=key, json={"overrides": {}})
    assert status == 200, body


# --- submit rate and submits per day -----------------------------------------------------------


@on_single_and_cluster
async def test_a_burst_over_the_submit_rate_gets_429_with_retry_after_and_ratelimit_headers(
    gateway: Gateway,
) -> None:
    key = await gateway.new_team("design", rate_per_minute=6, rate_burst=3)
    for i in range(3):
        status, body, headers = await submit(gateway, key, f"p{i}")
        assert status == 200, body
        assert headers["RateLimit-Policy"] == '"team-rate";q=3;w=30'
        assert headers["RateLimit"].startswith(f'"team-rate";r={2 - i};t=')
    status, body, headers = await submit(gateway, key, "p3")
    assert status == 429
    assert_error_shape(body, 429002)
    assert "6 submits per minute" in body["error_message"]
    assert 1 <= int(headers["Retry-After"]) <= 10
    assert headers["RateLimit"].startswith('"team-rate";r=0;')
    # Full again when the three submits' intervals have passed: t is the same on a refusal as
    # on the admission before it, not one interval more.
    assert 28 <= int(headers["RateLimit"].rpartition("t=")[2]) <= 30


@pytest.mark.parametrize("scope", ["team", "key"])
async def test_a_changed_submit_rate_applies_to_the_next_submit_both_ways(
    gateway: Gateway, scope: str
) -> None:
    key = await gateway.new_team("design")
    kid = key.split("_")[1]

    async def rate(per_minute: float | None, burst: int | None = None) -> None:
        limit = {} if per_minute is None else {"rate_per_minute": per_minute, "rate_burst": burst}
        await gateway.set_limits("design", **(limit if scope == "team" else {"keys": {kid: limit}}))

    await rate(0.1, 1)
    assert (await submit(gateway, key, "first"))[0] == 200
    status, body, headers = await submit(gateway, key, "too soon")
    assert status == 429 and body["detail"]["scope"] == scope
    assert int(headers["Retry-After"]) > 500
    await rate(600, 100)  # raised: admitted at once, under the new limit
    assert (await submit(gateway, key, "raised"))[0] == 200
    await rate(0.1, 1)  # lowered again: refused at once, quoting the limit in force
    status, body, _ = await submit(gateway, key, "lowered")
    assert status == 429 and "0.1 submits per minute" in body["error_message"]
    await rate(None)  # cleared, then set again: the next submit is admitted
    assert (await submit(gateway, key, "cleared"))[0] == 200
    await rate(600, 100)
    assert (await submit(gateway, key, "set again"))[0] == 200


# --- refused input is not a submit -------------------------------------------------------------

TYPO = "google/nano-banan/pro/text-to-image"


async def test_a_mistyped_model_and_a_refused_body_use_no_daily_submit_usage_row_or_metric(
    gateway: Gateway, simulator: Simulator
) -> None:
    """A team allowed one submit a day sends a typo, then a body RunComfy refuses: its real
    request still goes through, and only that one shows in usage and in the metrics."""
    key = await gateway.new_team("design", daily_requests=1)
    for _ in range(2):
        status, body, _ = await submit(gateway, key, "fox", model=TYPO)
        assert status == 404
        assert_error_shape(body, 404001)
        assert TYPO in str(body)
    assert await simulator.count("model.submit") == 0
    assert await simulator.count("catalog.get") == 1  # one answer for schema, price and refusal
    status, body, _ = await submit(gateway, key, "fox", resolution="16K")
    assert status == 422
    assert_error_shape(body, 422001)
    status, body, _ = await submit(gateway, key, "fox")
    assert status == 200, body
    assert (await submit(gateway, key, "another"))[0] == 429  # the one submit of the day
    totals = (await usage(gateway, "design"))["totals"]
    assert (totals["requests"], totals["miss"], totals.get("refused")) == (1, 1, 1)
    by_model = (await usage(gateway, "design"))["by_model"]
    assert list(by_model) == [NANO] and by_model[NANO]["requests"] == 1
    series = await scrape(gateway)
    assert metric(series, "gateway_cache_requests_total") == 1
    assert metric(series, "gateway_cache_requests_total", outcome="miss") == 1


async def test_followers_of_a_refused_submit_get_its_error_and_are_not_counted_either(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await gateway.new_team("design", daily_requests=4)
    await simulator.fault(route="model.submit", action="delay", delay=0.3)
    bad = {"prompt": "x", "resolution": "16K"}
    answers = await asyncio.gather(
        *(gateway.request("POST", f"/v1/models/{NANO}", key=key, json=bad) for _ in range(4))
    )
    assert [status for status, _, _ in answers] == [422] * 4
    assert await simulator.count("model.submit") == 1
    report = await usage(gateway, "design")
    assert report["totals"] == {"hit_rate": 0.0} and report["by_model"] == {}
    assert [(await submit(gateway, key, f"fine {i}"))[0] for i in range(5)] == [200] * 4 + [429]


async def test_mistyped_models_still_count_against_the_submit_rate(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await gateway.new_team("design", rate_per_minute=1, rate_burst=2)
    assert [(await submit(gateway, key, "x", model=TYPO))[0] for _ in range(2)] == [404, 404]
    status, body, _ = await submit(gateway, key, "x", model=TYPO)
    assert status == 429 and body["detail"]["limit"] == "rate"
    assert (await submit(gateway, key, "x"))[0] == 429
    forged = key[:-4] + "xxxx"
    assert (await submit(gateway, forged, "x", model=TYPO))[0] == 401
    assert await simulator.count("model.submit") == 0


async def test_with_the_catalog_unreachable_submits_go_through_as_sent(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await gateway.new_team("design", daily_requests=5)
    await simulator.fault(route="catalog.get", action="status", status=503, times=None)
    status, body, _ = await submit(gateway, key, "fox", model=TYPO)
    assert status == 404  # RunComfy's own answer to the submit
    assert_error_shape(body, 404001)
    assert await simulator.count("model.submit") == 1
    status, body, _ = await submit(gateway, key, "fox")
    assert status == 200, body
    assert (await usage(gateway, "design"))["totals"]["requests"] == 1


async def test_status_polls_do_not_count_against_the_submit_rate(gateway: Gateway) -> None:
    key = await gateway.new_team("design", rate_per_minute=1, rate_burst=1)
    status, body, _ = await submit(gateway, key, "one")
    assert status == 200
    for _ in range(20):
        status, _, _ = await gateway.request(
            "GET", f"/v1/requests/{body['request_id']}/status", key=key
        )
        assert status == 200
    status, _, _ = await submit(gateway, key, "two")
    assert status == 429


async def test_a_key_can_be_narrower_than_its_team(gateway: Gateway) -> None:
    wide = await gateway.new_team("design")
    status, created = await gateway.admin("POST", "/admin/v1/teams/design/keys", {})
    narrow = created["key"]
    await gateway.set_limits("design", keys={created["key_id"]: {"daily_requests": 1}})
    assert (await submit(gateway, narrow, "a"))[0] == 200
    status, body, _ = await submit(gateway, narrow, "b")
    assert status == 429 and body["detail"]["scope"] == "key"
    assert "this API key's limit is 1 submits per day" in body["error_message"]
    assert (await submit(gateway, wide, "c"))[0] == 200


async def test_the_daily_limit_resets_at_midnight_with_no_process_running_at_the_boundary(
    gateway_factory: Any,
) -> None:
    today = await gateway_factory()
    key = await today.new_team("design", daily_requests=2)
    assert (await submit(today, key, "a"))[0] == 200
    assert (await submit(today, key, "b"))[0] == 200
    status, body, headers = await submit(today, key, "c")
    assert status == 429 and body["detail"]["limit"] == "daily"
    assert 0 < int(headers["Retry-After"]) <= DAY
    # The same Redis, a day later: a replica that was never running at midnight.
    tomorrow = await gateway_factory(clock_offset_seconds=DAY)
    assert (await submit(tomorrow, key, "d"))[0] == 200
    assert (await submit(today, key, "e"))[0] == 429  # "today" is still full


async def test_a_daily_limit_set_mid_day_counts_the_submits_made_before_it(
    gateway: Gateway,
) -> None:
    key = await gateway.new_team("design")
    assert (await submit(gateway, key, "before"))[0] == 200
    await gateway.set_limits("design", daily_requests=1)
    status, body, _ = await submit(gateway, key, "after")
    assert status == 429 and body["detail"]["limit"] == "daily", body
    report = await usage(gateway, "design")
    assert list(report["requests_by_key"].values()) == [1]


async def test_a_changed_limit_applies_to_the_next_request_on_every_replica(
    gateway_factory: Any,
) -> None:
    a, b = await gateway_factory(), await gateway_factory()
    key = await a.new_team("design")
    assert (await submit(b, key, "x"))[0] == 200
    await a.set_limits("design", models=[])
    status, body, _ = await submit(b, key, "y")
    assert status == 403, body


@on_single_and_cluster
async def test_polling_too_fast_with_one_key_is_429_but_never_touches_submit_limits(
    gateway_factory: Any,
) -> None:
    gw = await gateway_factory(poll_rate_per_second=1, poll_burst=3)
    key = await gw.new_team("design")
    _, body, _ = await submit(gw, key, "x")
    statuses = [
        (await gw.request("GET", f"/v1/requests/{body['request_id']}/status", key=key))[0]
        for _ in range(6)
    ]
    assert statuses[:3] == [200, 200, 200]
    assert 429 in statuses[3:]
    status, body, headers = await gw.request(
        "GET", f"/v1/requests/{body['request_id']}/result", key=key
    )
    if status == 429:
        assert_error_shape(body, 429004)
        assert headers["Retry-After"]


# --- money -------------------------------------------------------------------------------------


@on_single_and_cluster
async def test_the_budget_admits_what_it_covers_then_402_naming_it(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await gateway.new_team("design", budget_usd=0.30)
    for prompt in ("a", "b"):
        status, body, _ = await submit(gateway, key, prompt)
        assert status == 200, body
    status, body, _ = await submit(gateway, key, "c")
    assert status == 402
    assert_error_shape(body, 402001)
    assert "Budget exhausted" in body["error_message"] and "$0.3" in body["error_message"]
    assert body["detail"]["estimated_cost_usd"] == 0.15
    assert await simulator.count("model.submit") == 2
    # identical requests cost nothing: hits and followers are free
    status, _, headers = await submit(gateway, key, "a")
    assert status == 200 and headers["X-Gateway-Cache"] in ("hit", "coalesced")
    budget = await settled(gateway, "design")
    assert budget["settled_usd"] == 0.30 and budget["remaining_usd"] == 0.0


async def test_a_request_estimated_over_the_per_request_cap_is_refused_before_it_runs(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await gateway.new_team("design", max_request_usd=0.1)
    status, body, _ = await submit(gateway, key, "4 images", model=GPT_IMAGE, num_images=4)
    assert status == 402
    assert_error_shape(body, 402002)
    assert body["detail"]["estimated_cost_usd"] == 0.168
    assert (await submit(gateway, key, "2 images", model=GPT_IMAGE, num_images=2))[0] == 200
    assert await simulator.count("model.submit") == 1


async def test_the_monthly_budget_resets_when_the_month_turns(gateway_factory: Any) -> None:
    now = await gateway_factory()
    key = await now.new_team("design", budget_usd=0.15, budget_period="month")
    assert (await submit(now, key, "a"))[0] == 200
    assert (await submit(now, key, "b"))[0] == 402
    next_month = await gateway_factory(clock_offset_seconds=32 * DAY)
    assert (await submit(next_month, key, "c"))[0] == 200


async def test_reservations_settle_to_runcomfys_cost_and_refund_failures_and_cancels(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await gateway.new_team("design", budget_usd=10)
    _, ok, _ = await submit(gateway, key, "works", model=GPT_IMAGE, num_images=3)
    assert (await usage(gateway, "design"))["budget"]["reserved_usd"] == 0.126
    await simulator.configure(next_outcomes=["failed"])
    _, failed, _ = await submit(gateway, key, "fails")
    await simulator.configure(queue_seconds=30)
    _, cancelled, _ = await submit(gateway, key, "cancelled")
    await wait_status(gateway, key, ok["request_id"], "completed")
    await wait_status(gateway, key, failed["request_id"], "completed")
    _, result, _ = await gateway.request(
        "GET", f"/v1/requests/{failed['request_id']}/result", key=key
    )
    assert result["status"] == "failed"
    status, body, _ = await gateway.request(
        "POST", f"/v1/requests/{cancelled['request_id']}/cancel", key=key
    )
    assert status == 202 and body["outcome"] == "cancelled", body
    budget = await settled(gateway, "design")
    assert budget["settled_usd"] == 0.126  # the failure and the cancel were refunded
    status, result, _ = await gateway.request(
        "GET", f"/v1/requests/{ok['request_id']}/result?include_cost=true", key=key
    )
    assert result["cost"] == 0.126


@on_single_and_cluster
async def test_a_submit_of_unknown_outcome_stays_reserved_until_an_admin_resolves_it(
    gateway_factory: Any, simulator: Simulator
) -> None:
    gw = await gateway_factory(upstream_submit_timeout=0.3)
    key = await gw.new_team("design", budget_usd=1)
    await simulator.fault(route="model.submit", action="delay", delay=0.8, after=True)
    status, body, _ = await submit(gw, key, "lost")
    assert status == 504
    assert_error_shape(body, 504002)
    status, ledger = await gw.admin("GET", "/admin/v1/teams/design/unreconciled")
    assert status == 200
    [entry] = ledger["jobs"]
    assert entry["reserved_usd"] == 0.15 and entry["target"] == NANO
    assert (await usage(gw, "design"))["budget"]["reserved_usd"] == 0.15
    status, resolved = await gw.admin(
        "POST",
        f"/admin/v1/teams/design/unreconciled/{entry['job_id']}",
        {"outcome": "charged"},
    )
    assert status == 200 and resolved["settled_usd"] == 0.15
    budget = (await usage(gw, "design"))["budget"]
    assert budget["reserved_usd"] == 0 and budget["settled_usd"] == 0.15
    status, _ = await gw.admin(
        "POST",
        f"/admin/v1/teams/design/unreconciled/{entry['job_id']}",
        {"outcome": "refunded"},
    )
    assert status == 404  # resolved once


@on_single_and_cluster
async def test_budget_alerts_fire_once_per_threshold_per_period(gateway_factory: Any) -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    gateway = await gateway_factory(webhook_allow_private=True, webhook_backoff_seconds=0.05)
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/alerts", hook)
    receiver = TestServer(app)
    await receiver.start_server()
    try:
        url = str(receiver.make_url("/alerts"))
        status, _body = await gateway.admin(
            "PUT",
            "/admin/v1/teams/design/limits",
            {"budget_usd": 0.45},
        )
        assert status == 404  # no such team yet
        key = await gateway.new_team("design", budget_usd=0.45, alert_webhook=url)
        for prompt in ("a", "b", "c"):  # 33 %, 67 %, 100 %
            assert (await submit(gateway, key, prompt))[0] == 200
        assert (await submit(gateway, key, "a"))[0] == 200  # a hit: no new spend
        for _ in range(100):
            if len(received) >= 2:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        assert sorted(r["threshold_percent"] for r in received) == [50, 100]
        assert all(r["type"] == "budget_alert" and r["team_id"] == "design" for r in received)
        assert received[-1]["budget_usd"] == 0.45
    finally:
        await receiver.close()


# --- concurrency and the queue -----------------------------------------------------------------


@on_single_and_cluster
async def test_submits_over_the_concurrency_limit_wait_in_queue_then_run(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await gateway.new_team("design", max_concurrent=1)
    answers = [await submit(gateway, key, f"p{i}") for i in range(3)]
    assert [a[0] for a in answers] == [200, 200, 200]
    assert [a[2]["X-Gateway-Cache"] for a in answers] == ["miss", "queued", "queued"]
    rids = [a[1]["request_id"] for a in answers]
    _, second, _ = await gateway.request("GET", f"/v1/requests/{rids[1]}/status", key=key)
    _, third, _ = await gateway.request("GET", f"/v1/requests/{rids[2]}/status", key=key)
    assert second["status"] == "in_queue" and second["queue_position"] == 1
    assert third["status"] == "in_queue" and third["queue_position"] == 2
    assert await simulator.count("model.submit") == 1
    for rid in rids:
        await wait_status(gateway, key, rid, "completed")
    assert await simulator.count("model.submit") == 3
    assert (await usage(gateway, "design"))["queued"] == 0


async def test_a_full_queue_is_429_and_a_follower_of_a_queued_job_takes_no_slot(
    gateway: Gateway, simulator: Simulator
) -> None:
    await simulator.configure(queue_seconds=30)
    key = await gateway.new_team("design", max_concurrent=1, max_queue=1)
    assert (await submit(gateway, key, "running"))[0] == 200
    status, _queued, headers = await submit(gateway, key, "waiting")
    assert status == 200 and headers["X-Gateway-Cache"] == "queued"
    status, _follower, headers = await submit(gateway, key, "waiting")
    assert status == 200 and headers["X-Gateway-Cache"] == "coalesced"
    status, body, headers = await submit(gateway, key, "no room")
    assert status == 429
    assert_error_shape(body, 429003)
    assert "queue is full" in body["error_message"] and headers["Retry-After"]
    assert await simulator.count("model.submit") == 1


@on_single_and_cluster
async def test_cancelling_a_queued_submit_refunds_it_and_never_asks_runcomfy(
    gateway: Gateway, simulator: Simulator
) -> None:
    await simulator.configure(queue_seconds=30)
    key = await gateway.new_team("design", max_concurrent=1, budget_usd=1)
    await submit(gateway, key, "running")
    _, queued, _ = await submit(gateway, key, "waiting")
    rid = queued["request_id"]
    status, body, _ = await gateway.request("POST", f"/v1/requests/{rid}/cancel", key=key)
    assert status == 202 and body["outcome"] == "cancelled", body
    _, state, _ = await gateway.request("GET", f"/v1/requests/{rid}/status", key=key)
    assert state["status"] == "cancelled"
    assert await simulator.count("model.cancel") == 0
    assert (await usage(gateway, "design"))["budget"]["reserved_usd"] == 0.15  # only "running"


async def test_a_queued_job_starts_on_another_replica_when_a_slot_frees(
    gateway_factory: Any, simulator: Simulator
) -> None:
    await simulator.configure(run_seconds=3)  # "first" holds the slot while "second" comes
    a = await gateway_factory()
    b = await gateway_factory()
    key = await a.new_team("design", max_concurrent=1)
    _, _first, _ = await submit(a, key, "first")
    _, second, headers = await submit(b, key, "second")
    assert headers["X-Gateway-Cache"] == "queued"
    await wait_status(a, key, second["request_id"], "completed")
    assert await simulator.count("model.submit") == 2


@on_single_and_cluster
async def test_the_account_wide_cap_queues_jobs_of_every_team(
    gateway_factory: Any, simulator: Simulator
) -> None:
    await simulator.configure(run_seconds=2)  # "first" holds the slot while "second" comes
    gw = await gateway_factory(global_max_concurrent_jobs=1)
    design = await gw.new_team("design")
    ops = await gw.new_team("ops")
    _, _first, _ = await submit(gw, design, "first")
    status, second, headers = await submit(gw, ops, "second")
    assert status == 200 and headers["X-Gateway-Cache"] == "queued"
    assert await simulator.count("model.submit") == 1
    await wait_status(gw, ops, second["request_id"], "completed")
    assert await simulator.count("model.submit") == 2


# --- usage -------------------------------------------------------------------------------------


@on_single_and_cluster
async def test_usage_shows_requests_spend_savings_and_hit_rate_by_day_and_model(
    gateway: Gateway,
) -> None:
    key = await gateway.new_team("design", budget_usd=5)
    _, body, _ = await submit(gateway, key, "fox")
    await wait_status(gateway, key, body["request_id"], "completed")
    await submit(gateway, key, "fox")  # a hit
    await submit(gateway, key, "owl", model=FLUX)
    await settled(gateway, "design")
    report = await usage(gateway, "design")
    totals = report["totals"]
    assert totals["requests"] == 3 and totals["hit"] == 1 and totals["miss"] == 2
    assert totals["spend_usd"] == 0.162 and totals["saved_usd"] == 0.15
    assert totals["hit_rate"] == round(1 / 3, 4)
    assert report["by_model"][NANO]["requests"] == 2
    assert report["by_model"][FLUX]["spend_usd"] == 0.012
    assert report["by_day"][-1]["requests"] == 3
    assert report["budget"]["remaining_usd"] == round(5 - 0.162, 6)
    # the calendar's first days (schemathesis: '?to=0001-01-01' was an OverflowError, a 500)
    status, early = await gateway.admin("GET", "/admin/v1/teams/design/usage?to=0001-01-03")
    assert status == 200 and [d["day"] for d in early["by_day"]] == [
        "0001-01-01",
        "0001-01-02",
        "0001-01-03",
    ]
    status, _ = await gateway.admin(
        "GET", "/admin/v1/teams/design/usage?from=9999-12-31&to=9999-12-31"
    )
    assert status == 200


@pytest.mark.parametrize("scope", ["team", "key"])
async def test_a_limit_beyond_what_redis_counts_exactly_is_422_and_the_team_stays_readable(
    gateway: Gateway, scope: str
) -> None:
    key = await gateway.new_team("design", daily_requests=10)
    kid = key.split("_")[1]
    huge = 2**64 + 1
    payload: dict[str, Any] = (
        {"daily_requests": huge} if scope == "team" else {"keys": {kid: {"daily_requests": huge}}}
    )
    status, body = await gateway.admin("PUT", "/admin/v1/teams/design/limits", payload)
    assert status == 422
    assert_error_shape(body, 422001)
    status, read = await gateway.admin("GET", "/admin/v1/teams/design/limits")
    assert status == 200 and read["daily_requests"] == 10
    assert (await gateway.admin("GET", "/admin/v1/teams/design/usage"))[0] == 200


async def test_limits_are_validated_and_read_back_as_set(gateway: Gateway) -> None:
    await gateway.new_team("design")
    status, body = await gateway.admin(
        "PUT", "/admin/v1/teams/design/limits", {"budget_usd": -1, "surprise": 1}
    )
    assert status == 422
    assert_error_shape(body, 422001)
    limits = {
        "rate_per_minute": 30,
        "rate_burst": 5,
        "daily_requests": 1000,
        "budget_usd": 250.5,
        "budget_period": "week",
        "max_request_usd": 2,
        "max_concurrent": 4,
        "max_queue": 50,
        "models": ["google/*"],
        "deployments": [],
    }
    stored = await gateway.set_limits("design", **limits)
    status, read = await gateway.admin("GET", "/admin/v1/teams/design/limits")
    assert status == 200
    for name, value in limits.items():
        assert stored[name] == value == read[name], name
    assert read["budget"]["period"].count("-W") == 1


async def test_a_null_budget_period_clears_it_back_to_month_and_an_unknown_one_is_422(
    gateway: Gateway,
) -> None:
    await gateway.new_team("design")
    await gateway.set_limits("design", budget_usd=5, budget_period="day")
    path = "/admin/v1/teams/design/limits"
    status, body = await gateway.admin("PUT", path, {"budget_usd": 5, "budget_period": None})
    assert status == 200, body
    assert body["budget_period"] == "month" and body["budget"]["period"].count("-") == 1
    status, body = await gateway.admin("PUT", path, {"budget_period": "year"})
    assert status == 422
    assert_error_shape(body, 422001)
    assert body["detail"][0]["loc"] == ["budget_period"]
    _, read = await gateway.admin("GET", path)
    assert (read["budget_period"], read["budget_usd"]) == ("month", 5)


async def test_the_slowest_submit_rate_still_admits_and_slower_ones_are_refused(
    gateway: Gateway,
) -> None:
    """A rate of 1e-300 per minute was accepted and made every submit of the team a 500 (its
    GCRA expiry was no integer Redis takes); now 1e-6 per minute is the floor."""
    key = await gateway.new_team("design")
    status, body = await gateway.admin(
        "PUT", "/admin/v1/teams/design/limits", {"rate_per_minute": 1e-300}
    )
    assert status == 422
    assert_error_shape(body, 422001)
    await gateway.set_limits("design", rate_per_minute=1e-6, rate_burst=1_000_000)
    for prompt in ("a", "b"):
        status, body, headers = await submit(gateway, key, prompt)
        assert status == 200, body
        assert headers["RateLimit"].startswith('"team-rate";r=')


# --- the books ---------------------------------------------------------------------------------


async def ledger_micro(simulator: Simulator) -> int:
    async with simulator.session.get(f"{simulator.url}/_sim/ledger") as resp:
        data = await resp.json()
    return int(data["charged_micro"])


@on_single_and_cluster
async def test_the_books_balance_through_cancels_failures_timeouts_and_coalescing(
    gateway_factory: Any, simulator: Simulator
) -> None:
    """Settled spend plus the unreconciled ledger equals what RunComfy charged, to the micro."""
    gw = await gateway_factory(upstream_submit_timeout=0.3)
    key = await gw.new_team("design", budget_usd=100)
    rids = []
    for i in range(4):  # successes on three price rules
        rids.append((await submit(gw, key, f"ok {i}"))[1]["request_id"])
        rids.append((await submit(gw, key, f"ok {i}", model=FLUX))[1]["request_id"])
        answer = await submit(gw, key, f"ok {i}", model=GPT_IMAGE, num_images=i + 1)
        rids.append(answer[1]["request_id"])
    coalesced = await asyncio.gather(*(submit(gw, key, "popular") for _ in range(10)))
    assert sum(1 for a in coalesced if a[2]["X-Gateway-Cache"] == "miss") == 1
    rids += [a[1]["request_id"] for a in coalesced]
    await simulator.configure(next_outcomes=["failed", "failed"])
    rids.append((await submit(gw, key, "fails 1"))[1]["request_id"])
    rids.append((await submit(gw, key, "fails 2", model=GPT_IMAGE, num_images=2))[1]["request_id"])
    await simulator.configure(queue_seconds=30)
    _, doomed, _ = await submit(gw, key, "cancel me")
    status, body, _ = await gw.request(
        "POST", f"/v1/requests/{doomed['request_id']}/cancel", key=key
    )
    assert status == 202 and body["outcome"] == "cancelled", body
    await simulator.configure(queue_seconds=0.2)
    await simulator.fault(route="model.submit", action="delay", delay=0.6, after=True, times=2)
    for prompt in ("timeout 1", "timeout 2"):
        assert (await submit(gw, key, prompt, model=GPT_IMAGE, num_images=3))[0] == 504
    for rid in rids:
        await wait_status(gw, key, rid, "completed")
    budget = await settled(gw, "design", reserved=0.252)  # only the two timeouts stay reserved
    _, ledger = await gw.admin("GET", "/admin/v1/teams/design/unreconciled")
    unreconciled = sum(round(e["reserved_usd"] * 1_000_000) for e in ledger["jobs"])
    assert unreconciled == 252_000
    books = round(budget["settled_usd"] * 1_000_000) + unreconciled
    for _ in range(100):  # the timed-out jobs still run at "RunComfy"
        if await ledger_micro(simulator) == books:
            break
        await asyncio.sleep(0.05)
    async with simulator.session.get(f"{simulator.url}/_sim/ledger") as resp:
        data = await resp.json()
    assert data["charged_micro"] == books
    assert books > 0


async def test_the_shared_cache_scope_enforces_access_rate_and_daily_limits_and_refuses_budgets(
    gateway_factory: Any, simulator: Simulator
) -> None:
    gw = await gateway_factory(cache_scope="shared")
    key = await gw.new_team("design", daily_requests=2, models=[NANO])
    assert (await submit(gw, key, "a"))[0] == 200
    assert (await submit(gw, key, "b", model=FLUX))[0] == 403
    assert (await submit(gw, key, "a"))[0] == 200  # a hit or a follower still counts
    status, body, _ = await submit(gw, key, "c")
    assert status == 429 and body["detail"]["limit"] == "daily"
    status, body = await gw.admin("PUT", "/admin/v1/teams/design/limits", {"budget_usd": 5})
    assert status == 422
    assert_error_shape(body, 422001)
    assert "GATEWAY_CACHE_SCOPE" in body["error_message"]
    assert await simulator.count("model.submit") == 1


async def test_a_serverless_job_reserves_the_deployment_estimate_and_settles_to_its_run(
    gateway: Gateway, simulator: Simulator
) -> None:
    """RunComfy reports no cost for serverless jobs: the gateway settles rate x the run it saw."""
    _, deployments = await gateway.admin("GET", "/prod/v2/deployments")
    dep = deployments[0]["id"]
    status, _ = await gateway.admin(
        "PUT",
        f"/admin/v1/pricing/deployments/{dep}",
        {"usd_per_second": 1, "estimated_seconds": 100},
    )
    assert status == 200
    key = await gateway.new_team("design", deployments=[dep], budget_usd=150)
    base = f"/prod/v1/deployments/{dep}"
    status, body, _ = await gateway.request(
        "POST", f"{base}/inference", key=key, json={"overrides": {}}
    )
    assert status == 200, body
    assert (await usage(gateway, "design"))["budget"]["reserved_usd"] == 100
    status, refused, _ = await gateway.request(
        "POST", f"{base}/inference", key=key, json={"overrides": {"x": 1}}
    )
    assert status == 402, refused  # 100 reserved + 100 estimated > 150
    rid = body["request_id"]
    for _ in range(200):
        _, state, _ = await gateway.request("GET", f"{base}/requests/{rid}/status", key=key)
        if state["status"] == "completed":
            break
        await asyncio.sleep(0.05)
    budget = await settled(gateway, "design")
    assert 0 < budget["settled_usd"] < 2  # the simulator runs it for 0.3 s, not 100


async def test_the_submit_rate_refills_smoothly_with_no_window_edge_to_burst_across(
    gateway: Gateway,
) -> None:
    key = await gateway.new_team("design", rate_per_minute=60, rate_burst=2)
    assert [(await submit(gateway, key, f"a{i}"))[0] for i in range(3)] == [200, 200, 429]
    status, _, headers = await submit(gateway, key, "a3")
    wait = int(headers["Retry-After"])
    assert status == 429 and 1 <= wait <= 2
    await asyncio.sleep(1.05)  # one interval: exactly one more submit, never a fresh burst
    assert [(await submit(gateway, key, f"b{i}"))[0] for i in range(3)] == [200, 429, 429]


async def test_a_keys_own_budget_stops_that_key_only(gateway: Gateway) -> None:
    wide = await gateway.new_team("design", budget_usd=10)
    status, created = await gateway.admin("POST", "/admin/v1/teams/design/keys", {})
    assert status == 201
    await gateway.set_limits(
        "design", budget_usd=10, keys={created["key_id"]: {"budget_usd": 0.15}}
    )
    assert (await submit(gateway, created["key"], "a"))[0] == 200
    status, body, _ = await submit(gateway, created["key"], "b")
    assert status == 402 and body["detail"]["scope"] == "key"
    assert (await submit(gateway, wide, "b"))[0] == 200


async def test_a_weekly_budget_resets_on_monday(gateway_factory: Any) -> None:
    now = await gateway_factory()
    key = await now.new_team("design", budget_usd=0.15, budget_period="week")
    assert (await submit(now, key, "a"))[0] == 200
    assert (await submit(now, key, "b"))[0] == 402
    next_week = await gateway_factory(clock_offset_seconds=7 * DAY)
    assert (await submit(next_week, key, "c"))[0] == 200


async def redis_input_bytes(redis_url: str) -> int:
    client = connect(redis_url)
    try:
        return int((await client.info("stats"))["total_net_input_bytes"])
    finally:
        await client.aclose()


async def test_a_large_body_goes_to_redis_only_when_its_job_is_queued(
    gateway: Gateway, simulator: Simulator, redis_url: str
) -> None:
    await simulator.configure(queue_seconds=0.3, run_seconds=2)  # still running at the next
    key = await gateway.new_team("design", max_concurrent=1)
    bodies = [{"prompt": f"{name} " + "x" * 300_000} for name in ("runs", "waits")]
    before = await redis_input_bytes(redis_url)
    _, sent, headers = await submit(gateway, key, bodies[0]["prompt"])
    assert headers["X-Gateway-Cache"] == "miss"
    after_miss = await redis_input_bytes(redis_url)
    assert after_miss - before < 100_000  # admitted and sent upstream: the body never went to Redis
    _, waiting, headers = await submit(gateway, key, bodies[1]["prompt"])
    assert headers["X-Gateway-Cache"] == "queued"
    assert await redis_input_bytes(redis_url) - after_miss > 300_000  # kept while it waits
    done = await wait_status(gateway, key, waiting["request_id"], "completed")
    assert done["status"] == "completed"
    ledger = await simulator.ledger()
    digests = {job["inputs_sha256"] for job in ledger["jobs"]}
    for body in bodies:  # RunComfy got both bodies exactly, the queued one from Redis
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        assert hashlib.sha256(canonical).hexdigest() in digests
    assert sent["request_id"] != waiting["request_id"]


async def test_a_queued_job_whose_body_never_arrived_is_refunded_not_sent(
    gateway_factory: Any, simulator: Simulator, redis_url: str, namespace: str
) -> None:
    """The replica that admitted a large queued body died before storing it: once the submit
    deadline has passed, the job is refused and its reservation refunded; nothing is sent."""
    await simulator.configure(queue_seconds=0.3, run_seconds=2)  # still running at the next
    gw: Gateway = await gateway_factory()
    key = await gw.new_team("design", max_concurrent=1, budget_usd=10)
    _, running, _ = await submit(gw, key, "runs")
    _, waiting, headers = await submit(gw, key, "waits " + "x" * 300_000)
    assert headers["X-Gateway-Cache"] == "queued"
    client = connect(redis_url)
    try:  # as if its replica had died between admission and storing the body
        async for name in client.scan_iter(match=f"{namespace}:*:job:*"):
            if await client.hget(name, "owner") == waiting["request_id"]:
                await client.hdel(name, "body")
                await client.hset(name, "body_pending", "1")
    finally:
        await client.aclose()
    later: Gateway = await gateway_factory(clock_offset_seconds=600)
    await wait_status(later, key, running["request_id"], "completed")
    failed = await wait_status(later, key, waiting["request_id"], "failed")
    assert failed["status"] == "failed"
    assert await simulator.count("model.submit") == 1
    budget = await settled(later, "design")
    assert budget["reserved_usd"] == 0


# --- budgets set or changed mid-period ---------------------------------------------------------


async def spend_records(redis_url: str, namespace: str) -> dict[str, dict[str, int]]:
    """Every spend record of the test's namespace, by what follows ``spend:`` in its name
    (``<period>`` for the team's, ``<period>:<kid>`` for a key's)."""
    client = connect(redis_url)
    records: dict[str, dict[str, int]] = {}
    try:
        async for name in client.scan_iter(match=f"{namespace}:*:spend:*"):
            raw = await client.hgetall(name)
            records[str(name).rpartition(":spend:")[2]] = {
                field: int(raw.get(field, 0)) for field in ("reserved", "settled")
            }
    finally:
        await client.aclose()
    return records


@pytest.mark.parametrize("scope", ["team", "key"])
@pytest.mark.parametrize("period", ["day", "week", "month"])
async def test_a_budget_set_after_spend_in_the_same_period_counts_that_spend(
    gateway: Gateway, simulator: Simulator, period: str, scope: str
) -> None:
    """The README walkthrough: $0.15 spent with no limits, then a $0.20 budget for the period:
    the next $0.15 submit no longer fits."""
    key = await gateway.new_team("design")
    assert (await submit(gateway, key, "before the budget"))[0] == 200
    await settled(gateway, "design")
    kid = key.split("_")[1]
    budget = {"budget_usd": 0.20}
    await gateway.set_limits(
        "design",
        budget_period=period,
        **(budget if scope == "team" else {"keys": {kid: budget}}),
    )
    shown = (await usage(gateway, "design"))["budget"]  # what `limits show` prints too
    assert (shown["period_kind"], shown["settled_usd"], shown["reserved_usd"]) == (period, 0.15, 0)
    app = gateway.app  # a round of the team gauges' export, now rather than within 5 s
    app[METRICS].set_teams(await app[TEAMS].team_ids())
    await app[QUOTAS].export(app[TEAMS], app[METRICS])
    gauges = await team_gauges(gateway)
    assert gauges[("gateway_team_spend_usd", "design")] == 0.15
    if scope == "team":
        assert shown["remaining_usd"] == 0.05
        assert gauges[("gateway_team_budget_remaining_usd", "design")] == 0.05
    status, body, _ = await submit(gateway, key, "after the budget")
    assert status == 402, body
    assert body["detail"]["scope"] == scope
    assert await simulator.count("model.submit") == 1


async def test_switching_the_budget_period_keeps_that_periods_spend(
    gateway_factory: Any, simulator: Simulator
) -> None:
    today = await gateway_factory()
    key = await today.new_team("design", budget_usd=10)  # monthly
    assert (await submit(today, key, "a"))[0] == 200
    await settled(today, "design")
    for period in ("day", "week", "month"):
        await today.set_limits("design", budget_usd=0.2, budget_period=period)
        shown = (await usage(today, "design"))["budget"]
        assert (shown["period_kind"], shown["settled_usd"]) == (period, 0.15)
        status, body, _ = await submit(today, key, f"b {period}")
        assert status == 402 and "$0.2" in body["error_message"], body
    await today.set_limits("design", budget_usd=0.2, budget_period="day")
    tomorrow = await gateway_factory(clock_offset_seconds=DAY)
    assert (await submit(tomorrow, key, "c"))[0] == 200  # a new day, a new daily budget
    assert await simulator.count("model.submit") == 2


async def test_every_periods_spend_records_settle_to_runcomfys_cost_and_refund_the_rest(
    gateway_factory: Any, simulator: Simulator, redis_url: str, namespace: str
) -> None:
    """A success, a failure, a cancel, a body RunComfy refuses and a submit of unknown outcome
    resolved as charged: the team's and the key's day, week and month records agree."""
    gw = await gateway_factory(upstream_submit_timeout=0.3)
    key = await gw.new_team("design")  # no limits at all: the records are kept all the same
    _, ok, _ = await submit(gw, key, "works", model=GPT_IMAGE, num_images=3)
    await simulator.configure(next_outcomes=["failed"])
    _, failed, _ = await submit(gw, key, "fails")
    assert (await submit(gw, key, "refused", resolution="16K"))[0] == 422
    await simulator.configure(queue_seconds=30)
    _, cancelled, _ = await submit(gw, key, "cancelled")
    status, body, _ = await gw.request(
        "POST", f"/v1/requests/{cancelled['request_id']}/cancel", key=key
    )
    assert status == 202 and body["outcome"] == "cancelled", body
    await simulator.configure(queue_seconds=0.2)
    await simulator.fault(route="model.submit", action="delay", delay=0.8, after=True)
    assert (await submit(gw, key, "lost"))[0] == 504
    for rid in (ok["request_id"], failed["request_id"]):
        await wait_status(gw, key, rid, "completed")
    await settled(gw, "design", reserved=0.15)  # the lost submit, until an admin resolves it
    _, ledger = await gw.admin("GET", "/admin/v1/teams/design/unreconciled")
    [lost] = ledger["jobs"]
    status, _ = await gw.admin(
        "POST", f"/admin/v1/teams/design/unreconciled/{lost['job_id']}", {"outcome": "charged"}
    )
    assert status == 200
    records = await spend_records(redis_url, namespace)
    assert len(records) == 6, records  # day, week and month; the team's and the key's
    assert all(r == {"reserved": 0, "settled": 126_000 + 150_000} for r in records.values())


async def test_a_job_admitted_by_the_previous_version_still_settles(
    gateway_factory: Any, simulator: Simulator, redis_url: str, namespace: str
) -> None:
    """A rolling upgrade: jobs and unreconciled entries written by the version that reserved
    on the budget period's records only (``spend_key``, ``key_spend_key``) settle there."""
    gw = await gateway_factory(upstream_submit_timeout=0.3)
    key = await gw.new_team("design", budget_usd=10)  # monthly
    await simulator.configure(queue_seconds=1.0)
    _, running, _ = await submit(gw, key, "running")
    await simulator.fault(route="model.submit", action="delay", delay=0.8, after=True)
    assert (await submit(gw, key, "lost"))[0] == 504
    month = (await usage(gw, "design"))["budget"]["period"]
    client = connect(redis_url)
    try:  # what the previous version would have written: no day or week records, no periods
        async for name in client.scan_iter(match=f"{namespace}:*:job:*"):
            if await client.hget(name, "spend_periods"):
                await client.hdel(name, "spend_periods")
        async for name in client.scan_iter(match=f"{namespace}:*:unreconciled"):
            for jid, raw in (await client.hgetall(name)).items():
                entry = json.loads(raw)
                del entry["spend_periods"], entry["key_id"]
                await client.hset(name, jid, json.dumps(entry))
        async for name in client.scan_iter(match=f"{namespace}:*:spend:*"):
            if str(name).rpartition(":spend:")[2].split(":")[0] != month:
                await client.delete(name)
    finally:
        await client.aclose()
    await wait_status(gw, key, running["request_id"], "completed")
    _, ledger = await gw.admin("GET", "/admin/v1/teams/design/unreconciled")
    [lost] = ledger["jobs"]
    status, _ = await gw.admin(
        "POST", f"/admin/v1/teams/design/unreconciled/{lost['job_id']}", {"outcome": "refunded"}
    )
    assert status == 200
    records = await spend_records(redis_url, namespace)
    assert len(records) == 2 and all(r.split(":")[0] == month for r in records), records
    assert all(r == {"reserved": 0, "settled": 150_000} for r in records.values())
