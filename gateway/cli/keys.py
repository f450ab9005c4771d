"""``runcomfy-gateway admin keys``: a team's API keys, from creation to rotation and revocation."""

from __future__ import annotations

import click

from gateway.access.credentials import KEY_PREFIX
from gateway.cli.common import AdminClient, AdminGroup, output, show_secret, table
from gateway.cli.params import duration, expiry, id_of

KEY_COLUMNS = [
    "key_id",
    "team_id",
    "name",
    "prefix",
    "created_at",
    "expires_at",
    "revoked_at",
    "replaced_by",
    "active",
]


ONE_KEY = {"allow_extra_args": True}
"""Settings of a command on one key: extra words reach :func:`_key_alone`, which says why."""


@click.group("keys", cls=AdminGroup)
def group() -> None:
    """Create, list, show, rotate and revoke API keys."""


def _key_alone() -> None:
    """People used to ``keys list TEAM_ID`` write the team first here too (``keys revoke ml
    <key_id>``); they are told the key id is enough, not that an argument is unexpected."""
    ctx = click.get_current_context()
    if ctx.args:
        raise click.UsageError(
            f"give KEY_ID alone ({ctx.command_path} KEY_ID): a key's id names its team", ctx
        )


@group.command("create")
@click.argument("team_id")
@click.option("--name", default=None, help="What the key is for, e.g. laptop or ci.")
@click.option(
    "--expires-in",
    callback=duration,
    metavar="DURATION",
    default=None,
    help="e.g. 3600, 12h or 90d.",
)
@click.option("--expires-at", default=None, help="ISO 8601 time with a zone.")
@click.pass_obj
def keys_create(
    client: AdminClient,
    team_id: str,
    name: str | None,
    expires_in: int | None,
    expires_at: str | None,
) -> None:
    """A new key for TEAM_ID, optionally expiring."""
    body = {"name": name, **expiry(expires_in, expires_at)}
    data = client.request("POST", f"/admin/v1/teams/{team_id}/keys", body)

    def render() -> None:
        table("Key created", [data], KEY_COLUMNS)
        show_secret("API key", data["key"])

    output(data, render)


@group.command("rotate", context_settings=ONE_KEY)
@click.argument("key_id", callback=id_of(KEY_PREFIX))
@click.option(
    "--grace",
    callback=duration,
    metavar="DURATION",
    default="24h",
    show_default=True,
    help="How long the old key keeps working (0: stops at once).",
)
@click.option(
    "--expires-in",
    callback=duration,
    metavar="DURATION",
    default=None,
    help="The new key's lifetime.",
)
@click.option("--expires-at", default=None, help="The new key's expiry (ISO 8601).")
@click.pass_obj
def keys_rotate(
    client: AdminClient,
    key_id: str,
    grace: int,
    expires_in: int | None,
    expires_at: str | None,
) -> None:
    """A new key in place of KEY_ID. Same team and name; the old one works for the grace."""
    _key_alone()
    body = {"grace_seconds": grace, **expiry(expires_in, expires_at)}
    data = client.request("POST", f"/admin/v1/keys/{key_id}/rotate", body)

    def render() -> None:
        table("Key rotated", [data["replaces"], data], KEY_COLUMNS)
        show_secret("New API key", data["key"])

    output(data, render)


@group.command("list")
@click.argument("team_id")
@click.pass_obj
def keys_list(client: AdminClient, team_id: str) -> None:
    """TEAM_ID's keys, revoked and replaced ones included. Never the keys themselves."""
    data = client.request("GET", f"/admin/v1/teams/{team_id}/keys")
    output(data, lambda: table(f"Keys of {team_id}", data["keys"], KEY_COLUMNS))


@group.command("show", context_settings=ONE_KEY)
@click.argument("key_id", callback=id_of(KEY_PREFIX))
@click.pass_obj
def keys_show(client: AdminClient, key_id: str) -> None:
    """One key by its id (its prefix or the key itself will do)."""
    _key_alone()
    data = client.request("GET", f"/admin/v1/keys/{key_id}")
    output(data, lambda: table("Key", [data], KEY_COLUMNS))


@group.command("revoke", context_settings=ONE_KEY)
@click.argument("key_id", callback=id_of(KEY_PREFIX))
@click.pass_obj
def keys_revoke(client: AdminClient, key_id: str) -> None:
    """Revoke KEY_ID at once, on every replica. A rotation's grace ends too."""
    _key_alone()
    data = client.request("DELETE", f"/admin/v1/keys/{key_id}")
    output(data, lambda: table("Key revoked", [data], KEY_COLUMNS))
