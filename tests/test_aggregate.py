"""One ``/metrics`` for several workers: each worker's series added up as Prometheus means them."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from gateway.observability.aggregate import render
from gateway.observability.metrics import Metrics


def _values(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }


def _two_workers() -> tuple[Metrics, Metrics]:
    one, two = Metrics(), Metrics()
    one.http_requests.labels("/healthz", "GET", "2xx", "none").inc(3)
    two.http_requests.labels("/healthz", "GET", "2xx", "none").inc(4)
    one.http_duration.labels("/healthz").observe(0.002)
    two.http_duration.labels("/healthz").observe(0.2)
    return one, two


def test_counters_and_histograms_add_up_across_workers() -> None:
    one, two = _two_workers()
    merged = _values(render([one.render().decode(), two.render().decode()]))
    route = (("cache", "none"), ("method", "GET"), ("route", "/healthz"), ("status_class", "2xx"))
    assert merged[("gateway_http_requests_total", route)] == 7
    assert merged[("gateway_http_request_duration_seconds_count", (("route", "/healthz"),))] == 2
    bucket = (("le", "0.005"), ("route", "/healthz"))
    assert merged[("gateway_http_request_duration_seconds_bucket", bucket)] == 1
    inf = (("le", "+Inf"), ("route", "/healthz"))
    assert merged[("gateway_http_request_duration_seconds_bucket", inf)] == 2


def test_dollar_counters_stay_exact_when_added_up() -> None:
    """0.15 + 1.65 in floats is 1.7999999999999998; the sum reads as a person writes it."""
    one, two = Metrics(), Metrics()
    one.cost_spent.add(150_000, "design", "m")
    two.cost_spent.add(1_650_000, "design", "m")
    text = render([one.render().decode(), two.render().decode()]).decode()
    assert 'gateway_cost_usd_total{model="m",team="design"} 1.8\n' in text


def test_gauges_read_from_redis_are_not_multiplied_by_the_workers() -> None:
    one, two = Metrics(), Metrics()
    for worker in (one, two):
        worker.team_queue.labels("design").set(2)
    one.upstream_circuit.labels("model_api").set(2)  # open in one worker only
    two.upstream_circuit.labels("model_api").set(0)
    one.redis_up.labels("embedded").set(1)
    two.redis_up.labels("embedded").set(0)
    merged = _values(render([one.render().decode(), two.render().decode()]))
    assert merged[("gateway_team_queued_jobs", (("team", "design"),))] == 2
    assert merged[("gateway_upstream_circuit_state", (("upstream", "model_api"),))] == 2
    assert merged[("gateway_redis_up", (("mode", "embedded"),))] == 0


def test_process_memory_is_the_workers_total_and_start_time_the_oldest() -> None:
    one, two = Metrics(), Metrics()
    texts = [one.render().decode(), two.render().decode()]
    alone = _values(one.render())
    merged = _values(render(texts))
    memory = ("process_resident_memory_bytes", ())
    if memory not in alone:  # pragma: no cover - no /proc (macOS)
        return
    assert merged[memory] >= 2 * alone[memory] * 0.9
    start = ("process_start_time_seconds", ())
    assert merged[start] == alone[start]


def test_one_text_renders_as_itself() -> None:
    one, _ = _two_workers()
    text = one.render().decode()
    assert _values(render([text])) == _values(text.encode())


async def test_a_scraped_worker_adds_up_what_its_sibling_serves_on_its_socket(
    tmp_path: Path,
) -> None:
    """In one process: a sibling's registry served on its unix socket, and the scraped worker's
    own, come out of one scrape as one series with the sum of both counts."""
    from gateway.web.workers import Worker, sibling_listener

    sibling_metrics, own_metrics = Metrics(), Metrics()
    for metrics, count in ((sibling_metrics, 3), (own_metrics, 4)):
        series, _, _ = metrics.request_series("/v1/models/{model_id}", "POST", "2xx", "hit")
        series.inc(count)
    listening = sibling_listener(Worker(1, tmp_path), sibling_metrics)(web.Application())
    await anext(listening)
    try:  # the sibling runs in this process: its socket is renamed as another pid's would be
        (tmp_path / f"{os.getpid()}.sock").rename(tmp_path / "1.sock")
        text = (await Worker(0, tmp_path).scrape(own_metrics)).decode()
    finally:
        with contextlib.suppress(StopAsyncIteration):
            await anext(listening)
    (family,) = [
        f for f in text_string_to_metric_families(text) if f.name == "gateway_http_requests"
    ]
    hits = [s.value for s in family.samples if s.labels.get("cache") == "hit"]
    assert hits == [7.0]
