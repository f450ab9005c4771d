"""Charts as SVG drawn on the server: no script, no library, nothing the CSP has to allow.

A chart is a list of shapes in a fixed coordinate box (``viewBox``) that the template writes
out as ``<rect>`` elements; each bar carries its exact value as a ``<title>`` (shown on hover
and read by screen readers), and the page prints the same numbers in a table beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

WIDTH = 600
HEIGHT = 160
LABEL_ROOM = 18  # below the bars, for the day labels


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    title: str


@dataclass(frozen=True, slots=True)
class BarChart:
    bars: list[Bar]
    peak: str  # the value of the tallest bar, as the axis shows it
    width: int = WIDTH
    height: int = HEIGHT


def bar_chart(points: list[tuple[str, float]], unit: str = "") -> BarChart:
    """One bar per (label, value), scaled to the largest value."""
    peak = max((value for _, value in points), default=0.0)
    room = HEIGHT - LABEL_ROOM
    slot = WIDTH / max(len(points), 1)
    bars = []
    for i, (label, value) in enumerate(points):
        height = room * value / peak if peak > 0 else 0.0
        bars.append(
            Bar(
                x=round(i * slot + slot * 0.15, 2),
                y=round(room - height, 2),
                width=round(slot * 0.7, 2),
                height=round(height, 2),
                label=label,
                title=f"{label}: {unit}{value:g}",
            )
        )
    return BarChart(bars=bars, peak=f"{unit}{peak:g}")


@dataclass(frozen=True, slots=True)
class Burn:
    """A budget period's spend (settled, then reserved) and the time gone, in percent."""

    settled_percent: float
    reserved_percent: float
    elapsed_percent: float
    over: bool


def _period_start(kind: str, resets_at: datetime) -> datetime:
    if kind == "day":
        return resets_at - timedelta(days=1)
    if kind == "week":
        return resets_at - timedelta(days=7)
    year, month = (
        (resets_at.year, resets_at.month - 1)
        if resets_at.month > 1
        else (
            resets_at.year - 1,
            12,
        )
    )
    return resets_at.replace(year=year, month=month)


def burn(budget: dict[str, object], now: datetime) -> Burn | None:
    """How much of the budget is used against how much of its period has gone; None without
    a budget."""
    limit = budget.get("budget_usd")
    if not isinstance(limit, int | float) or limit <= 0:
        return None
    settled = float(str(budget.get("settled_usd", 0)))
    reserved = float(str(budget.get("reserved_usd", 0)))
    resets_at = datetime.fromisoformat(str(budget["resets_at"]))
    start = _period_start(str(budget["period_kind"]), resets_at)
    span = (resets_at - start).total_seconds()
    elapsed = min(max((now - start).total_seconds() / span, 0.0), 1.0) if span > 0 else 0.0

    def percent(value: float) -> float:
        return round(min(value / limit * 100, 100.0), 2)

    return Burn(
        settled_percent=percent(settled),
        reserved_percent=round(min(percent(settled + reserved), 100.0) - percent(settled), 2),
        elapsed_percent=round(elapsed * 100, 2),
        over=settled + reserved >= limit,
    )
