"""Prometheus metrics an operator and finance read, with label sets that stay bounded."""

from __future__ import annotations

import asyncio
import platform
import re
import socket
import sys
import time
import uuid
from typing import Any

import aiohttp
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.observability.metrics import Metrics
from gateway.web.app import MetricsListenerError
from gateway.web.appkeys import METRICS_URL
from tests.conftest import NANO, Gateway, Simulator, assert_error_shape


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


async def exposition(gw: Gateway) -> str:
    async with gw.http.get(f"{gw.url}/metrics") as resp:
        assert resp.status == 200
        return await resp.text()


def raw_value(text: str, name: str, **labels: str) -> str:
    """A sample's value exactly as written on the /metrics page."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(wanted)}\}} (\S+)$", text, re.M)
    assert match, f"no {name}{{{wanted}}} in /metrics"
    return match.group(1)


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


async def test_metrics_show_the_processs_cpu_memory_fds_and_pythons_gc(gateway: Gateway) -> None:
    series = await scrape(gateway)
    assert value(series, "process_cpu_seconds_total") > 0
    assert value(series, "process_resident_memory_bytes") > 10 * 2**20
    assert value(series, "process_open_fds") > 0
    assert value(series, "process_max_fds") > 0
    assert time.time() - 3600 < value(series, "process_start_time_seconds") <= time.time()
    python = {
        "implementation": platform.python_implementation(),
        "major": str(sys.version_info.major),
        "minor": str(sys.version_info.minor),
        "patchlevel": str(sys.version_info.micro),
        "version": platform.python_version(),
    }
    assert series[("python_info", tuple(sorted(python.items())))] == 1
    for generation in ("0", "1", "2"):
        assert ("python_gc_collections_total", (("generation", generation),)) in series


async def test_metrics_carry_no_created_series(gateway: Gateway) -> None:
    """One ``_created`` series per counter and histogram series, meaningless in this format."""
    await gateway.request("GET", "/healthz")
    text = await exposition(gateway)
    assert "gateway_http_requests_total{" in text
    assert not [line for line in text.splitlines() if "_created" in line.split(" ")[0]]


def test_dollar_counters_read_exact_sums_where_float_sums_drift() -> None:
    metrics = Metrics()
    for _ in range(11):
        metrics.cost_saved.add(150_000, "design", NANO)  # $0.15
    metrics.cost_spent.add(100_000, "design", NANO)
    metrics.cost_spent.add(200_000, "design", NANO)
    float_counter = 0.0
    for _ in range(11):
        float_counter += 0.15  # one inc at a time, as counters add; sum() compensates on 3.12+
    assert float_counter != 1.65 and 0.1 + 0.2 != 0.3  # what float counters would show
    text = generate_latest(metrics.registry).decode()
    saved = raw_value(text, "gateway_cost_saved_usd_total", team="design", model=NANO)
    assert saved == "1.65"
    assert raw_value(text, "gateway_cost_usd_total", team="design", model=NANO) == "0.3"
    assert "# TYPE gateway_cost_usd_total counter" in text
    with pytest.raises(ValueError, match="only go up"):
        metrics.cost_spent.add(-1, "design", NANO)


@pytest.mark.slow  # waits for the probe to learn the team
async def test_cost_on_metrics_is_exact_to_the_micro_dollar_after_many_jobs_and_hits(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await gateway.new_team("design")
    await asyncio.sleep(2.2)  # the probe learns the new team (bounded team labels)
    for prompt in ("a fox", "an owl", "a hare"):  # three $0.15 jobs: 0.44999999999999996 in floats
        await run_job(gateway, key, prompt)
    for _ in range(11):  # eleven hits on a $0.15 job: 1.6499999999999997 in floats
        status, body, headers = await gateway.request(
            "POST", f"/v1/models/{NANO}", key=key, json={"prompt": "a fox"}
        )
        assert (status, headers["X-Gateway-Cache"]) == (200, "hit"), body
    text = await exposition(gateway)
    assert raw_value(text, "gateway_cost_usd_total", team="design", model=NANO) == "0.45"
    assert raw_value(text, "gateway_cost_saved_usd_total", team="design", model=NANO) == "1.65"


async def test_a_metrics_port_serves_metrics_and_probes_and_the_api_port_hides_metrics(
    gateway_factory: Any,
) -> None:
    gw: Gateway = await gateway_factory(metrics_port=0)
    private = gw.app[METRICS_URL]
    assert private != gw.url
    status, body, _ = await gw.request("GET", "/metrics")
    assert status == 404
    assert_error_shape(body)
    for base in (gw.url, private):
        for probe in ("/healthz", "/readyz"):
            async with gw.http.get(base + probe) as resp:
                assert resp.status == 200, (base, probe, await resp.text())
    async with gw.http.get(private + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    refused = 'cache="none",method="GET",route="unmatched",status_class="4xx"'
    assert f"gateway_http_requests_total{{{refused}}} 1.0" in text
    assert "process_cpu_seconds_total" in text
    async with gw.http.get(private + "/v1/models") as resp:
        assert resp.status == 404, "the API is not served on the metrics port"
    await gw.server.close()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with gw.http.get(private + "/healthz"):
            pass


async def test_a_taken_metrics_port_stops_start_up_and_names_the_setting(
    gateway_factory: Any,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MetricsListenerError, match=rf"GATEWAY_METRICS_PORT.*:{port}\b.*in use"):
            await gateway_factory(metrics_port=port)


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
