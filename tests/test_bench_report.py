"""The benchmark's report: peer rows, the floor and peer targets and the script costs, from results
alone (no process is started; the figures are made up)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from report import all_tables, evaluate_targets, markdown, peer_added
from scriptstats import costs, script_names, slowest, what


def cell(p50: float, p99: float, rps: float = 100.0) -> dict[str, Any]:
    return {"p50_ms": p50, "p99_ms": p99, "rps": rps, "ok": 10, "requests": 10}


def results(gateway_p50: float, gateway_p99: float) -> dict[str, Any]:
    """Scenario 1 at c=1 (direct 1 ms) and the peers: LiteLLM adds 2 / 8 ms over the stub's
    0.5 / 1 ms, Portkey could not start."""
    peers_cells = {
        "c1": {
            "stub_direct": cell(0.5, 1.0),
            "litellm": cell(2.5, 9.0),
            "portkey": {"skipped": "portkey: Node.js (node and npm) not installed"},
        }
    }
    return {
        "s1": {
            "cells": {"c1": {"direct": cell(1.0, 2.0), "gateway": cell(1.0 + gateway_p50, 2.0)}},
            "added": {"c1": {"p50_ms": gateway_p50, "p99_ms": gateway_p99}},
        },
        "peers": {
            "versions": {"litellm": "1", "portkey": "2"},
            "cells": peers_cells,
            "added": peer_added(peers_cells),
        },
    }


def by_target(found: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {t["target"]: t for t in found}


def test_a_peers_added_latency_is_over_the_stub_answered_directly() -> None:
    added = peer_added(results(0.3, 1.0)["peers"]["cells"])
    assert added == {"c1": {"litellm": {"p50_ms": 2.0, "p99_ms": 8.0}}}


def test_the_gateway_passes_a_peer_only_when_both_its_added_p50_and_p99_are_lower() -> None:
    below = by_target(evaluate_targets(results(0.3, 1.0)))["miss c=1: added latency below litellm"]
    assert below["result"] == "PASS"
    assert "p50 +0.300 vs +2.000 ms" in below["measured"]
    p99_above = by_target(evaluate_targets(results(0.3, 8.5)))
    assert p99_above["miss c=1: added latency below litellm"]["result"] == "MISS"


def test_a_peer_that_could_not_start_says_why_in_its_row_and_its_target() -> None:
    found = by_target(evaluate_targets(results(0.3, 1.0)))
    portkey = found["miss c=1: added latency below portkey"]
    assert portkey["result"] == "NOT RUN"
    assert "Node.js" in portkey["detail"]
    text = markdown(all_tables(results(0.3, 1.0)))
    assert "| 1 | Portkey gateway" in text
    assert "portkey: Node.js (node and npm) not installed" in text
    assert "| 1 | gateway -> simulator (scenario 1) |" in text


def test_the_floor_goals_for_misses_sit_beside_the_older_stricter_ones() -> None:
    found = by_target(evaluate_targets(results(0.55, 1.2)))
    assert found["miss c=1: added p50"]["result"] == "MISS"  # <= 0.5 ms
    assert found["miss c=1: added p50 (floor goal)"]["result"] == "PASS"  # <= 0.6 ms
    assert found["miss c=1: added p99 (floor goal)"]["result"] == "PASS"  # <= 1.5 ms
    assert by_target(evaluate_targets(results(0.55, 1.6)))["miss c=1: added p99 (floor goal)"][
        "result"
    ] == ("MISS")


def test_status_and_hit_throughput_are_judged_against_the_redis_floor() -> None:
    row = {"gateway": cell(2, 4, 700.0), "redis_floor": cell(1, 2, 1000.0)}
    found = by_target(
        evaluate_targets({"s2": {"cells": {"status": {"c16": row}, "hit": {"c16": row}}}})
    )
    assert found["status c=16: throughput vs the Redis floor"]["result"] == "PASS"  # 0.7x
    assert found["hit c=16: throughput vs the Redis floor"]["result"] == "PASS"  # >= 0.5x
    row["gateway"] = cell(2, 4, 690.0)
    found = by_target(
        evaluate_targets({"s2": {"cells": {"status": {"c16": row}, "hit": {"c16": row}}}})
    )
    assert found["status c=16: throughput vs the Redis floor"]["result"] == "MISS"


def test_each_scripts_slowlog_time_is_named_and_counted_per_request() -> None:
    names = script_names()
    admit = next(sha for sha, name in names.items() if name == "admit")
    entries = [
        {"command": f"EVALSHA {admit} 3 a b c", "duration": 30},
        {"command": f"EVALSHA {admit} 3 a b c", "duration": 50},
        {"command": "HGETALL k", "duration": 4},
        {"command": "EVALSHA 0123456789abcdef0123 1 k", "duration": 9},
        {"command": b"SLOWLOG GET 100", "duration": 900, "client_name": b"rcg-bench"},
    ]
    assert what(entries[0], names) == "script admit"
    found = {c["what"]: c for c in costs(entries, names, requests=2, ours="rcg-bench")}
    assert found["script admit"]["calls_per_request"] == 1.0
    assert found["script admit"]["usec_per_call"] == 40.0
    assert found["script admit"]["max_usec"] == 50
    assert found["HGETALL"]["usec_per_request"] == 2.0
    assert "script 0123456789ab" in found  # a script the gateway does not load, by its SHA
    assert "SLOWLOG" not in found  # the benchmark's own connection
    assert [e["what"] for e in slowest(entries, names, "rcg-bench", 1)] == ["script admit"]


def test_the_workers_cell_sets_each_path_and_concurrency_beside_the_floor_and_bare_at_n() -> None:
    row = {
        "gateway": {**cell(2, 4, 700.0), "server_cpu_pct": 190.0},
        "redis_floor": cell(1, 2, 1000.0),
        "bare": cell(1, 2, 1400.0),
    }
    workers = {
        "workers": 2,
        "gateway_exit_code": 0,
        "cells": {"status": {"c16": row}, "hit": {"c64": row}},
    }
    text = markdown(all_tables({"workers": workers}))
    assert "7. Gateway at 2 worker processes vs bare aiohttp and the Redis floor at 2" in text
    assert "| status | 16 | gateway -> simulator | 700 |" in text
    assert "| hit | 64 | gateway -> simulator | 700 |" in text
    assert "| 0.70x | 0.50x | 190.0 % |" in text  # req/s over the floor's, over bare's
    assert "exit code after SIGTERM: 0" in text
