"""Prometheus metrics an operator and finance read, with label sets that stay bounded."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import NANO, Gateway, Simulator


async def scrape(gw: Gateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with gw.http.get(f"{gw.url}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    series: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return series


def value(
    series: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    total = 0.0
    for (sample, pairs), v in series.items():
        if sample == name and all((k, want) in pairs for k, want in labels.items()):
            total += v
    return total


async def run_job(gw: Gateway, key: str, prompt: str) -> str:
    _, sub, _ = await gw.request("POST", f"/v1/models/{NANO}", key=key, json={"prompt": prompt})
    rid: str = sub["request_id"]
    for _ in range(300):
        _, body, _ = await gw.request("GET", f"/v1/requests/{rid}/status", key=key)
        if body["status"] == "completed":
            return rid
        await asyncio.sleep(0.02)
    raise AssertionError("job never completed")


async def test_traffic_cache_cost_and_upstream_metrics_are_exported(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await gateway.new_team("design")
    await asyncio.sleep(2.2)  # the probe learns the new team (bounded team labels)
    await run_job(gateway, key, "a fox")
    await gateway.request("POST", f"/v1/models/{NANO}", key=key, json={"prompt": "a fox"})
    await asyncio.sleep(0.1)
    series = await scrape(gateway)
    route = "/v1/models/{model_id}"
    assert value(series, "gateway_http_requests_total", route=route, status_class="2xx") == 2
    assert value(series, "gateway_http_requests_total", route=route, cache="hit") == 1
    assert (
        value(series, "gateway_cache_requests_total", team="design", model=NANO, outcome="miss")
        == 1
    )
    assert (
        value(series, "gateway_cache_requests_total", team="design", model=NANO, outcome="hit") == 1
    )
    assert value(series, "gateway_upstream_calls_avoided_total", model=NANO) == 1
    spent = value(series, "gateway_cost_usd_total", team="design", model=NANO)
    assert spent > 0
    assert value(series, "gateway_cost_saved_usd_total", team="design", model=NANO) == spent
    assert value(series, "gateway_job_duration_seconds_count", model=NANO, state="succeeded") == 1
    assert value(series, "gateway_cache_stores_total", model=NANO) == 1
    assert value(series, "gateway_upstream_request_duration_seconds_count", call="submit") == 1
    assert value(series, "gateway_upstream_request_duration_seconds_count", call="status") >= 1
    assert value(series, "gateway_http_overhead_seconds_count", route=route) == 2
    assert value(series, "gateway_redis_up") == 1
    assert value(series, "gateway_redis_command_duration_seconds_count", command="EVALSHA") > 0
    assert value(series, "gateway_redis_command_errors_total") == 0


async def test_upstream_errors_and_retries_are_counted_by_kind(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await gateway.new_team("design")
    await simulator.fault(route="model.status", action="status", status=503, times=2)
    await run_job(gateway, key, "x")
    series = await scrape(gateway)
    assert value(series, "gateway_upstream_errors_total", call="status", kind="5xx") == 2
    assert value(series, "gateway_upstream_retries_total", call="status") == 2


async def test_a_teams_refusal_and_budget_alert_series_start_at_zero(
    gateway: Gateway, simulator: Simulator
) -> None:
    """A budget alert fires once a period: a series born at 1 would never show in rate()."""
    key = await gateway.new_team("design", daily_requests=1)
    refusals = "gateway_quota_refusals_total"
    for _ in range(100):  # until the probe learns the new team
        series = await scrape(gateway)
        if (refusals, (("limit", "daily"), ("team", "design"))) in series:
            break
        await asyncio.sleep(0.1)
    for limit in ("rate", "daily", "budget", "max_request", "queue_full", "access"):
        assert series[(refusals, (("limit", limit), ("team", "design")))] == 0
    for threshold in ("50", "80", "100"):
        alerts = ("gateway_budget_alerts_total", (("team", "design"), ("threshold", threshold)))
        assert series[alerts] == 0
    for expected in (200, 429):
        status, body, _ = await gateway.request(
            "POST", f"/v1/models/{NANO}", key=key, json={"prompt": "a fox"}
        )
        assert status == expected, body
    series = await scrape(gateway)
    assert value(series, refusals, team="design", limit="daily") == 1
    assert value(series, refusals, team="design") == 1


TEAM_GAUGES = (
    "gateway_team_budget_usd",
    "gateway_team_spend_usd",
    "gateway_team_reserved_usd",
    "gateway_team_budget_remaining_usd",
    "gateway_team_queued_jobs",
    "gateway_team_running_jobs",
)


async def team_gauges(gw: Gateway) -> dict[tuple[str, str], float]:
    """(gauge, team) -> value of every team gauge."""
    return {
        (name, dict(labels)["team"]): v
        for (name, labels), v in (await scrape(gw)).items()
        if name in TEAM_GAUGES
    }


@pytest.mark.slow
async def test_team_gauges_follow_redis_and_leave_with_a_deleted_team(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await gateway.new_team("design", budget_usd=1)
    await gateway.new_team("ml")
    await run_job(gateway, key, "a fox")  # settles $0.15
    want = {
        **{(name, "ml"): 0.0 for name in TEAM_GAUGES[1:3] + TEAM_GAUGES[4:]},  # no budget
        **{(name, "design"): 0.0 for name in TEAM_GAUGES},
        ("gateway_team_budget_usd", "design"): 1.0,
        ("gateway_team_spend_usd", "design"): 0.15,
        ("gateway_team_budget_remaining_usd", "design"): 0.85,
    }
    for _ in range(150):  # the probe learns the teams, the next export round sets them
        gauges = await team_gauges(gateway)
        if gauges == want:
            break
        await asyncio.sleep(0.1)
    assert gauges == want
    status, body = await gateway.admin("DELETE", "/admin/v1/teams/design")
    assert status == 200, body
    for _ in range(150):
        gauges = await team_gauges(gateway)
        if {team for _, team in gauges} == {"ml"}:
            break
        await asyncio.sleep(0.1)
    assert {team for _, team in gauges} == {"ml"}, gauges


@pytest.mark.slow
async def test_series_stay_flat_while_ten_thousand_distinct_requests_pass(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await gateway.new_team("design")
    forged = "rcg_" + "a" * 16 + "_" + "b" * 40

    async def burst(start: int, count: int) -> None:
        for i in range(start, start + count):
            kind = i % 4
            if kind == 0:
                await gateway.request("GET", f"/v1/requests/{uuid.uuid4()}/status", key=key)
            elif kind == 1:
                await gateway.request("GET", f"/no/such/path/{i}", key=key)
            elif kind == 2:
                await gateway.request("GET", f"/v1/requests/r{i}/result", key=forged)
            else:
                await gateway.request(
                    "POST", f"/v1/models/acme/model-{i}", key=key, json={"prompt": str(i)}
                )

    for _ in range(300):  # the probe learns the new team, and team gauges appear
        if ("gateway_team_running_jobs", (("team", "design"),)) in await scrape(gateway):
            break
        await asyncio.sleep(0.1)
    await burst(0, 400)  # every kind of request once before counting series
    await scrape(gateway)  # and /metrics itself
    before = set(await scrape(gateway))
    await asyncio.gather(*(burst(400 + n * 1200, 1200) for n in range(8)))
    after = set(await scrape(gateway))
    grown = after - before
    assert not grown, sorted(grown)[:10]
    assert len(after) < 2000
