"""``runcomfy-gateway admin admins|audit|whoami``: named admin tokens and the audit log."""

from __future__ import annotations

from urllib.parse import quote, urlencode

import click

from gateway.access.credentials import ADMIN_TOKEN_PREFIX
from gateway.cli.common import AdminClient, AdminGroup, output, say, show_secret, table
from gateway.cli.params import id_of

ADMIN_COLUMNS = ["token_id", "name", "role", "prefix", "created_at", "created_by", "active"]
AUDIT_COLUMNS = ["at", "actor", "action", "target", "id"]


@click.command("whoami")
@click.pass_obj
def whoami(client: AdminClient) -> None:
    """The admin identity of the token in use."""
    data = client.request("GET", "/admin/v1/whoami")
    output(data, lambda: table("Admin", [data], ["name", "role", "token_id"]))


@click.group("admins", cls=AdminGroup)
def group() -> None:
    """Named admin tokens: create, list, revoke. Roles: admin, viewer."""


@group.command("create")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(["admin", "viewer"]),
    default="viewer",
    show_default=True,
    help="viewer: read only; admin: may change anything.",
)
@click.pass_obj
def admins_create(client: AdminClient, name: str, role: str) -> None:
    """A new admin token named NAME (its author is the token in use)."""
    data = client.request("POST", "/admin/v1/admins", {"name": name, "role": role})

    def render() -> None:
        table("Admin token created", [data], ADMIN_COLUMNS)
        show_secret("Admin token", data["token"])

    output(data, render)


@group.command("list")
@click.pass_obj
def admins_list(client: AdminClient) -> None:
    """Every named admin token, revoked ones included."""
    data = client.request("GET", "/admin/v1/admins")
    columns = [*ADMIN_COLUMNS, "revoked_at", "revoked_by"]
    output(data, lambda: table("Admin tokens", data["admins"], columns))


@group.command("revoke")
@click.argument("token_id", callback=id_of(ADMIN_TOKEN_PREFIX))
@click.pass_obj
def admins_revoke(client: AdminClient, token_id: str) -> None:
    """Revoke an admin token. Every replica refuses it from its next request."""
    data = client.request("DELETE", f"/admin/v1/admins/{quote(token_id, safe='')}")
    columns = [*ADMIN_COLUMNS, "revoked_at", "revoked_by"]
    output(data, lambda: table("Admin token revoked", [data], columns))


@click.command("audit")
@click.option("--actor", default=None, help="An admin name or token id.")
@click.option("--action", default=None, help="e.g. key.revoke, team.create.")
@click.option("--target", default=None, help="A target prefix, e.g. team/design/key/.")
@click.option("--team", default=None, help="Changes to one team (its keys, policy, cache).")
@click.option("--since", default=None, help="ISO 8601 time; older records are left out.")
@click.option(
    "--limit", default=50, show_default=True, type=click.IntRange(1, 1000), help="Entries per page."
)
@click.option("--cursor", default=None, help="next_cursor of an earlier page.")
@click.pass_obj
def audit(
    client: AdminClient,
    actor: str | None,
    action: str | None,
    target: str | None,
    team: str | None,
    since: str | None,
    limit: int,
    cursor: str | None,
) -> None:
    """Who changed what and when, newest first. --json shows the before and after."""
    filters = {"actor": actor, "action": action, "target": target, "team": team}
    query = {**filters, "since": since, "cursor": cursor, "limit": limit}
    params = urlencode({k: v for k, v in query.items() if v is not None})
    data = client.request("GET", f"/admin/v1/audit?{params}")

    def render() -> None:
        table("Audit log", data["entries"], AUDIT_COLUMNS)
        if data["next_cursor"]:
            say(f"More: --cursor {data['next_cursor']}")

    output(data, render)
