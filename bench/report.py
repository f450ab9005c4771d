"""Tables, targets and the comparison with a previous run, for ``bench/run.py``.

Every table is built once as plain rows and rendered twice: with rich on the terminal and as
markdown (``bench/results/latest.md``, pasted into docs/benchmarks.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

TARGET_LABELS = {
    "direct": "direct -> simulator",
    "gateway": "gateway -> simulator",
    "gateway_nopoll": "gateway, poller deferred (diagnostic)",
    "proxy": "naive aiohttp proxy -> simulator",
    "nginx": "nginx -> simulator",
    "bare": "bare aiohttp (fixed JSON)",
    "redis_floor": "aiohttp + key check, 1 Redis script",
}


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def num(v: Any, nd: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return str(v)


def times(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


@dataclass
class TableData:
    title: str
    headers: list[str]
    rows: list[list[str]]
    left: tuple[int, ...] = (0,)  # left-aligned columns; the rest are numbers
    footer: str = ""


# --- tables --------------------------------------------------------------------------------------


def s1_table(s1: dict[str, Any]) -> TableData:
    rows = []
    for key, row in s1["cells"].items():
        d = row.get("direct", {})
        for target, r in row.items():
            label = TARGET_LABELS[target]
            if "skipped" in r:
                rows.append([key[1:], label, r["skipped"], "", "", "", "", "", "", ""])
                continue
            add50 = add99 = ""
            if target != "direct" and d:
                add50 = f"{r['p50_ms'] - d['p50_ms']:+.3f}"
                add99 = f"{r['p99_ms'] - d['p99_ms']:+.3f}"
            rows.append(
                [
                    key[1:],
                    label,
                    num(r["rps"], 0),
                    f"{r['p50_ms']:.3f}",
                    num(r.get("p90_ms"), 3),
                    f"{r['p99_ms']:.3f}",
                    add50,
                    add99,
                    times(ratio(r["p50_ms"], d.get("p50_ms"))),
                    times(ratio(r["p99_ms"], d.get("p99_ms"))),
                ]
            )
    return TableData(
        "1. Submit, cache miss (bench/loadgen.py; every request a distinct prompt)",
        [
            "conc",
            "target",
            "req/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "added p50 ms",
            "added p99 ms",
            "p50 x direct",
            "p99 x direct",
        ],
        rows,
        left=(1,),
    )


def s2_table(s2: dict[str, Any]) -> TableData:
    rows = []
    for path, by_conc in s2["cells"].items():
        for key, row in by_conc.items():
            bare, ngx = row.get("bare", {}), row.get("nginx", {})
            floor, proxy = row.get("redis_floor", {}), row.get("proxy", {})
            for target, r in row.items():
                label = TARGET_LABELS[target]
                if "skipped" in r:
                    rows.append([path, key[1:], label, r["skipped"], *[""] * 9])
                    continue
                errors = sum(r["errors"].values()) if r.get("errors") else 0
                rows.append(
                    [
                        path,
                        key[1:],
                        label,
                        num(r.get("rps"), 0),
                        num(r.get("p50_ms"), 3),
                        num(r.get("p90_ms"), 3),
                        num(r.get("p99_ms"), 3),
                        times(ratio(r.get("rps"), bare.get("rps"))),
                        times(ratio(r.get("rps"), floor.get("rps"))),
                        times(ratio(r.get("rps"), proxy.get("rps"))),
                        times(ratio(r.get("rps"), ngx.get("rps"))),
                        f"{r.get('server_cpu_pct', '-')} %",
                        str(errors),
                    ]
                )
    return TableData(
        f"2. Cache hit and status poll ({s2['tool']}, {s2['seconds_per_cell']} s per cell)",
        [
            "path",
            "conc",
            "target",
            "req/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "req/s x bare",
            "req/s x Redis floor",
            "req/s x naive proxy",
            "req/s x nginx",
            "server CPU",
            "errors",
        ],
        rows,
        left=(0, 2),
        footer="hit rows through nginx/proxy/direct: no cache upstream, every request is a new "
        "simulator job. Redis floor: the bare server plus a SHA-256 key check and one Lua script "
        "reading the JSON from Redis, the least any path served from Redis does. server CPU: the "
        "server process under test (nginx: master + worker).",
    )


def s3_table(s3: dict[str, Any]) -> TableData:
    w = s3["workload"]
    rows = []
    for name, r in s3["runs"].items():
        d = s3["runs"].get("direct_p" + name.split("_p")[1], {})
        outcomes = " / ".join(f"{k} {v}" for k, v in r["cache_outcomes"].items())
        rows.append(
            [
                name,
                str(r["pollers_per_job"]),
                str(r["client_status_polls"]),
                str(r["upstream_jobs"]),
                num(r["upstream_status_per_job"]),
                num(r["upstream_result_per_job"]),
                str(r["upstream_calls"]),
                times(ratio(r["upstream_calls"], d.get("upstream_calls"))),
                f"{r['cost_billed_usd']:.2f}",
                times(ratio(r["cost_billed_usd"], d.get("cost_billed_usd"))),
                outcomes,
            ]
        )
    return TableData(
        f"3. Upstream calls and cost: {w['submits']} submits of {w['distinct_prompts']} distinct "
        f"prompts over {w['arrival_s']} s; clients poll every {w['client_poll_interval_s']} s; "
        f"simulator queue {w['sim_queue_s']} s + run {w['sim_run_s']} s; gateway polls every "
        f"{w['gateway_poll_interval_s']} s",
        [
            "run",
            "pollers/job",
            "client polls",
            "upstream jobs",
            "status/job",
            "result/job",
            "upstream calls",
            "calls x direct",
            "billed $",
            "cost x direct",
            "outcomes",
        ],
        rows,
        left=(0, 10),
        footer="upstream calls: every call the simulator counted (submit, status, result, "
        "catalog). billed: the simulator's balance before minus after.",
    )


def s4_table(s4: dict[str, Any]) -> TableData:
    rows = []
    for kind in ("inflight", "cached"):
        r = s4[kind]
        measured = f"{r['jobs_measured']:,}" + (" (scaled)" if r["scaled_to_10k"] else "")
        rows.append(
            [
                kind,
                measured,
                f"{r['gateway_rss_before_mb']} -> {r['gateway_rss_after_mb']}",
                f"{r['gateway_rss_per_10k_mb']:+}",
                f"{r['redis_used_per_10k_mb']}",
                f"{r['redis_bytes_per_job']:,}",
                f"{r['redis_keys_per_job']}",
            ]
        )
    b = s4["baselines"]
    sizes = []
    for kind in ("inflight", "cached"):
        mean = s4[kind].get("mean_key_bytes_by_kind", {})
        shown = ", ".join(f"{k} {v} B" for k, v in sorted(mean.items()) if k not in ("?",))
        if shown:
            sizes.append(f"{kind}: {shown}")
    return TableData(
        "4. Memory per 10,000 jobs (scaled where fewer were measured)",
        [
            "state",
            "jobs measured",
            "gateway RSS MB before -> after",
            "RSS per 10k MB",
            "Redis used_memory per 10k MB",
            "Redis bytes/job",
            "Redis keys/job",
        ],
        rows,
        footer=f"baselines: bare aiohttp server RSS {b['bare_aiohttp_rss_mb']} MB, naive proxy "
        f"{b['naive_proxy_rss_mb']} MB, simulator {b['simulator_rss_mb']} MB; gateway idle RSS "
        f"is the 'before' figure. Mean MEMORY USAGE per key kind - " + "; ".join(sizes),
    )


def targets_table(targets: list[dict[str, Any]]) -> TableData:
    rows = [
        [
            t["target"],
            t["goal"],
            str(t["measured"]) + (f" ({t['detail']})" if t["detail"] else ""),
            t["result"],
        ]
        for t in targets
    ]
    return TableData(
        "Targets (goals, not assertions)",
        ["target", "goal", "measured", "result"],
        rows,
        left=(0, 1, 2, 3),
    )


def all_tables(results: dict[str, Any]) -> list[TableData]:
    tables = []
    if "s1" in results:
        tables.append(s1_table(results["s1"]))
    if "s2" in results:
        tables.append(s2_table(results["s2"]))
    if "s3" in results:
        tables.append(s3_table(results["s3"]))
    if "s4" in results:
        tables.append(s4_table(results["s4"]))
    if results.get("targets"):
        tables.append(targets_table(results["targets"]))
    return tables


def print_tables(console: Console, tables: list[TableData]) -> None:
    for t in tables:
        tab = Table(title=t.title, title_justify="left")
        for i, h in enumerate(t.headers):
            tab.add_column(h, justify="left" if i in t.left else "right")
        for row in t.rows:
            cells = list(row)
            if t.headers[-1] == "result":
                colour = {"PASS": "green", "MISS": "red"}.get(cells[-1], "yellow")
                cells[-1] = f"[{colour}]{cells[-1]}[/]"
            tab.add_row(*cells)
        console.print(tab)
        if t.footer:
            console.print(f"  [dim]{t.footer}[/]")


def markdown(tables: list[TableData]) -> str:
    out: list[str] = []
    for t in tables:
        out += [f"#### {t.title}", ""]
        out.append("| " + " | ".join(t.headers) + " |")
        out.append(
            "|" + "|".join("---" if i in t.left else "---:" for i in range(len(t.headers))) + "|"
        )
        for row in t.rows:
            cells = list(row)
            if t.headers[-1] == "result":
                cells[-1] = f"**{cells[-1]}**"
            out.append("| " + " | ".join(cells) + " |")
        if t.footer:
            out += ["", t.footer]
        out.append("")
    return "\n".join(out)


# --- targets -------------------------------------------------------------------------------------


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def add(name: str, goal: str, value: Any, ok: bool, detail: str = "") -> None:
        result = "PASS" if ok else "MISS"
        found.append(
            {"target": name, "goal": goal, "measured": value, "result": result, "detail": detail}
        )

    added = results.get("s1", {}).get("added", {}).get("c1")
    if added:
        p50, p99 = added["p50_ms"], added["p99_ms"]
        add("miss c=1: added p50", "<= 0.5 ms over direct", f"{p50:+.3f} ms", p50 <= 0.5)
        add("miss c=1: added p99", "<= 1 ms over direct", f"{p99:+.3f} ms", p99 <= 1.0)
    cells = results.get("s2", {}).get("cells", {})
    for path in ("hit", "status"):
        row16 = cells.get(path, {}).get("c16", {})
        g, b = row16.get("gateway", {}), row16.get("bare", {})
        floor = row16.get("redis_floor", {})
        if g.get("rps") and b.get("rps"):
            r = g["rps"] / b["rps"]
            add(
                f"{path} c=16: throughput",
                ">= 50 % of bare aiohttp req/s",
                f"{100 * r:.0f} % ({g['rps']:,.0f} vs {b['rps']:,.0f} req/s)",
                r >= 0.5,
                f"Redis floor {floor['rps']:,.0f} req/s = {100 * floor['rps'] / b['rps']:.0f} % "
                f"of bare; gateway {100 * g['rps'] / floor['rps']:.0f} % of the floor"
                if floor.get("rps")
                else "",
            )
        row64 = cells.get(path, {}).get("c64", {})
        g64, b64 = row64.get("gateway", {}), row64.get("bare", {})
        if g64.get("p99_ms") is not None:
            p99 = g64["p99_ms"]
            add(
                f"{path} c=64: p99",
                "<= 5 ms",
                f"{p99:.2f} ms",
                p99 <= 5.0,
                # 64 connections that each send again when answered keep 64 requests in the
                # server: the mean latency is 64 / throughput, whatever the server does.
                f"bare aiohttp p99 {b64['p99_ms']:.2f} ms at {b64['rps']:,.0f} req/s in the same "
                f"run; a closed loop of 64 has a mean latency of 64 / req/s"
                if b64.get("p99_ms") is not None and b64.get("rps")
                else "",
            )
    runs = results.get("s3", {}).get("runs", {})
    pollers = sorted(int(k.split("_p")[1]) for k in runs if k.startswith("gateway_p"))
    if len(pollers) >= 2:
        lo, hi = runs[f"gateway_p{pollers[0]}"], runs[f"gateway_p{pollers[-1]}"]
        a, b = lo["upstream_status_per_job"] or 0, hi["upstream_status_per_job"] or 0
        direct = [
            f"{runs[f'direct_p{p}']['upstream_status_per_job']} with {p}"
            for p in pollers
            if f"direct_p{p}" in runs
        ]
        add(
            "upstream status calls per job vs polling clients",
            "does not grow with clients (<= 1-client figure + 20 %)",
            f"{a} with {pollers[0]} client(s)/job, {b} with {pollers[-1]}",
            b <= a * 1.2,
            "direct: " + ", ".join(direct) if direct else "",
        )
    distinct = results.get("s3", {}).get("workload", {}).get("distinct_prompts")
    for p in pollers:
        jobs = runs[f"gateway_p{p}"]["upstream_jobs"]
        add(
            f"upstream submits == distinct requests ({p} client(s)/job)",
            f"== {distinct}",
            jobs,
            jobs == distinct,
        )
    return found


# --- comparison with a previous run ----------------------------------------------------------


def key_metrics(results: dict[str, Any]) -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, row in results.get("s1", {}).get("cells", {}).items():
        for target, r in row.items():
            if "p50_ms" in r:
                flat[f"s1.{key}.{target}.p50_ms"] = r["p50_ms"]
                flat[f"s1.{key}.{target}.p99_ms"] = r["p99_ms"]
    for key, a in results.get("s1", {}).get("added", {}).items():
        flat[f"s1.{key}.added_p50_ms"] = a["p50_ms"]
        flat[f"s1.{key}.added_p99_ms"] = a["p99_ms"]
    for path, by_conc in results.get("s2", {}).get("cells", {}).items():
        for key, row in by_conc.items():
            for target, r in row.items():
                if r.get("rps"):
                    flat[f"s2.{path}.{key}.{target}.rps"] = r["rps"]
                    flat[f"s2.{path}.{key}.{target}.p99_ms"] = r["p99_ms"]
    for name, r in results.get("s3", {}).get("runs", {}).items():
        flat[f"s3.{name}.upstream_calls"] = r["upstream_calls"]
        flat[f"s3.{name}.cost_billed_usd"] = r["cost_billed_usd"]
    for kind in ("inflight", "cached"):
        r = results.get("s4", {}).get(kind)
        if r:
            flat[f"s4.{kind}.gateway_rss_per_10k_mb"] = r["gateway_rss_per_10k_mb"]
            flat[f"s4.{kind}.redis_used_per_10k_mb"] = r["redis_used_per_10k_mb"]
    return flat


def compare_previous(
    console: Console, results: dict[str, Any], previous: Path, label: str
) -> dict[str, Any] | None:
    """Print and return the change of every key metric against ``previous`` (if it exists)."""
    if not previous.exists():
        console.print(
            f"[dim]no {label}: nothing to compare with "
            "(copy a latest.json there to make it the baseline)[/]"
        )
        return None
    prev = json.loads(previous.read_text())
    a, b = key_metrics(prev), key_metrics(results)
    rows: list[dict[str, Any]] = []
    for k, now in b.items():
        if k in a:
            rows.append({"metric": k, "previous": a[k], "now": now, "ratio": ratio(now, a[k])})
    table = TableData(
        f"Compared with {label} ({prev.get('started_at', '?')}, mode {prev.get('mode', '?')}, "
        f"load {prev.get('load', {}).get('loadavg_1m_mean', '?')})",
        ["metric", "previous", "now", "change"],
        [
            [
                r["metric"],
                f"{r['previous']:,.3f}",
                f"{r['now']:,.3f}",
                "-" if r["ratio"] is None else f"{100 * (r['ratio'] - 1):+.1f} %",
            ]
            for r in rows
        ],
    )
    print_tables(console, [table])
    return {"file": label, "previous_started_at": prev.get("started_at"), "rows": rows}
