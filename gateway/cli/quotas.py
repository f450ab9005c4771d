"""``runcomfy-gateway admin limits|usage|unreconciled|unknown-submits``: team limits, usage
and the ledger of submits whose outcome is unknown."""

from __future__ import annotations

from typing import Any

import click

from gateway.access.credentials import KEY_PREFIX
from gateway.cli.common import AdminClient, AdminGroup, output, say, table
from gateway.cli.params import id_of

LIMIT_OPTIONS = {
    "rate_per_minute": "Submits per minute (smooth, GCRA).",
    "rate_burst": "Submits allowed at once before the rate applies.",
    "daily_requests": "Submits per day.",
    "budget_usd": "Spend per budget period, in USD.",
    "max_request_usd": "Largest estimated cost of one request, in USD.",
}
TEAM_ONLY = {
    "budget_period",
    "max_concurrent",
    "max_queue",
    "models",
    "deployments",
    "alert_webhook",
}
CLEARABLE = {
    # the JSON name, and the option people just typed to set it
    **{name: name for name in (*LIMIT_OPTIONS, *sorted(TEAM_ONLY))},
    "budget": "budget_usd",
    "period": "budget_period",
    "daily": "daily_requests",
    "burst": "rate_burst",
    "max-request": "max_request_usd",
}


def _cleared(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[str]:
    """``--clear`` names as JSON names: ``budget_period``, ``budget-period`` and ``period``
    all name the budget's period."""
    names = []
    for value in values:
        typed = value.removeprefix("--")
        name = CLEARABLE.get(typed) or CLEARABLE.get(typed.replace("-", "_"))
        if name is None:
            known = ", ".join(sorted({*LIMIT_OPTIONS, *TEAM_ONLY}))
            raise click.BadParameter(f"{value!r} is not a limit; one of: {known}")
        names.append(name)
    return names


def _csv(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def _limits_table(data: dict[str, Any]) -> None:
    key_columns = {kid: f"key {kid}" for kid in data["keys"]}
    rows: list[dict[str, Any]] = []
    for name in [*LIMIT_OPTIONS, "budget_period", "max_concurrent", "max_queue"]:
        row = {"limit": name, "team": _shown(data.get(name))}
        if name not in TEAM_ONLY:
            row |= {col: _shown(data["keys"][kid].get(name)) for kid, col in key_columns.items()}
        rows.append(row)
    models = "all" if data["models"] is None else ", ".join(data["models"]) or "none"
    rows.append({"limit": "models", "team": models})
    rows.append({"limit": "deployments", "team": ", ".join(data["deployments"]) or "none"})
    rows.append({"limit": "alert_webhook", "team": _shown(data.get("alert_webhook"))})
    columns = ["team", *key_columns.values()]
    table(f"Limits of {data['team_id']}", rows, ["limit", *columns], wrap=columns)
    _budget(data["budget"])


def _shown(value: Any) -> str:
    return "-" if value is None else str(value)


def _budget(budget: dict[str, Any]) -> None:
    if budget["budget_usd"] is None:
        say(f"No budget; spent ${budget['settled_usd']} in {budget['period']}.")
        return
    say(
        f"Budget {budget['period']}: ${budget['budget_usd']}, settled ${budget['settled_usd']}, "
        f"reserved ${budget['reserved_usd']}, remaining [bold]${budget['remaining_usd']}"
        f"[/bold] (resets {budget['resets_at']})"
    )


@click.group("limits", cls=AdminGroup)
def limits() -> None:
    """Show and set a team's limits, access lists and budget."""


@limits.command("show")
@click.argument("team_id")
@click.pass_obj
def limits_show(client: AdminClient, team_id: str) -> None:
    """TEAM_ID's limits and its current budget period."""
    data = client.request("GET", f"/admin/v1/teams/{team_id}/limits")
    output(data, lambda: _limits_table(data))


@limits.command("set")
@click.argument("team_id")
@click.option(
    "--key",
    "key_id",
    callback=id_of(KEY_PREFIX),
    help="Narrow one key of the team instead of the team (its id or prefix).",
)
@click.option("--rate-per-minute", type=float, help=LIMIT_OPTIONS["rate_per_minute"])
@click.option("--burst", "rate_burst", type=int, help=LIMIT_OPTIONS["rate_burst"])
@click.option("--daily", "daily_requests", type=int, help=LIMIT_OPTIONS["daily_requests"])
@click.option("--budget", "budget_usd", type=float, help=LIMIT_OPTIONS["budget_usd"])
@click.option(
    "--period",
    "budget_period",
    type=click.Choice(["day", "week", "month"]),
    help="What the budget is per (calendar periods; month unless set).",
)
@click.option("--max-request", "max_request_usd", type=float, help=LIMIT_OPTIONS["max_request_usd"])
@click.option("--max-concurrent", type=int, help="Upstream jobs at once; more wait in a queue.")
@click.option("--max-queue", type=int, help="Submits that may wait for a slot.")
@click.option("--models", help="Comma-separated model ids or prefixes ending in '*'.")
@click.option("--all-models", is_flag=True, help="Allow every model (the default).")
@click.option("--deployments", help="Comma-separated serverless deployment ids ('*': all).")
@click.option("--alert-webhook", help="URL called at 50/80/100 % of the budget.")
@click.option(
    "--clear",
    "cleared",
    multiple=True,
    metavar="LIMIT",
    callback=_cleared,
    help="Remove a limit, by its JSON name or option (budget_usd or budget); repeatable. "
    "Cleared, budget_period is month again, models all and deployments none.",
)
@click.pass_obj
def limits_set(
    client: AdminClient,
    /,
    team_id: str,
    key_id: str | None,
    models: str | None,
    all_models: bool,
    deployments: str | None,
    cleared: list[str],
    **values: Any,
) -> None:
    """Change some of TEAM_ID's limits; the others stay as they are."""
    path = f"/admin/v1/teams/{team_id}/limits"
    current = client.request("GET", path)
    current.pop("budget", None)
    current.pop("team_id", None)
    changes = {k: v for k, v in values.items() if v is not None}
    both = sorted(set(changes) & set(cleared))
    if both:
        raise click.UsageError(f"set or cleared, not both: {', '.join(both)}")
    if key_id is not None:
        bad = sorted((set(changes) | set(cleared)) & TEAM_ONLY)
        bad += ["--models"] if models is not None or all_models else []
        bad += ["--deployments"] if deployments is not None else []
        if bad:
            raise click.UsageError(f"team-wide only, not per key: {', '.join(bad)}")
        target = current["keys"].setdefault(key_id, {})
    else:
        target = current
        if all_models:
            target["models"] = None
        elif models is not None:
            target["models"] = _csv(models)
        if deployments is not None:
            target["deployments"] = _csv(deployments)
    target.update(changes)
    for name in cleared:
        target.pop(name, None)  # left out of the replacement: back to the default
    data = client.request("PUT", path, current)
    output(data, lambda: _limits_table(data))


@click.command("usage")
@click.argument("team_id")
@click.option("--from", "first", help="First day (YYYY-MM-DD); default a week ago.")
@click.option("--to", "last", help="Last day (YYYY-MM-DD); default today.")
@click.pass_obj
def usage(client: AdminClient, team_id: str, first: str | None, last: str | None) -> None:
    """TEAM_ID's requests, cache outcomes, spend and savings. By day and by model."""
    query = "&".join(f"{k}={v}" for k, v in (("from", first), ("to", last)) if v)
    data = client.request(
        "GET", f"/admin/v1/teams/{team_id}/usage" + (f"?{query}" if query else "")
    )
    columns = ["requests", "miss", "hit", "coalesced", "queued", "refused", "spend_usd"]
    columns += ["saved_usd", "hit_rate"]

    def render() -> None:
        zeros = dict.fromkeys(columns, 0)  # a day without requests has no counts at all
        days = [{**zeros, **day} for day in data["by_day"]]
        active = [day for day in days if any(day[c] for c in columns)]
        table(f"Usage of {team_id} by day", active, ["day", *columns])
        if left_out := len(days) - len(active):  # a week of empty days fills a narrow terminal
            days_text = "1 day" if left_out == 1 else f"{left_out} days"
            say(f"{days_text} without requests left out (--json has them).")
        models = [{"model": m, **zeros, **c} for m, c in data["by_model"].items()]
        table("By model", models, ["model", *columns])
        totals = data["totals"]
        say(
            f"Total: {totals.get('requests', 0)} requests, hit rate {totals['hit_rate']:.1%}, "
            f"spent ${totals.get('spend_usd', 0)}, saved ${totals.get('saved_usd', 0)}; "
            f"now {data['running']} running, {data['queued']} queued, "
            f"{data['unreconciled']} unreconciled."
        )
        _budget(data["budget"])

    output(data, render)


@click.group("unreconciled", cls=AdminGroup)
def unreconciled() -> None:
    """Submits of unknown outcome, still reserved. They count against the budget."""


@unreconciled.command("list")
@click.argument("team_id")
@click.pass_obj
def unreconciled_list(client: AdminClient, team_id: str) -> None:
    """TEAM_ID's submits of unknown outcome. What each still reserves."""
    data = client.request("GET", f"/admin/v1/teams/{team_id}/unreconciled")
    columns = ["job_id", "request_id", "api", "target", "created_at", "reserved_usd"]
    output(data, lambda: table("Unreconciled", data["jobs"], columns))


@unreconciled.command("resolve")
@click.argument("team_id")
@click.argument("job_id")
@click.option("--charged/--refunded", required=True, help="Did RunComfy charge the job?")
@click.option("--cost", type=float, help="What it charged in USD (default: the reservation).")
@click.pass_obj
def unreconciled_resolve(
    client: AdminClient, team_id: str, job_id: str, charged: bool, cost: float | None
) -> None:
    """Settle JOB_ID of TEAM_ID as charged (its cost) or refunded."""
    body: dict[str, Any] = {"outcome": "charged" if charged else "refunded"}
    if cost is not None:
        body["cost_usd"] = cost
    data = client.request("POST", f"/admin/v1/teams/{team_id}/unreconciled/{job_id}", body)
    columns = ["job_id", "outcome", "reserved_usd", "settled_usd"]
    output(data, lambda: table("Resolved", [data], columns))


@click.command("unknown-submits")
@click.argument("team_id")
@click.pass_obj
def unknown_submits(client: AdminClient, team_id: str) -> None:
    """Submits of TEAM_ID whose outcome is unknown. For reconciliation with RunComfy."""
    data = client.request("GET", f"/admin/v1/teams/{team_id}/unknown-submits")
    columns = ["request_id", "api", "target", "key_id", "created_at"]
    output(data, lambda: table("Unknown submits", data["requests"], columns))
