"""Tables, targets and the comparison with a previous run, for ``bench/run.py``.

Every table is built once as plain rows and rendered twice: with rich on the terminal and as
markdown (``bench/results/latest.md``, pasted into docs/benchmarks.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peers import PEERS
from rich.console import Console
from rich.table import Table

TARGET_LABELS = {
    "direct": "direct -> simulator",
    "gateway": "gateway -> simulator",
    "gateway_limits": "gateway, team with every limit set",
    "gateway_redispy": "gateway over redis-py (Sentinel URL)",
    "gateway_logged": "gateway, access log on (default level)",
    "gateway_nopoll": "gateway, poller deferred (diagnostic)",
    "proxy": "naive aiohttp proxy -> simulator",
    "nginx": "nginx -> simulator",
    "bare": "bare aiohttp (fixed JSON)",
    "redis_floor": "aiohttp + key check, 1 Redis script",
    "stub_direct": "direct -> OpenAI stub",
    **{peer.name: peer.label for peer in PEERS},
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


def peer_added(cells: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each peer's p50/p99 over direct -> stub, per concurrency."""
    added: dict[str, dict[str, Any]] = {}
    for key, row in cells.items():
        d = row.get("stub_direct", {})
        if "p50_ms" not in d:
            continue
        added[key] = {
            name: {
                "p50_ms": round(r["p50_ms"] - d["p50_ms"], 3),
                "p99_ms": round(r["p99_ms"] - d["p99_ms"], 3),
            }
            for name, r in row.items()
            if name != "stub_direct" and "p50_ms" in r
        }
    return added


def _latency_row(key: str, label: str, r: dict[str, Any], base: dict[str, Any]) -> list[str]:
    added = base and r is not base
    return [
        key[1:],
        label,
        num(r["rps"], 0),
        f"{r['p50_ms']:.3f}",
        f"{r['p99_ms']:.3f}",
        f"{r['p50_ms'] - base['p50_ms']:+.3f}" if added else "",
        f"{r['p99_ms'] - base['p99_ms']:+.3f}" if added else "",
        f"{r['ok']}/{r['requests']}",
    ]


def peers_table(results: dict[str, Any]) -> TableData:
    """Each peer's added latency over direct -> stub, beside the gateway's over direct ->
    simulator from scenario 1 at the same concurrency."""
    peers, s1 = results["peers"], results.get("s1", {}).get("cells", {})
    rows = []
    for key, row in peers["cells"].items():
        direct = row.get("stub_direct", {})
        gw_row = s1.get(key, {})
        if "p50_ms" in gw_row.get("gateway", {}) and "p50_ms" in gw_row.get("direct", {}):
            for name in ("direct", "gateway"):
                label = TARGET_LABELS[name] + " (scenario 1)"
                rows.append(_latency_row(key, label, gw_row[name], gw_row["direct"]))
        for name, r in row.items():
            if "skipped" in r:
                rows.append([key[1:], TARGET_LABELS[name], r["skipped"], *[""] * 5])
            else:
                rows.append(_latency_row(key, TARGET_LABELS[name], r, direct))
    return TableData(
        "5. Peer gateways: chat completion -> OpenAI-compatible stub (bench/loadgen.py, "
        "scenario 1's counts)",
        ["conc", "target", "req/s", "p50 ms", "p99 ms", "added p50 ms", "added p99 ms", "ok"],
        rows,
        left=(1,),
        footer="added: over direct -> stub for the peers, over direct -> simulator for the "
        "gateway (scenario 1's rows); the stub and the simulator both answer from memory. "
        "Peer versions: "
        + ", ".join(
            f"{k} {v} ({peers.get('runtimes', {}).get(k, '?')})"
            for k, v in peers["versions"].items()
        )
        + ".",
    )


def scripts_table(scripts: dict[str, Any]) -> TableData:
    rows = []
    notes = []
    for phase, r in scripts["phases"].items():
        for c in r["costs"]:
            if c["calls_per_request"] and c["calls_per_request"] >= 0.05:
                rows.append(
                    [
                        phase,
                        c["what"],
                        num(c["calls_per_request"]),
                        num(c["usec_per_call"], 1),
                        num(c["usec_per_request"], 1),
                        str(c["max_usec"]),
                    ]
                )
        evalsha = r["commandstats"].get("evalsha", {})
        plain = r.get("commandstats_unlogged", {}).get("evalsha", {})
        slow = ", ".join(f"{e['what']} {e['usec']} us" for e in r["slowest"][:3])
        notes.append(
            f"{phase}: EVALSHA {plain.get('usec_per_call', '-')} us/call with SLOWLOG off, "
            f"{evalsha.get('usec_per_call', '-')} with it logging every command (INFO "
            f"commandstats, {int(evalsha.get('calls', 0))} calls); slowest: {slow}"
        )
    return TableData(
        f"6. Redis time per request, by script (c=1, {scripts['calls_per_phase']} requests per "
        "path on a flushed Redis; SLOWLOG at threshold 0)",
        ["path", "script or command", "calls/request", "us/call", "us/request", "max us"],
        rows,
        left=(0, 1),
        footer=f"yardstick: a script of 10 HINCRBY took {scripts.get('ten_hincrby_usec_per_call')}"
        " us per call in the same Redis. miss: each job polled to completion too (its whole "
        "life in Redis). Plain "
        "commands are those sent directly and those run inside scripts (Redis logs both; a "
        "script's time includes its own): only the script rows add up. " + "; ".join(notes),
    )


def workers_table(workers: dict[str, Any]) -> TableData:
    n = workers["workers"]
    title = (
        f"7. Gateway at {n} worker processes vs bare aiohttp and the Redis floor at {n} processes "
        "(one port, SO_REUSEPORT)"
    )
    headers = ["path", "conc", "target", "req/s", "p50 ms", "p99 ms", "req/s x floor"]
    headers += ["req/s x bare", "server CPU", "Redis CPU"]
    rows = []
    for path, by_conc in workers["cells"].items():
        for key, row in by_conc.items():
            floor, bare = row.get("redis_floor", {}), row.get("bare", {})
            for target, r in row.items():
                rows.append(
                    [
                        path,
                        key.removeprefix("c"),
                        TARGET_LABELS.get(target, target),
                        num(r.get("rps"), 0),
                        num(r.get("p50_ms"), 3),
                        num(r.get("p99_ms"), 3),
                        times(ratio(r.get("rps"), floor.get("rps"))),
                        times(ratio(r.get("rps"), bare.get("rps"))),
                        f"{r.get('server_cpu_pct', '-')} %",
                        f"{r.get('redis_cpu_pct', '-')} %",
                    ]
                )
    return TableData(
        title,
        headers,
        rows,
        left=(0, 2),
        footer="server CPU: every process of the side (the supervisor and its workers; each "
        "baseline process). Every process of each side answered before the cell was measured. "
        f"serve exit code after SIGTERM: {workers.get('gateway_exit_code', '-')}.",
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
    if "peers" in results:
        tables.append(peers_table(results))
    if "s2" in results:
        tables.append(s2_table(results["s2"]))
    if "s3" in results:
        tables.append(s3_table(results["s3"]))
    if "s4" in results:
        tables.append(s4_table(results["s4"]))
    if "scripts" in results:
        tables.append(scripts_table(results["scripts"]))
    if "workers" in results:
        tables.append(workers_table(results["workers"]))
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


class _Targets(list[dict[str, Any]]):
    """The targets found so far; ``add`` appends one with its PASS/MISS (or another word)."""

    def add(self, name: str, goal: str, value: Any, ok: bool | str, detail: str = "") -> None:
        result = ok if isinstance(ok, str) else "PASS" if ok else "MISS"
        self.append(
            {"target": name, "goal": goal, "measured": value, "result": result, "detail": detail}
        )


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    found = _Targets()
    add = found.add
    added = results.get("s1", {}).get("added", {}).get("c1")
    if added:
        p50, p99 = added["p50_ms"], added["p99_ms"]
        add("miss c=1: added p50", "<= 0.5 ms over direct", f"{p50:+.3f} ms", p50 <= 0.5)
        add("miss c=1: added p99", "<= 1 ms over direct", f"{p99:+.3f} ms", p99 <= 1.0)
    _bare_targets(results, found)
    _savings_targets(results, found)
    # the performance goals: near the Redis floor, below the peers
    if added:
        p50, p99 = added["p50_ms"], added["p99_ms"]
        add(
            "miss c=1: added p50 (floor goal)",
            "<= 0.6 ms over direct",
            f"{p50:+.3f} ms",
            p50 <= 0.6,
        )
        add(
            "miss c=1: added p99 (floor goal)",
            "<= 1.5 ms over direct",
            f"{p99:+.3f} ms",
            p99 <= 1.5,
        )
    _floor_targets(results, found)
    _peer_targets(results, found)
    return list(found)


def _floor_targets(results: dict[str, Any], found: _Targets) -> None:
    """Throughput at c=16 as a share of the Redis floor (status >= 0.7x, hit >= 0.5x)."""
    cells = results.get("s2", {}).get("cells", {})
    for path, share in (("status", 0.7), ("hit", 0.5)):
        row = cells.get(path, {}).get("c16", {})
        g, floor = row.get("gateway", {}), row.get("redis_floor", {})
        if g.get("rps") and floor.get("rps"):
            r = g["rps"] / floor["rps"]
            found.add(
                f"{path} c=16: throughput vs the Redis floor",
                f">= {share}x the Redis floor's req/s",
                f"{r:.2f}x ({g['rps']:,.0f} vs {floor['rps']:,.0f} req/s)",
                r >= share,
            )


def _peer_targets(results: dict[str, Any], found: _Targets) -> None:
    """The gateway's added miss latency below each peer's, p50 and p99, at every concurrency
    both were measured at (peers over direct -> stub, gateway over direct -> simulator)."""
    peers = results.get("peers")
    if not peers:
        return
    ours = results.get("s1", {}).get("added", {})
    for key, row in peers["cells"].items():
        for name, r in row.items():
            if name == "stub_direct":
                continue
            title = f"miss c={key[1:]}: added latency below {name}"
            goal = "gateway's added p50 and p99 < the peer's"
            if "skipped" in r:
                found.add(title, goal, "-", "NOT RUN", r["skipped"])
                continue
            g, p = ours.get(key), peers["added"].get(key, {}).get(name)
            if g is None or p is None:
                found.add(title, goal, "-", "NOT RUN", "scenario 1 or direct -> stub not measured")
                continue
            found.add(
                title,
                goal,
                f"p50 {g['p50_ms']:+.3f} vs {p['p50_ms']:+.3f} ms, "
                f"p99 {g['p99_ms']:+.3f} vs {p['p99_ms']:+.3f} ms",
                g["p50_ms"] < p["p50_ms"] and g["p99_ms"] < p["p99_ms"],
            )


def _bare_targets(results: dict[str, Any], found: _Targets) -> None:
    """Hit and status throughput at c=16 as a share of bare aiohttp; their p99 at c=64."""
    add = found.add
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


def _savings_targets(results: dict[str, Any], found: _Targets) -> None:
    """Upstream calls per job flat in polling clients; one upstream submit per distinct one."""
    add = found.add
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
    for key, row in results.get("peers", {}).get("added", {}).items():
        for name, a in row.items():
            flat[f"peers.{key}.{name}.added_p50_ms"] = a["p50_ms"]
            flat[f"peers.{key}.{name}.added_p99_ms"] = a["p99_ms"]
    for phase, r in results.get("scripts", {}).get("phases", {}).items():
        for c in r["costs"]:
            if c["what"].startswith("script ") and c["usec_per_call"] is not None:
                flat[f"scripts.{phase}.{c['what'][7:]}.usec_per_call"] = c["usec_per_call"]
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
