"""``runcomfy-gateway admin limits|usage|unreconciled``: team limits, usage and the ledger."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from gateway.cli import AdminClient, _output, _table, admin, console

LIMIT_OPTIONS = {
    "rate_per_minute": "submits per minute (smooth, GCRA)",
    "rate_burst": "submits allowed at once before the rate applies",
    "daily_requests": "submits per day",
    "budget_usd": "spend per budget period, in USD",
    "max_request_usd": "largest estimated cost of one request, in USD",
}
TEAM_ONLY = {"budget_period", "max_concurrent", "max_queue", "models", "deployments"}


def _csv(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def _limits_table(data: dict[str, Any]) -> None:
    table = Table(title=f"Limits of {data['team_id']}")
    table.add_column("limit")
    table.add_column("team")
    for kid in data["keys"]:
        table.add_column(f"key {kid}")
    names = [*LIMIT_OPTIONS, "budget_period", "max_concurrent", "max_queue"]
    for name in names:
        row = [name, _shown(data.get(name))]
        row += [_shown(k.get(name)) if name not in TEAM_ONLY else "" for k in data["keys"].values()]
        table.add_row(*row)
    table.add_row("models", "all" if data["models"] is None else ", ".join(data["models"]) or "-")
    table.add_row("deployments", ", ".join(data["deployments"]) or "none")
    table.add_row("alert_webhook", _shown(data.get("alert_webhook")))
    console.print(table)
    _budget(data["budget"])


def _shown(value: Any) -> str:
    return "-" if value is None else str(value)


def _budget(budget: dict[str, Any]) -> None:
    if budget["budget_usd"] is None:
        console.print(f"No budget; spent ${budget['settled_usd']} in {budget['period']}.")
        return
    console.print(
        f"Budget {budget['period']}: ${budget['budget_usd']}, settled ${budget['settled_usd']}, "
        f"reserved ${budget['reserved_usd']}, remaining [bold]${budget['remaining_usd']}"
        f"[/bold] (resets {budget['resets_at']})"
    )


@admin.group()
def limits() -> None:
    """Show and set a team's limits, access lists and budget."""


@limits.command("show")
@click.argument("team_id")
@click.pass_obj
def limits_show(obj: tuple[AdminClient, bool], team_id: str) -> None:
    """TEAM_ID's limits and its current budget period."""
    client, as_json = obj
    data = client.request("GET", f"/admin/v1/teams/{team_id}/limits")
    _output(as_json, data, lambda: _limits_table(data))


@limits.command("set")
@click.argument("team_id")
@click.option("--key", "key_id", help="Narrow one key of the team instead of the team.")
@click.option("--rate-per-minute", type=float, help=LIMIT_OPTIONS["rate_per_minute"])
@click.option("--burst", "rate_burst", type=int, help=LIMIT_OPTIONS["rate_burst"])
@click.option("--daily", "daily_requests", type=int, help=LIMIT_OPTIONS["daily_requests"])
@click.option("--budget", "budget_usd", type=float, help=LIMIT_OPTIONS["budget_usd"])
@click.option("--period", "budget_period", type=click.Choice(["day", "week", "month"]))
@click.option("--max-request", "max_request_usd", type=float, help="USD cap of one request.")
@click.option("--max-concurrent", type=int, help="Upstream jobs at once; more wait in a queue.")
@click.option("--max-queue", type=int, help="Submits that may wait for a slot.")
@click.option("--models", help="Comma-separated model ids or prefixes ending in '*'.")
@click.option("--all-models", is_flag=True, help="Allow every model (the default).")
@click.option("--deployments", help="Comma-separated serverless deployment ids ('*': all).")
@click.option("--alert-webhook", help="URL called at 50/80/100 %% of the budget.")
@click.option("--clear", "cleared", multiple=True, help="Remove a limit (by its JSON name).")
@click.pass_obj
def limits_set(
    obj: tuple[AdminClient, bool],
    /,
    team_id: str,
    key_id: str | None,
    models: str | None,
    all_models: bool,
    deployments: str | None,
    cleared: tuple[str, ...],
    **values: Any,
) -> None:
    """Change some of TEAM_ID's limits; the others stay as they are."""
    client, as_json = obj
    path = f"/admin/v1/teams/{team_id}/limits"
    current = client.request("GET", path)
    current.pop("budget", None)
    current.pop("team_id", None)
    changes = {k: v for k, v in values.items() if v is not None}
    if key_id is not None:
        bad = sorted(set(changes) & TEAM_ONLY) + (["--models"] if models or all_models else [])
        if bad or deployments is not None:
            raise click.UsageError(f"team-wide only, not per key: {', '.join(bad) or 'access'}")
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
        target[name] = None
    data = client.request("PUT", path, current)
    _output(as_json, data, lambda: _limits_table(data))


@admin.command("usage")
@click.argument("team_id")
@click.option("--from", "first", help="First day (YYYY-MM-DD); default a week ago.")
@click.option("--to", "last", help="Last day (YYYY-MM-DD); default today.")
@click.pass_obj
def usage(obj: tuple[AdminClient, bool], team_id: str, first: str | None, last: str | None) -> None:
    """TEAM_ID's requests, cache outcomes, spend and savings by day and by model."""
    client, as_json = obj
    query = "&".join(f"{k}={v}" for k, v in (("from", first), ("to", last)) if v)
    data = client.request(
        "GET", f"/admin/v1/teams/{team_id}/usage" + (f"?{query}" if query else "")
    )
    columns = ["requests", "miss", "hit", "coalesced", "queued", "refused", "spend_usd"]
    columns += ["saved_usd", "hit_rate"]

    def render() -> None:
        _table(f"Usage of {team_id} by day", data["by_day"], ["day", *columns])
        models = [{"model": m, **c} for m, c in data["by_model"].items()]
        _table("By model", models, ["model", *columns])
        totals = data["totals"]
        console.print(
            f"Total: {totals.get('requests', 0)} requests, hit rate {totals['hit_rate']:.1%}, "
            f"spent ${totals.get('spend_usd', 0)}, saved ${totals.get('saved_usd', 0)}; "
            f"now {data['running']} running, {data['queued']} queued, "
            f"{data['unreconciled']} unreconciled."
        )
        _budget(data["budget"])

    _output(as_json, data, render)


@admin.group()
def unreconciled() -> None:
    """Submits of unknown outcome still reserved against a team's budget."""


@unreconciled.command("list")
@click.argument("team_id")
@click.pass_obj
def unreconciled_list(obj: tuple[AdminClient, bool], team_id: str) -> None:
    client, as_json = obj
    data = client.request("GET", f"/admin/v1/teams/{team_id}/unreconciled")
    columns = ["job_id", "request_id", "api", "target", "created_at", "reserved_usd"]
    _output(as_json, data, lambda: _table("Unreconciled", data["jobs"], columns))


@unreconciled.command("resolve")
@click.argument("team_id")
@click.argument("job_id")
@click.option("--charged/--refunded", required=True, help="Did RunComfy charge the job?")
@click.option("--cost", type=float, help="What it charged in USD (default: the reservation).")
@click.pass_obj
def unreconciled_resolve(
    obj: tuple[AdminClient, bool], team_id: str, job_id: str, charged: bool, cost: float | None
) -> None:
    """Settle JOB_ID of TEAM_ID as charged (its cost) or refunded."""
    client, as_json = obj
    body: dict[str, Any] = {"outcome": "charged" if charged else "refunded"}
    if cost is not None:
        body["cost_usd"] = cost
    data = client.request("POST", f"/admin/v1/teams/{team_id}/unreconciled/{job_id}", body)
    columns = ["job_id", "outcome", "reserved_usd", "settled_usd"]
    _output(as_json, data, lambda: _table("Resolved", [data], columns))
