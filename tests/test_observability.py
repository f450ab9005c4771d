"""Dashboards and alerts an operator can trust: checked by promtool and by a real Prometheus.

The Grafana dashboards (deploy/grafana/dashboards) and the alert rules (deploy/prometheus/rules)
are only as good as their queries. Here a real ``prometheus`` scrapes a real gateway driven
through every code path that moves a metric, and every dashboard query and every alert rule is
asked of it: a query that does not parse, reads a metric the gateway does not export, or draws
nothing under that traffic fails the suite. ``promtool`` unit-tests the alerts and lints the
gateway's /metrics.

Debian's ``prometheus`` package provides both binaries. Without them these tests skip, except
under CI (``CI`` set), where they fail: CI never skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.metrics_core import Metric

from gateway.observability.metrics import Metrics
from gateway.web.appkeys import METRICS_URL
from tests.conftest import NANO, Gateway, Simulator, free_port

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = sorted((ROOT / "deploy/grafana/dashboards").glob("*.json"))
PROVIDERS = ROOT / "deploy/grafana/provisioning/dashboards"
RULES_DIR = ROOT / "deploy/prometheus/rules"
RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
RULE_TESTS = sorted((RULES_DIR / "tests").glob("*.yml"))
UNITS = {"s", "reqps", "percentunit", "currencyUSD", "short", "bytes"}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
TEAM_QUERY = "label_values(gateway_cache_requests_total, team)"
SCRAPE_JOB = "runcomfy-gateway"  # the job name of deploy/prometheus/prometheus.yml
ALLOWED_FOREIGN = {"up"}  # Prometheus' own series the rules and dashboards may read

# --- PromQL: just enough lexing to find the series selectors of an expression ------------------

_TOKEN = re.compile(
    r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'"  # strings
    r"|\{[^}]*\}"  # label matchers
    r"|\[[^\]]*\]"  # range or subquery
    r"|\d+(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*\b"  # durations
    r"|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?"  # numbers
    r"|[A-Za-z_:][A-Za-z0-9_:]*"  # identifiers
    r"|\S"
)
_AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}  # fmt: skip
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = {"bool", "and", "or", "unless", "offset", "atan2", "inf", "nan"}


def selectors(expr: str) -> list[tuple[str, str]]:
    """(metric name, full selector) of every vector selector in a PromQL expression."""
    tokens = _TOKEN.findall(expr)
    found: list[tuple[str, str]] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else ""
        if token in _GROUPING and following == "(":
            i = tokens.index(")", i) + 1
            continue
        if re.fullmatch(r"[A-Za-z_:][A-Za-z0-9_:]*", token) and not (
            token in _AGGREGATIONS or token in _KEYWORDS or token in _GROUPING or following == "("
        ):
            matchers = following if following.startswith("{") else ""
            found.append((token, token + matchers))
        i += 1
    return found


def innermost_aggregations(expr: str, prefix: str) -> list[str]:
    """The innermost aggregation around each selector of a metric named ``prefix...``."""
    tokens = _TOKEN.findall(expr)
    enclosing: list[str] = []  # what opened each parenthesis: a function, an aggregation or ""
    opener = ""
    found: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else ""
        if token in _GROUPING and following == "(":
            i = tokens.index(")", i) + 1
            continue
        if token == "(":
            enclosing.append(opener)
            opener = ""
        elif token == ")":
            enclosing.pop()
        elif token in _AGGREGATIONS or following == "(":
            opener = token
        elif token.startswith(prefix):
            found.append(next((a for a in reversed(enclosing) if a in _AGGREGATIONS), ""))
        i += 1
    return found


def test_selectors_finds_every_metric_and_nothing_else() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, route) (rate(a_bucket{x="by (y)"}[5m]))) '
        "/ on (route) group_left (z) sum without (q) (increase(b_total[1h:1m])) "
        "or 0 * count(up) > bool 1e3 and max by (job) (c) unless d offset 5m"
    )
    assert selectors(expr) == [
        ("a_bucket", 'a_bucket{x="by (y)"}'),
        ("b_total", "b_total"),
        ("up", "up"),
        ("c", "c"),
        ("d", "d"),
    ]
    assert innermost_aggregations(expr, "c") == ["max"]
    assert innermost_aggregations("sum(max by (t) (rate(x_a[1m]) + x_b) / x_c)", "x_") == [
        "max",
        "max",
        "sum",
    ]


# --- what the gateway exports ----------------------------------------------------------------


def _sample_names(family: Metric) -> set[str]:
    if family.type == "counter":
        return {family.name + "_total"}
    if family.type == "histogram":
        return {family.name + suffix for suffix in ("_bucket", "_count", "_sum")}
    return {family.name}


def exported_families() -> dict[str, set[str]]:
    """Family name -> the sample names PromQL can read, straight from the metrics registry."""
    return {f.name: _sample_names(f) for f in Metrics().registry.collect()}


def names_in_exposition(text: str) -> set[str]:
    """Every sample name and declared family of a scraped /metrics page."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind == "histogram":
                names.update(name + s for s in ("_bucket", "_count", "_sum"))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


# --- the dashboards and the rules as files ---------------------------------------------------


def load(path: Path) -> dict[str, Any]:
    board: dict[str, Any] = json.loads(path.read_text())
    return board


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those nested in collapsed rows included."""
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs() -> list[tuple[str, str]]:
    """(where, expr) of every query of every panel."""
    found = []
    for path in DASHBOARDS:
        for panel in panels(load(path)):
            for target in panel.get("targets", []):
                found.append((f"{path.name}: {panel['title']} [{target['refId']}]", target["expr"]))
    return found


def alert_exprs() -> list[tuple[str, str]]:
    """(alert, expr) of every rule, read from the YAML without a YAML library."""
    found: list[tuple[str, str]] = []
    for path in RULE_FILES:
        lines = path.read_text().splitlines()
        name = ""
        for n, line in enumerate(lines):
            stripped = line.strip()
            if stripped.startswith(("- alert:", "- record:")):
                name = stripped.split(":", 1)[1].strip()
            elif stripped.startswith("expr:"):
                rest = stripped[len("expr:") :].strip()
                if rest in ("|", "|-", ">", ">-"):
                    indent = len(line) - len(line.lstrip())
                    block = []
                    for more in lines[n + 1 :]:
                        if more.strip() and len(more) - len(more.lstrip()) <= indent:
                            break
                        block.append(more.strip())
                    rest = " ".join(part for part in block if part)
                found.append((name, rest.strip("'\"")))
    return found


def substitute(expr: str, team: str) -> str:
    """Grafana's variables as Grafana would fill them for a one-hour view."""
    for var, value in (
        ("$__rate_interval", "1m"),
        ("$__interval", "30s"),
        ("$__range", "1h"),
        ("${team}", team),
        ("$team", team),
    ):
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unknown variable left in {expr!r}"
    return expr


def test_dashboards_are_well_formed_grafana_json() -> None:
    assert {p.name for p in DASHBOARDS} >= {
        "gateway-overview.json",
        "gateway-cost-cache.json",
        "gateway-team.json",
    }
    uids = set()
    for path in DASHBOARDS:
        board = load(path)
        assert 36 <= board["schemaVersion"] <= 41, path.name
        assert board["uid"] not in uids, path.name
        uids.add(board["uid"])
        variables = {v["name"]: v for v in board["templating"]["list"]}
        source = variables["datasource"]
        assert (source["type"], source["query"]) == ("datasource", "prometheus"), path.name
        for var in variables.values():
            if var["type"] == "query":
                assert var["datasource"] == DATASOURCE, (path.name, var["name"])
        ids = [p["id"] for p in panels(board)]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        assert all(isinstance(i, int) and i > 0 for i in ids), path.name
        for panel in panels(board):
            where = f"{path.name}: {panel['title']!r}"
            assert panel.get("gridPos"), where
            if not panel.get("targets"):
                assert panel["type"] in ("row", "text"), where
                continue
            assert panel["datasource"] == DATASOURCE, where
            assert panel["fieldConfig"]["defaults"].get("unit") in UNITS, where
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)), where
            for target in panel["targets"]:
                assert target["datasource"] == DATASOURCE, where
                assert target["expr"].strip(), where
    team_board = load(ROOT / "deploy/grafana/dashboards/gateway-team.json")
    team_var = next(v for v in team_board["templating"]["list"] if v["name"] == "team")
    assert team_var["type"] == "query"
    assert team_var["definition"] == TEAM_QUERY
    assert team_var["query"]["query"] == TEAM_QUERY
    assert all('team="$team"' in e for w, e in dashboard_exprs() if w.startswith("gateway-team"))


def test_dashboard_provider_loads_the_dashboards_folder() -> None:
    files = sorted(PROVIDERS.glob("*.yaml"))
    assert files
    text = "\n".join(f.read_text() for f in files)
    assert re.search(r"^apiVersion: 1$", text, re.M)
    assert re.search(r"^\s+type: file$", text, re.M)
    assert re.search(r"^\s+path: /\S+$", text, re.M)


def test_dashboards_and_rules_read_only_exported_metrics_and_cover_them_all() -> None:
    families = exported_families()
    exported = set().union(*families.values())
    read = set()
    for where, expr in [*dashboard_exprs(), *alert_exprs()]:
        for name, _ in selectors(substitute(expr, "t")):
            assert name in exported | ALLOWED_FOREIGN, f"{where}: {name} is not exported"
            read.add(name)
    unread = sorted(f for f, names in families.items() if not names & read)
    assert not unread, f"no dashboard shows {unread}"
    alerts = {name for name, _ in alert_exprs()}
    assert alerts >= {
        "GatewayUpstreamErrorRateHigh",
        "GatewayOverheadP99High",
        "GatewayRedisDown",
        "GatewayPollerLagHigh",
        "GatewayTargetDown",
        "GatewayUpstreamCircuitOpen",
    }
    assert ("GatewayRedisDown", "gateway_redis_up == 0") in alert_exprs()
    assert alerts >= {"GatewayTeamBudgetNearlySpent", "GatewayTeamQueueStalled"}


def test_team_gauges_are_taken_once_across_replicas() -> None:
    """Every replica exports the same team gauges (read from Redis): summing them over
    replicas would count each team once per replica, so every query takes their max."""
    for where, expr in [*dashboard_exprs(), *alert_exprs()]:
        found = innermost_aggregations(expr, "gateway_team_")
        assert all(a == "max" for a in found), f"{where}: {expr}"


# --- promtool --------------------------------------------------------------------------------


def need(binary: str) -> str:
    """The binary's path; a skip with the reason when missing, a failure under CI."""
    path = shutil.which(binary)
    if path is not None:
        return path
    reason = f"{binary} is not installed (Debian: apt-get install prometheus)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI never skips")
    pytest.skip(reason)


def test_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    promtool = need("promtool")
    assert RULE_FILES and RULE_TESTS
    check = subprocess.run(
        [promtool, "check", "rules", *map(str, RULE_FILES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS" in check.stdout and "WARNING" not in check.stdout + check.stderr, check.stdout
    unit = subprocess.run(
        [promtool, "test", "rules", *map(str, RULE_TESTS)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert unit.returncode == 0, unit.stdout + unit.stderr
    # every alert is shown firing by at least one unit test
    tested = "\n".join(p.read_text() for p in RULE_TESTS)
    for name, _ in alert_exprs():
        firing = rf"alertname: {name}\n\s+exp_alerts:\n\s+- exp_labels:"
        assert re.search(firing, tested), f"no unit test shows {name} firing"


# --- a real Prometheus scraping a real gateway -----------------------------------------------


def read(path: Path) -> str:
    return path.read_text(errors="replace")


class Prometheus:
    def __init__(self, url: str, http: aiohttp.ClientSession) -> None:
        self.url = url
        self.http = http

    async def api(self, path: str, **params: str) -> Any:
        async with self.http.get(f"{self.url}/api/v1/{path}", params=params) as resp:
            body: dict[str, Any] = await resp.json(content_type=None)
        if body.get("status") != "success":
            raise PromQLError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        data = await self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    async def wait_ready(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.returncode is None, read(log)
            try:
                async with self.http.get(f"{self.url}/-/ready") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise AssertionError("prometheus never became ready:\n" + read(log))

    async def wait_scraping(self, gw: Gateway) -> None:
        """Until a scrape of the gateway has landed (so traffic from now on is seen to start)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if await self.query(f'up{{job="{SCRAPE_JOB}"}} == 1'):
                return
            await asyncio.sleep(0.2)
        targets = await self.api("targets")
        raise AssertionError(f"prometheus never scraped {gw.url}: {targets}")


class PromQLError(Exception):
    pass


async def run(*command: str, stdin: bytes = b"") -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = await proc.communicate(stdin)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def submit(gw: Gateway, key: str, prompt: str) -> tuple[int, Any, str]:
    status, body, headers = await gw.request(
        "POST", f"/v1/models/{NANO}", key=key, json={"prompt": prompt}
    )
    return status, body, headers.get("X-Gateway-Cache", "")


async def completed(gw: Gateway, key: str, rid: str) -> None:
    for _ in range(300):
        status, body, _ = await gw.request("GET", f"/v1/requests/{rid}/status", key=key)
        assert status == 200, body
        if body["status"] == "completed":
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{rid} never completed")


async def drive_every_metric(gw: Gateway, simulator: Simulator, team: str, key: str) -> None:
    """Traffic that moves every metric the gateway exports."""
    # two 503s on job polls: upstream errors by kind, and retries
    await simulator.fault(route="model.status", action="status", status=503, times=2)
    status, first, cache = await submit(gw, key, "a red fox")
    assert (status, cache) == (200, "miss"), first
    await completed(gw, key, first["request_id"])  # job duration, cost, a stored result
    status, body, cache = await submit(gw, key, "a red fox")
    assert (status, cache) == (200, "hit"), body  # savings, a call avoided
    answers = await asyncio.gather(*(submit(gw, key, "a blue owl") for _ in range(2)))
    assert sorted(a[2] for a in answers) == ["coalesced", "miss"], answers
    await completed(gw, key, answers[0][1]["request_id"])
    # a RunComfy 5xx on submit: the gateway answers 5xx (its outcome is unknown)
    await simulator.fault(route="model.submit", action="status", status=500, times=1)
    status, body, _ = await submit(gw, key, "a green frog")
    assert status >= 500, body
    status, body, _ = await gw.request("GET", "/v1/models", key="rcg_not_a_key")
    assert status == 401, body  # a 4xx
    # limits: a $1 budget, room for two more submits today, one job at a time. Two new jobs at
    # once: one runs, one waits in the team's queue; their reservations take the team past 50 %
    # of its budget (a budget alert); a third submit that day is refused.
    status, usage = await gw.admin("GET", f"/admin/v1/teams/{team}/usage")
    assert status == 200, usage
    today = usage["by_day"][-1].get("requests", 0)  # the day's submits count against the limit
    await gw.set_limits(team, budget_usd=1, daily_requests=today + 2, max_concurrent=1)
    pair = await asyncio.gather(submit(gw, key, "a grey wolf"), submit(gw, key, "a white hare"))
    assert sorted(a[2] for a in pair) == ["miss", "queued"], pair
    status, body, _ = await submit(gw, key, "a brown bear")
    assert (status, body["detail"]["limit"]) == (429, "daily"), body
    for _, started, _ in pair:
        await completed(gw, key, started["request_id"])
    status, body = await gw.admin("DELETE", f"/admin/v1/teams/{team}/cache")
    assert status == 200 and body["purged"] >= 1, body


@contextlib.asynccontextmanager
async def running_prometheus(
    tmp_path: Path, target: str, http: aiohttp.ClientSession
) -> AsyncIterator[tuple[Prometheus, asyncio.subprocess.Process, Path]]:
    """A real Prometheus scraping ``target`` (a base URL) every second with the alert rules."""
    prometheus = need("prometheus")
    home = tmp_path / "prometheus"
    home.mkdir()
    config = home / "prometheus.yml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "global": {
                    "scrape_interval": "1s",
                    "scrape_timeout": "1s",
                    "evaluation_interval": "1s",
                },
                "rule_files": [str(p) for p in RULE_FILES],
                "scrape_configs": [
                    {
                        "job_name": SCRAPE_JOB,
                        "metrics_path": "/metrics",
                        "static_configs": [{"targets": [target.removeprefix("http://")]}],
                    }
                ],
            }
        )
    )
    port = free_port()
    log = home / "prometheus.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={home / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield Prometheus(f"http://127.0.0.1:{port}", http), proc, log
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


@pytest.mark.slow
async def test_every_dashboard_and_alert_query_answers_from_a_real_prometheus(
    gateway_factory: Any, simulator: Simulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    promtool = need("promtool")
    gw: Gateway = await gateway_factory()
    async with running_prometheus(tmp_path, gw.url, http) as (prom, proc, log):
        team = "design"
        key = await gw.new_team(team)
        learnt = time.monotonic() + 2.2  # the Redis probe learns the team: a label value then
        await prom.wait_ready(proc, log)
        await prom.wait_scraping(gw)  # Prometheus 2 syncs new targets after up to 5s
        await asyncio.sleep(max(0.0, learnt - time.monotonic()))
        await drive_every_metric(gw, simulator, team, key)

        # the gateway's own /metrics: promtool's lint, and the names it exports
        async with http.get(f"{gw.url}/metrics") as resp:
            assert resp.status == 200
            exposition = await resp.text()
        code, lint = await run(promtool, "check", "metrics", stdin=exposition.encode())
        assert code == 0 and not lint.strip(), f"promtool check metrics:\n{lint}"
        exported = names_in_exposition(exposition)
        assert exported >= set().union(*exported_families().values())
        allowed = exported | ALLOWED_FOREIGN

        dash = [(w, substitute(e, team)) for w, e in dashboard_exprs()]
        alerts = alert_exprs()
        for where, expr in [*dash, *alerts]:
            for name, _ in selectors(expr):
                assert name in allowed, f"{where}: {expr}\nreads {name}, not exported"

        # Scrapes land every second: ask until everything draws, or report what never did.
        problems: list[str] = []
        deadline = time.monotonic() + 30
        while True:
            problems = []
            for where, expr in dash:
                try:
                    if not await prom.query(expr):
                        problems.append(f"{where}: no series for {expr}")
                except PromQLError as exc:
                    pytest.fail(f"{where}: invalid PromQL {expr}\n{exc}")
            for where, expr in [*dash, *alerts]:
                for _, selector in selectors(expr):
                    if not await prom.query(selector):
                        problems.append(f"{where}: no series for {selector}")
            for name, expr in alerts:
                try:
                    await prom.query(expr)  # empty is fine: the alert is not firing
                except PromQLError as exc:
                    pytest.fail(f"alert {name}: invalid PromQL {expr}\n{exc}")
            values = await prom.api(
                "label/team/values", **{"match[]": "gateway_cache_requests_total"}
            )
            if team not in values:
                problems.append(f"the $team variable ({TEAM_QUERY}) does not offer {team}")
            groups = (await prom.api("rules"))["groups"]
            rules = {r["name"]: r for g in groups for r in g["rules"]}
            if set(rules) != {name for name, _ in alerts}:
                problems.append(f"prometheus loaded rules {sorted(rules)}")
            for name, rule in rules.items():
                if rule["health"] != "ok":
                    problems.append(f"rule {name}: {rule['health']} {rule.get('lastError')}")
            # Prometheus saw the traffic happen, not only its end state: the refusal, the budget
            # alert and the purge (the last step) moved counters it had already scraped at 0
            for moved in (
                f'increase(gateway_quota_refusals_total{{team="{team}",limit="daily"}}[1h]) > 0',
                f'increase(gateway_budget_alerts_total{{team="{team}",threshold="50"}}[1h]) > 0',
                "increase(gateway_cache_purged_entries_total[1h]) > 0",
                f'max(gateway_team_budget_usd{{team="{team}"}}) == 1',
            ):
                if not await prom.query(moved):
                    problems.append(f"never true in Prometheus: {moved}")
            if not problems or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        assert not problems, "\n".join(problems)

        # healthy gateway, healthy Redis: those alerts stay quiet
        for name in ("GatewayRedisDown", "GatewayTargetDown", "GatewayAllTargetsDown"):
            assert rules[name]["state"] == "inactive", rules[name]
        targets = (await prom.api("targets"))["activeTargets"]
        assert [(t["labels"]["job"], t["health"]) for t in targets] == [(SCRAPE_JOB, "up")]


@pytest.mark.slow
async def test_prometheus_scrapes_the_separate_metrics_port(
    gateway_factory: Any, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """With GATEWAY_METRICS_PORT set, Prometheus scrapes that port (the API port has none)."""
    gw: Gateway = await gateway_factory(metrics_port=0)
    private = gw.app[METRICS_URL]
    async with running_prometheus(tmp_path, private, http) as (prom, proc, log):
        await prom.wait_ready(proc, log)
        await prom.wait_scraping(gw)
        await gw.request("GET", "/healthz")
        wanted = (
            'gateway_http_requests_total{route="/healthz",status_class="2xx"}',
            f'process_resident_memory_bytes{{job="{SCRAPE_JOB}"}}',
            f'python_info{{job="{SCRAPE_JOB}"}}',
        )
        deadline = time.monotonic() + 30
        while missing := [q for q in wanted if not await prom.query(q)]:
            assert time.monotonic() < deadline, f"never scraped: {missing}"
            await asyncio.sleep(0.5)
        targets = (await prom.api("targets"))["activeTargets"]
        assert [(t["scrapeUrl"], t["health"]) for t in targets] == [(f"{private}/metrics", "up")]
        assert not await prom.query('{__name__=~".+_created"}'), "no _created series"
