"""One ``/metrics`` answer for several worker processes, merged from each one's own.

Every worker keeps its own registry, exactly as a single process does (every collector works:
``process_*``, the exact-dollar counters, team gauges removed with their team), and the worker
that is scraped adds up what its siblings answer. prometheus-client's multiprocess mode was the
alternative: it writes every increment to a shared file under a lock on the request path, runs
no custom collector, cannot remove a series, and drops ``process_*``.

Counters, histograms and summaries add up. Gauges take the largest value (team gauges, in-flight
jobs and poller lag are read from Redis and alike in every worker; a circuit breaker shows the
most open one), except the process's memory and open files (the workers' total), its start
time and ``gateway_redis_up`` (the smallest: the oldest worker, any worker that lost Redis).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

ADDED_UP = frozenset({"counter", "histogram", "summary"})
SUMMED_GAUGES = frozenset(
    {"process_resident_memory_bytes", "process_virtual_memory_bytes", "process_open_fds"}
)
SMALLEST_GAUGES = frozenset({"process_start_time_seconds", "gateway_redis_up"})
MICRO_DOLLARS = 6  # dollar counters are exact to the micro-dollar (see metrics.UsdCounter)

SampleKey = tuple[str, tuple[tuple[str, str], ...]]


def _combine(family: Metric, current: float, value: float) -> float:
    if family.type in ADDED_UP:
        total = current + value
        return round(total, MICRO_DOLLARS) if "_usd" in family.name else total
    if family.name in SUMMED_GAUGES:
        return current + value
    if family.name in SMALLEST_GAUGES:
        return min(current, value)
    return max(current, value)


def merge(texts: Iterable[str]) -> list[Metric]:
    """The families of every text, each series combined across texts as the module says."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[SampleKey, float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            known = families.setdefault(family.name, family)
            series = values.setdefault(family.name, {})
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                before = series.get(key)
                value = sample.value
                series[key] = value if before is None else _combine(known, before, value)
    merged = []
    for name, family in families.items():
        out = Metric(family.name, family.documentation, family.type, family.unit)
        for (sample_name, labels), value in values[name].items():
            out.add_sample(sample_name, dict(labels), value)
        merged.append(out)
    return merged


class _Merged:
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def render(texts: Iterable[str]) -> bytes:
    """The merged families in Prometheus's text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged(merge(texts)))
    return generate_latest(registry)
