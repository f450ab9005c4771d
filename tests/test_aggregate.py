"""One ``/metrics`` for several workers: each worker's series added up as Prometheus means them."""

from __future__ import annotations

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
