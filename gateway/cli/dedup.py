"""``runcomfy-gateway admin dedup|cache``: a team's dedup policy and cache purges."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import click

from gateway.access.credentials import KEY_PREFIX
from gateway.cli.common import AdminClient, AdminGroup, output, say, table
from gateway.cli.params import id_of

POLICIES = ("cache", "seeded", "inflight", "off")


def _pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for text in values:
        name, eq, policy = text.rpartition("=")
        if not eq or not name or policy not in POLICIES:
            raise click.BadParameter(f"{text!r}: use NAME={'|'.join(POLICIES)}", param_hint=option)
        out[name] = policy
    return out


def _key_pairs(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, str]:
    """``--key`` entries by key id, written as the id, its prefix or the whole key, as every
    other command takes a key."""
    key_id = id_of(KEY_PREFIX)
    return {key_id(ctx, param, k) or k: p for k, p in _pairs(values, "--key").items()}


def _policy_table(team_id: str, data: dict[str, Any]) -> None:
    rows = [{"applies to": "team default", "policy": data.get("default") or "(gateway default)"}]
    rows += [{"applies to": f"key {k}", "policy": v} for k, v in data.get("keys", {}).items()]
    rows += [{"applies to": f"model {m}", "policy": v} for m, v in data.get("models", {}).items()]
    table(f"Dedup policy of {team_id}", rows, ["applies to", "policy"])


@click.group("dedup", cls=AdminGroup)
def group() -> None:
    """Dedup policies per team, key and model.

    Modes: cache, seeded (cache only requests that pin their seeds), inflight (only join jobs in
    flight) or off; the most restrictive that applies wins."""


@group.command("show")
@click.argument("team_id")
@click.pass_obj
def dedup_show(client: AdminClient, team_id: str) -> None:
    """TEAM_ID's dedup policy. Its default and the entries per key and model."""
    data = client.request("GET", f"/admin/v1/teams/{team_id}/dedup-policy")
    output(data, lambda: _policy_table(team_id, data))


@group.command("set")
@click.argument("team_id")
@click.option("--default", "default", type=click.Choice(POLICIES), help="The team's policy.")
@click.option(
    "--key",
    "keys",
    multiple=True,
    metavar="KEY_ID=POLICY",
    callback=_key_pairs,
    help="One key's policy (its id or prefix); repeatable.",
)
@click.option(
    "--model",
    "models",
    multiple=True,
    metavar="MODEL_ID=POLICY",
    help="One model's policy; repeatable.",
)
@click.pass_obj
def dedup_set(
    client: AdminClient,
    team_id: str,
    default: str | None,
    keys: dict[str, str],
    models: tuple[str, ...],
) -> None:
    """Replace TEAM_ID's whole dedup policy. The most restrictive applicable entry wins."""
    body = {"default": default, "keys": keys, "models": _pairs(models, "--model")}
    data = client.request("PUT", f"/admin/v1/teams/{team_id}/dedup-policy", body)
    output(data, lambda: _policy_table(team_id, data))


@click.command("purge")
@click.argument("team_id", required=False)
@click.option("--model", help="Only this model's (or deployment's) cached results.")
@click.option("--cache-key", help="Only this request (its X-Gateway-Cache-Key).")
@click.pass_obj
def purge(
    client: AdminClient, team_id: str | None, model: str | None, cache_key: str | None
) -> None:
    """Forget cached results. Those of TEAM_ID (all, --model or --cache-key), or of --model for
    every team when no TEAM_ID is given."""
    if team_id is None:
        if not model:
            raise click.UsageError("give a TEAM_ID, or --model to purge it for every team")
        path = f"/admin/v1/cache/{quote(model, safe='/')}"
    elif cache_key:
        path = f"/admin/v1/teams/{team_id}/cache/{quote(cache_key, safe='')}"
    else:
        path = f"/admin/v1/teams/{team_id}/cache" + (f"?model={quote(model)}" if model else "")
    data = client.request("DELETE", path)
    output(data, lambda: say(f"Purged {data['purged']} cached results."))
