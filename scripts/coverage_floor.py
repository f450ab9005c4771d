"""Fail when a module of the package was left (nearly) unexercised by the tests just measured.

The fast tier must exercise every module, not just most lines on average: CI runs it with
``--cov=gateway --cov-report=json:PATH`` and then this script, which lists every module's line
coverage and exits non-zero naming each module under the floor (or missing from the report).

    python scripts/coverage_floor.py coverage.json [--floor 60]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "gateway"
# Run only as processes, which coverage does not follow: ``python -m gateway``, and the body of
# ``serve`` past its refusals (a taken port and a data directory in use are tested in-process;
# serving until a signal is tested by the slow tier's subprocesses, tests/test_serving.py), and
# the supervisor of ``serve --workers N``, which forks, signals and restarts worker processes
# (tests/test_workers.py, slow; its pure parts are tested in-process in tests/test_cpus.py).
NOT_IN_PROCESS = {"gateway/__main__.py", "gateway/cli/serve.py", "gateway/cli/supervisor.py"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="coverage's JSON report")
    parser.add_argument("--floor", type=float, default=60.0, help="percent of lines, per module")
    args = parser.parse_args(argv)
    files = json.loads(args.report.read_text())["files"]
    covered = {
        Path(name).resolve().relative_to(PACKAGE.parent).as_posix(): data["summary"]
        for name, data in files.items()
    }
    modules = sorted(p.relative_to(PACKAGE.parent).as_posix() for p in PACKAGE.rglob("*.py"))
    below: list[str] = []
    for module in modules:
        summary = covered.get(module)
        percent = None if summary is None else float(summary["percent_covered"])
        shown = "not measured" if percent is None else f"{percent:5.1f} %"
        print(f"{shown:>14}  {module}")
        if module in NOT_IN_PROCESS:
            continue
        if summary is None:
            below.append(f"{module} (not in the report)")
        elif int(summary["num_statements"]) and float(summary["percent_covered"]) < args.floor:
            below.append(f"{module} ({shown})")
    if below:
        print(f"\nunder the {args.floor:g} % floor per module:", *below, sep="\n  ")
        return 1
    print(f"\nevery module of {PACKAGE.name}/ at {args.floor:g} % or more")
    return 0


if __name__ == "__main__":
    sys.exit(main())
