"""``runcomfy-gateway admin teams``: create, list, show and delete teams."""

from __future__ import annotations

import click

from gateway.cli.common import AdminClient, AdminGroup, escape, output, say, table

TEAM_COLUMNS = ["team_id", "name", "created_at"]


@click.group("teams", cls=AdminGroup)
def group() -> None:
    """Create, list, show and delete teams."""


@group.command("list")
@click.pass_obj
def teams_list(client: AdminClient) -> None:
    """Every team."""
    data = client.request("GET", "/admin/v1/teams")
    output(data, lambda: table("Teams", data["teams"], TEAM_COLUMNS))


@group.command("create")
@click.argument("team_id")
@click.option("--name", default=None, help="A display name (free text).")
@click.pass_obj
def teams_create(client: AdminClient, team_id: str, name: str | None) -> None:
    """A new team TEAM_ID (lower case letters, digits, - and _)."""
    data = client.request("POST", "/admin/v1/teams", {"team_id": team_id, "name": name})
    output(data, lambda: table("Team created", [data], TEAM_COLUMNS))


@group.command("show")
@click.argument("team_id")
@click.pass_obj
def teams_show(client: AdminClient, team_id: str) -> None:
    """TEAM_ID and how many keys it has."""
    data = client.request("GET", f"/admin/v1/teams/{team_id}")
    output(data, lambda: table("Team", [data], [*TEAM_COLUMNS, "keys", "active_keys"]))


@group.command("delete")
@click.argument("team_id")
@click.confirmation_option(prompt="Delete the team and revoke all its keys?")
@click.pass_obj
def teams_delete(client: AdminClient, team_id: str) -> None:
    """Delete TEAM_ID and revoke every key of it."""
    data = client.request("DELETE", f"/admin/v1/teams/{team_id}")
    output(data, lambda: say(f"Deleted team [bold]{escape(team_id)}[/bold]."))
