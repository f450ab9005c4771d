"""docs/guarantees.md's fault table, measured by the fault tests themselves.

Each test in ``tests/test_faults.py`` injects a fault while traffic flows and records one row:
what it tried, how many times, the traffic meanwhile, and what was lost, all as counts (never
timings), so a row is the same on every run that passes. Recording writes the row as JSON to the
directory named by the ``fault_report_dir`` pytest setting (one file per row, so parallel
workers never share a file; emptied when a run starts) and then compares it with
docs/guarantees.md's row: a test fails when that page says other than what it measured.

Render the table from the last run (``--update`` rewrites the rows of docs/guarantees.md that
run measured)::

    python -m tests.fault_report [--dir .pytest_cache/fault-report] [--update]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TABLE_DOC = ROOT / "docs" / "guarantees.md"
DEFAULT_DIR = ".pytest_cache/fault-report"
START = "<!-- fault-table:start (python -m tests.fault_report --update) -->"
END = "<!-- fault-table:end -->"
HEADER = (
    "| Fault or attack, injected while traffic flows | Injected | Traffic meanwhile "
    "| What was lost | Test |\n|---|---|---|---|---|"
)

FAULTS: dict[str, str] = {
    "redis-restart": "Redis stopped (SIGTERM) and restarted, mid-load",
    "redis-stall": "Redis stalls past the command timeout; submits' answers are lost",
    "redis-persistence": "Redis restarted with jobs, usage and budgets stored (AOF on)",
    "upstream-faults": "RunComfy answers 5xx, times out, hangs up or sends garbage, mid-load",
    "upstream-outage": "RunComfy answers every call 503 for a while, jobs in flight",
    "replica-sigkill": "A replica SIGKILLed with jobs in flight and a team's queue waiting",
    "replica-sigterm": "A replica SIGTERMed with jobs in flight and a team's queue waiting",
    "slowloris": "Slowloris: connections sending their headers a byte at a time",
    "slow-bodies": "Clients sending their request bodies a byte at a time",
    "oversized-bodies": "Request bodies over `GATEWAY_MAX_BODY_BYTES`",
}
"""Row keys and what docs/guarantees.md calls each fault, in the table's order."""


@dataclass(frozen=True, slots=True)
class FaultRow:
    key: str
    injected: str
    traffic: str
    lost: dict[str, int]
    test: str

    @property
    def fault(self) -> str:
        return FAULTS[self.key]

    def markdown(self) -> str:
        lost = ", ".join(f"{what}: {count}" for what, count in self.lost.items())
        cells = (self.fault, self.injected, self.traffic, lost, f"`{self.test}`")
        return "| " + " | ".join(cells) + " |"


def report_dir(rootdir: Path, configured: str) -> Path:
    path = Path(configured or DEFAULT_DIR)
    return path if path.is_absolute() else rootdir / path


def write(directory: Path, row: FaultRow) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{row.key}.json").write_text(json.dumps(asdict(row), indent=2) + "\n")


def load(directory: Path) -> list[FaultRow]:
    """The rows of the last run, in the table's order."""
    rows = [FaultRow(**json.loads(p.read_text())) for p in directory.glob("*.json")]
    order = list(FAULTS)
    return sorted((r for r in rows if r.key in FAULTS), key=lambda r: order.index(r.key))


def readme_rows(text: str) -> dict[str, str]:
    """docs/guarantees.md's fault table, row by row, keyed like :data:`FAULTS`."""
    if START not in text or END not in text:
        return {}
    table = text[text.index(START) + len(START) : text.index(END)]
    by_fault = {name: key for key, name in FAULTS.items()}
    rows: dict[str, str] = {}
    for line in table.strip().splitlines()[2:]:
        fault = line.strip().strip("|").split(" | ")[0].strip()
        if fault in by_fault:
            rows[by_fault[fault]] = line.strip()
    return rows


def render(rows: dict[str, str]) -> str:
    body = "\n".join(rows[key] for key in FAULTS if key in rows)
    return f"{START}\n{HEADER}\n{body}\n{END}"


def updated_readme(text: str, measured: list[FaultRow]) -> str:
    """docs/guarantees.md with the measured rows replaced (rows not measured are kept)."""
    rows = readme_rows(text)
    rows.update({row.key: row.markdown() for row in measured})
    table = render(rows)
    if START in text and END in text:
        return text[: text.index(START)] + table + text[text.index(END) + len(END) :]
    return text.rstrip("\n") + "\n\n" + table + "\n"


def check_readme(row: FaultRow) -> str | None:
    """Why docs/guarantees.md's row differs from the measured one, or None when they agree."""
    have = readme_rows(TABLE_DOC.read_text()).get(row.key)
    if have == row.markdown():
        return None
    return (
        f"docs/guarantees.md's fault table does not say what this run measured.\n"
        f"  docs:     {have}\n  measured: {row.markdown()}\n"
        f"Run `python -m tests.fault_report --update` after the fault tests, or paste the row."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render docs/guarantees.md's fault table.")
    parser.add_argument("--dir", default=DEFAULT_DIR, help="the fault_report_dir of the run")
    parser.add_argument("--update", action="store_true", help="rewrite docs/guarantees.md's rows")
    options = parser.parse_args(argv)
    measured = load(report_dir(ROOT, options.dir))
    if not measured:
        print(f"no fault rows in {options.dir}: run pytest tests/test_faults.py", file=sys.stderr)
        return 1
    if options.update:
        TABLE_DOC.write_text(updated_readme(TABLE_DOC.read_text(), measured))
    print(render({row.key: row.markdown() for row in measured}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
