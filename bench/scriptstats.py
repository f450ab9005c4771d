"""What each Redis script costs inside Redis, from SLOWLOG entries and INFO commandstats.

INFO commandstats counts every ``EVALSHA`` together, whatever the script; SLOWLOG with a
threshold of 0 records every command with its arguments (the script's SHA first) and the
microseconds Redis spent executing it, so grouping its entries by SHA gives each script's cost.
A SHA is named by hashing the text the gateway loads for each script (``script_text``).

Redis logs the commands a script runs too, each in its own entry just before the script's
(whose time includes theirs), so the rows of plain commands mix those sent directly with those
run inside scripts; only the script rows add up to Redis time per request. Entries of the
benchmark's own connection (``BENCH_CLIENT``: SLOWLOG, INFO, the drain wait's ZCARD) are left
out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

BENCH_CLIENT = "rcg-bench"  # the client name of the benchmark's own Redis connection


def script_names() -> dict[str, str]:
    """SHA1 -> script name, for every script the gateway loads (at clock offset 0)."""
    from gateway.store.contracts import CONTRACTS
    from gateway.store.scripts import script_text

    return {
        hashlib.sha1(script_text(c.script).encode(), usedforsecurity=False).hexdigest(): c.script
        for c in CONTRACTS
    }


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _args(entry: Mapping[str, Any]) -> list[str]:
    return _text(entry.get("command", "")).split()


def _theirs(entries: Iterable[Mapping[str, Any]], ours: str) -> list[Mapping[str, Any]]:
    return [e for e in entries if not ours or _text(e.get("client_name", "")) != ours]


def what(entry: Mapping[str, Any], names: Mapping[str, str]) -> str:
    """A SLOWLOG entry's command, or ``script <name>`` for an EVALSHA of a known script."""
    args = _args(entry)
    if not args:
        return "?"
    command = args[0].upper()
    if command == "EVALSHA" and len(args) > 1:
        sha = args[1].lower()
        return f"script {names[sha]}" if sha in names else f"script {sha[:12]}"
    return command


@dataclass
class Cost:
    what: str
    calls: int = 0
    total_us: int = 0
    max_us: int = 0

    def row(self, requests: int) -> dict[str, Any]:
        return {
            "what": self.what,
            "calls": self.calls,
            "calls_per_request": round(self.calls / requests, 2) if requests else None,
            "usec_per_call": round(self.total_us / self.calls, 1) if self.calls else None,
            "usec_per_request": round(self.total_us / requests, 1) if requests else None,
            "max_usec": self.max_us,
        }


def costs(
    entries: Iterable[Mapping[str, Any]], names: Mapping[str, str], requests: int, ours: str = ""
) -> list[dict[str, Any]]:
    """Calls and microseconds per script (and per other command), dearest in total first; the
    entries of client ``ours`` left out."""
    found: dict[str, Cost] = {}
    for entry in _theirs(entries, ours):
        cost = found.setdefault(what(entry, names), Cost(what(entry, names)))
        duration = int(entry.get("duration", 0))
        cost.calls += 1
        cost.total_us += duration
        cost.max_us = max(cost.max_us, duration)
    ordered = sorted(found.values(), key=lambda c: -c.total_us)
    return [c.row(requests) for c in ordered]


def slowest(
    entries: Iterable[Mapping[str, Any]], names: Mapping[str, str], ours: str = "", count: int = 5
) -> list[dict[str, Any]]:
    """The ``count`` longest single executions, but client ``ours``'s."""
    ordered = sorted(_theirs(entries, ours), key=lambda e: -int(e.get("duration", 0)))[:count]
    return [{"what": what(e, names), "usec": int(e.get("duration", 0))} for e in ordered]


def commandstats(info: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """INFO commandstats as ``{command: {calls, usec_per_call}}`` (redis-py parses the section
    into ``cmdstat_<name>: {calls, usec, usec_per_call, ...}``)."""
    out: dict[str, dict[str, float]] = {}
    for key, value in info.items():
        if key.startswith("cmdstat_") and isinstance(value, Mapping):
            out[key.removeprefix("cmdstat_")] = {
                "calls": float(value.get("calls", 0)),
                "usec_per_call": float(value.get("usec_per_call", 0)),
            }
    return out
