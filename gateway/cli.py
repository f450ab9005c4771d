"""The ``runcomfy-gateway`` command line: serve, simulator, demo, admin and config."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import click
from aiohttp import web
from pydantic import SecretStr, ValidationError
from rich.console import Console
from rich.table import Table

from gateway import __version__
from gateway.appkeys import EMBEDDED_REDIS, TEAMS
from gateway.errors import Conflict
from gateway.logs import configure_logging
from gateway.settings import Settings, settings_table

console = Console()


def _load_settings(**overrides: Any) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False):
            name = "GATEWAY_" + "_".join(str(p) for p in error["loc"]).upper()
            click.echo(f"configuration error: {name}: {error['msg']}", err=True)
        sys.exit(2)


def _install_uvloop() -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is absent on Windows only
        pass


def _run(app: web.Application, settings: Settings, host: str, port: int) -> None:
    _install_uvloop()
    web.run_app(
        app,
        host=host,
        port=port,
        shutdown_timeout=settings.shutdown_grace_seconds,
        keepalive_timeout=settings.client_idle_timeout_seconds,  # also bounds slow headers
        access_log=None,
        print=None,
        handle_signals=True,
    )


@click.group()
@click.version_option(__version__, prog_name="runcomfy-gateway")
def main() -> None:
    """A caching, quota-enforcing gateway in front of the RunComfy APIs."""


@main.command()
@click.option("--host", default=None, help="Listen address (GATEWAY_HOST).")
@click.option("--port", default=None, type=int, help="Listen port (GATEWAY_PORT).")
def serve(host: str | None, port: int | None) -> None:
    """Run the gateway (embedded Redis unless GATEWAY_REDIS_URL is set)."""
    from gateway.app import MetricsListenerError, create_app, freeze_startup_objects

    settings = _load_settings(host=host, port=port)
    configure_logging(settings.log_level, settings.log_format, _secrets_of(settings))
    app = create_app(settings)
    app.on_startup.append(freeze_startup_objects)  # runs after every cleanup_ctx has started
    try:
        _run(app, settings, settings.host, settings.port)
    except MetricsListenerError as exc:
        click.echo(f"cannot start: {exc}", err=True)
        sys.exit(2)


def _secrets_of(settings: Settings) -> list[str]:
    return [settings.upstream_token.get_secret_value(), settings.admin_token.get_secret_value()]


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8188, type=int, show_default=True)
@click.option("--token", default="sim-token", show_default=True, help="Accepted bearer token.")
@click.option("--queue-seconds", default=1.0, type=float, show_default=True)
@click.option("--run-seconds", default=3.0, type=float, show_default=True)
def simulator(host: str, port: int, token: str, queue_seconds: float, run_seconds: float) -> None:
    """Run the RunComfy simulator (both APIs, catalog, faults, call counters)."""
    from gateway.simulator import SimulatorConfig, run_simulator

    config = SimulatorConfig(token=token, queue_seconds=queue_seconds, run_seconds=run_seconds)
    click.echo(f"RunComfy simulator on http://{host}:{port} (token {token!r})")
    _install_uvloop()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_simulator(host, port, config))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, type=int, show_default=True)
@click.option("--data-dir", default="./data/demo", show_default=True, type=click.Path())
def demo(host: str, port: int, data_dir: str) -> None:
    """Gateway + simulator + embedded Redis in one process, with a ready team key."""
    from gateway.app import create_app
    from gateway.simulator import SimulatorConfig, create_simulator_app

    sim_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sim_sock.bind(("127.0.0.1", 0))
    sim_port = sim_sock.getsockname()[1]
    sim_config = SimulatorConfig(token=secrets.token_urlsafe(16))
    admin_token = os.environ.get("GATEWAY_ADMIN_TOKEN") or secrets.token_urlsafe(24)
    settings = _load_settings(
        upstream_model_api_url=f"http://127.0.0.1:{sim_port}",
        upstream_serverless_url=f"http://127.0.0.1:{sim_port}",
        upstream_token=SecretStr(sim_config.token),
        admin_token=SecretStr(admin_token),
        redis_url="",
        data_dir=Path(data_dir),
        host=host,
        port=port,
        log_format="console",
        log_level="warning",
    )
    configure_logging(settings.log_level, settings.log_format, _secrets_of(settings))
    app = create_app(settings)

    async def simulator_ctx(_: web.Application) -> AsyncIterator[None]:
        runner = web.AppRunner(create_simulator_app(sim_config), access_log=None)
        await runner.setup()
        await web.SockSite(runner, sim_sock).start()
        yield
        await runner.cleanup()

    async def announce(gateway: web.Application) -> None:
        teams = gateway[TEAMS]
        with contextlib.suppress(Conflict):  # it survives restarts in the embedded Redis
            await teams.create_team("demo", "Demo team")
        info, key = await teams.create_key("demo", "demo key")
        base = f"http://{host}:{port}"
        server = gateway[EMBEDDED_REDIS].info
        redis_text = f"{server.name} {server.version} ({server.binary})" if server else "?"
        click.echo(
            f"\nruncomfy-gateway demo on {base} (RunComfy simulator on 127.0.0.1:{sim_port})\n"
            f"  embedded Redis : {redis_text}\n"
            f"  admin token : {admin_token}\n"
            f"  team 'demo' key ({info.prefix}) : {key}\n\n"
            f"Try:\n"
            f"  curl -s -X POST {base}/v1/models/google/nano-banana/pro/text-to-image \\\n"
            f'    -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\\n'
            f'    -d \'{{"prompt": "a lighthouse at dawn"}}\'\n'
            f'  curl -s {base}/v1/requests/<request_id>/status -H "Authorization: Bearer {key}"\n'
            "\nCtrl-C stops it.\n"
        )

    app.cleanup_ctx.insert(0, simulator_ctx)
    app.on_startup.append(announce)
    _run(app, settings, host, port)


@main.command()
@click.option("--markdown", is_flag=True, help="Print the settings as a Markdown table.")
def config(markdown: bool) -> None:
    """Show the gateway's settings (from GATEWAY_* variables), secrets hidden."""
    if markdown:
        click.echo(settings_table())
        return
    settings = _load_settings()
    for name, value in settings.model_dump().items():
        click.echo(f"GATEWAY_{name.upper()}={value}")


# --- admin -----------------------------------------------------------------------------------


class AdminClient:
    """A small client of the admin API, so the CLI works against any replica, local or remote."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.token = token

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async def go() -> Any:
            headers = {"Authorization": f"Bearer {self.token}"}
            timeout = aiohttp.ClientTimeout(total=30)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.request(method, self.url + path, json=body, headers=headers) as resp,
            ):
                data = await resp.json(content_type=None)
                if resp.status >= 400:
                    message = data.get("error_message") if isinstance(data, dict) else data
                    raise click.ClickException(f"{resp.status}: {message}")
                return data

        try:
            return asyncio.run(go())
        except aiohttp.ClientError as exc:
            raise click.ClickException(f"cannot reach the gateway at {self.url}: {exc}") from None


def _table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    console.print(table)


def _output(as_json: bool, data: Any, render: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        render()


_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """Seconds, written as ``3600``, ``90s``, ``15m``, ``12h`` or ``30d``."""
    if value is None:
        return None
    match = re.fullmatch(r"(\d+)([smhd]?)", value.strip())
    if not match:
        raise click.BadParameter(f"{value!r} is not a duration like 3600, 90m, 12h or 30d")
    return int(match[1]) * _DURATION_UNITS[match[2]]


@main.group()
@click.option(
    "--url", envvar="GATEWAY_ADMIN_URL", default="http://127.0.0.1:8080", show_default=True
)
@click.option(
    "--token",
    envvar="GATEWAY_ADMIN_TOKEN",
    required=True,
    help="An admin token: GATEWAY_ADMIN_TOKEN (bootstrap) or a named rca_ token.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.pass_context
def admin(ctx: click.Context, url: str, token: str, as_json: bool) -> None:
    """Manage teams, API keys and admin tokens, and read the audit log, through a running
    gateway's admin API."""
    ctx.obj = (AdminClient(url, token), as_json)


TEAM_COLUMNS = ["team_id", "name", "created_at"]
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


def _expiry(expires_in: int | None, expires_at: str | None) -> dict[str, Any]:
    """The API's expiry fields for the CLI's ``--expires-in`` / ``--expires-at``."""
    if expires_in is not None and expires_at is not None:
        raise click.UsageError("give --expires-in or --expires-at, not both")
    if expires_in is not None:
        return {"expires_in_seconds": expires_in}
    return {"expires_at": expires_at} if expires_at is not None else {}


def _show_secret(what: str, secret: str) -> None:
    console.print(f"{what} (shown once, store it now):", style="bold")
    click.echo(secret)


@admin.group()
def teams() -> None:
    """Create, list, show and delete teams."""


@teams.command("list")
@click.pass_obj
def teams_list(obj: tuple[AdminClient, bool]) -> None:
    client, as_json = obj
    data = client.request("GET", "/admin/v1/teams")
    _output(as_json, data, lambda: _table("Teams", data["teams"], TEAM_COLUMNS))


@teams.command("create")
@click.argument("team_id")
@click.option("--name", default=None)
@click.pass_obj
def teams_create(obj: tuple[AdminClient, bool], team_id: str, name: str | None) -> None:
    client, as_json = obj
    data = client.request("POST", "/admin/v1/teams", {"team_id": team_id, "name": name})
    _output(as_json, data, lambda: _table("Team created", [data], TEAM_COLUMNS))


@teams.command("show")
@click.argument("team_id")
@click.pass_obj
def teams_show(obj: tuple[AdminClient, bool], team_id: str) -> None:
    client, as_json = obj
    data = client.request("GET", f"/admin/v1/teams/{team_id}")
    _output(as_json, data, lambda: _table("Team", [data], [*TEAM_COLUMNS, "keys", "active_keys"]))


@teams.command("delete")
@click.argument("team_id")
@click.confirmation_option(prompt="Delete the team and revoke all its keys?")
@click.pass_obj
def teams_delete(obj: tuple[AdminClient, bool], team_id: str) -> None:
    client, as_json = obj
    data = client.request("DELETE", f"/admin/v1/teams/{team_id}")
    _output(as_json, data, lambda: console.print(f"Deleted team [bold]{team_id}[/bold]."))


@admin.group()
def keys() -> None:
    """Create, list, show, rotate and revoke API keys."""


@keys.command("create")
@click.argument("team_id")
@click.option("--name", default=None)
@click.option(
    "--expires-in",
    callback=_duration,
    metavar="DURATION",
    default=None,
    help="e.g. 3600, 12h or 90d.",
)
@click.option("--expires-at", default=None, help="ISO 8601 time with a zone.")
@click.pass_obj
def keys_create(
    obj: tuple[AdminClient, bool],
    team_id: str,
    name: str | None,
    expires_in: int | None,
    expires_at: str | None,
) -> None:
    """A new key for TEAM_ID, optionally expiring."""
    client, as_json = obj
    body = {"name": name, **_expiry(expires_in, expires_at)}
    data = client.request("POST", f"/admin/v1/teams/{team_id}/keys", body)

    def render() -> None:
        _table("Key created", [data], KEY_COLUMNS)
        _show_secret("API key", data["key"])

    _output(as_json, data, render)


@keys.command("rotate")
@click.argument("key_id")
@click.option(
    "--grace",
    callback=_duration,
    metavar="DURATION",
    default="24h",
    show_default=True,
    help="How long the old key keeps working (0: stops at once).",
)
@click.option(
    "--expires-in",
    callback=_duration,
    metavar="DURATION",
    default=None,
    help="The new key's lifetime.",
)
@click.option("--expires-at", default=None, help="The new key's expiry (ISO 8601).")
@click.pass_obj
def keys_rotate(
    obj: tuple[AdminClient, bool],
    key_id: str,
    grace: int,
    expires_in: int | None,
    expires_at: str | None,
) -> None:
    """A new key in place of KEY_ID (same team and name); the old one works for the grace."""
    client, as_json = obj
    body = {"grace_seconds": grace, **_expiry(expires_in, expires_at)}
    data = client.request("POST", f"/admin/v1/keys/{key_id}/rotate", body)

    def render() -> None:
        _table("Key rotated", [data["replaces"], data], KEY_COLUMNS)
        _show_secret("New API key", data["key"])

    _output(as_json, data, render)


@keys.command("list")
@click.argument("team_id")
@click.pass_obj
def keys_list(obj: tuple[AdminClient, bool], team_id: str) -> None:
    client, as_json = obj
    data = client.request("GET", f"/admin/v1/teams/{team_id}/keys")
    _output(as_json, data, lambda: _table(f"Keys of {team_id}", data["keys"], KEY_COLUMNS))


@keys.command("show")
@click.argument("key_id")
@click.pass_obj
def keys_show(obj: tuple[AdminClient, bool], key_id: str) -> None:
    client, as_json = obj
    data = client.request("GET", f"/admin/v1/keys/{key_id}")
    _output(as_json, data, lambda: _table("Key", [data], KEY_COLUMNS))


@keys.command("revoke")
@click.argument("key_id")
@click.pass_obj
def keys_revoke(obj: tuple[AdminClient, bool], key_id: str) -> None:
    client, as_json = obj
    data = client.request("DELETE", f"/admin/v1/keys/{key_id}")
    _output(as_json, data, lambda: _table("Key revoked", [data], KEY_COLUMNS))


@admin.command("unknown-submits")
@click.argument("team_id")
@click.pass_obj
def unknown_submits(obj: tuple[AdminClient, bool], team_id: str) -> None:
    """Submits of TEAM_ID whose outcome is unknown (for reconciliation with RunComfy)."""
    client, as_json = obj
    data = client.request("GET", f"/admin/v1/teams/{team_id}/unknown-submits")
    columns = ["request_id", "api", "target", "key_id", "created_at"]
    _output(as_json, data, lambda: _table("Unknown submits", data["requests"], columns))


# --- admin pricing -------------------------------------------------------------------------------

MODEL_PRICE_COLUMNS = ["model_id", "unit_price_usd", "price_unit", "units_param", "default_units"]
DEPLOYMENT_PRICE_COLUMNS = ["deployment_id", "usd_per_second", "estimated_seconds"]
ESTIMATE_COLUMNS = ["cost", "micro", "unit_price_micro", "units", "unit", "source", "notes"]


def _dollars(micro: int) -> str:
    """Micro-dollars as text, without a float in between."""
    return f"${micro // 1_000_000}.{micro % 1_000_000:06d}"


def _parse_rule(text: str) -> dict[str, Any]:
    """``PARAM=VALUE:USD`` sets the unit price, ``PARAM=VALUE:xN`` multiplies it."""
    condition, _, effect = text.rpartition(":")
    param, eq, value = condition.partition("=")
    try:
        if not (param and eq and effect):
            raise ValueError
        if effect[0] in "x*":
            return {"param": param, "equals": value, "multiplier": float(effect[1:])}
        return {"param": param, "equals": value, "unit_price_usd": float(effect)}
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: use PARAM=VALUE:USD or PARAM=VALUE:xMULTIPLIER", param_hint="--rule"
        ) from None


def _rules_text(rules: list[dict[str, Any]]) -> str:
    parts = []
    for rule in rules:
        effect = (
            f"x{rule['multiplier']:g}" if "multiplier" in rule else f"${rule['unit_price_usd']}"
        )
        parts.append(f"{rule['param']}={rule['equals']}:{effect}")
    return ", ".join(parts)


@admin.group()
def pricing() -> None:
    """Price overrides and trial estimates (what a request's budget reservation is)."""


@pricing.command("show")
@click.pass_obj
def pricing_show(obj: tuple[AdminClient, bool]) -> None:
    """Every model override and deployment rate."""
    client, as_json = obj
    data = client.request("GET", "/admin/v1/pricing")

    def render() -> None:
        models = [
            {"model_id": k, **v, "rules": _rules_text(v.get("rules", []))}
            for k, v in data["models"].items()
        ]
        _table("Model price overrides", models, [*MODEL_PRICE_COLUMNS, "rules"])
        deployments = [{"deployment_id": k, **v} for k, v in data["deployments"].items()]
        _table("Deployment rates", deployments, DEPLOYMENT_PRICE_COLUMNS)

    _output(as_json, data, render)


@pricing.command("set-model")
@click.argument("model_id")
@click.option("--unit-price", type=float, help="USD per output or per second.")
@click.option("--unit", type=click.Choice(["output", "second"]), help="What the price is per.")
@click.option("--units-param", help="The input that counts outputs or seconds.")
@click.option("--default-units", type=float, help="Units when the request names none.")
@click.option(
    "--rule",
    "rules",
    multiple=True,
    help="PARAM=VALUE:USD sets the unit price, PARAM=VALUE:xN multiplies it; applied in order.",
)
@click.pass_obj
def pricing_set_model(
    obj: tuple[AdminClient, bool],
    model_id: str,
    unit_price: float | None,
    unit: str | None,
    units_param: str | None,
    default_units: float | None,
    rules: tuple[str, ...],
) -> None:
    """Replace MODEL_ID's price override (options not given are not kept)."""
    client, as_json = obj
    body = {
        "unit_price_usd": unit_price,
        "price_unit": unit,
        "units_param": units_param,
        "default_units": default_units,
        "rules": [_parse_rule(r) for r in rules] or None,
    }
    path = f"/admin/v1/pricing/models/{quote(model_id, safe='/')}"
    data = client.request("PUT", path, {k: v for k, v in body.items() if v is not None})
    row = {**data, "rules": _rules_text(data.get("rules", []))}
    _output(
        as_json,
        data,
        lambda: _table("Model price override", [row], [*MODEL_PRICE_COLUMNS, "rules"]),
    )


@pricing.command("clear-model")
@click.argument("model_id")
@click.pass_obj
def pricing_clear_model(obj: tuple[AdminClient, bool], model_id: str) -> None:
    """Drop MODEL_ID's override: the catalog price applies again."""
    client, as_json = obj
    data = client.request("DELETE", f"/admin/v1/pricing/models/{quote(model_id, safe='/')}")
    _output(
        as_json, data, lambda: console.print(f"Cleared the override of [bold]{model_id}[/bold].")
    )


@pricing.command("set-deployment")
@click.argument("deployment_id")
@click.option("--usd-per-second", type=float, required=True, help="GPU rate in USD per second.")
@click.option("--seconds", type=float, required=True, help="Expected run time of one job.")
@click.pass_obj
def pricing_set_deployment(
    obj: tuple[AdminClient, bool], deployment_id: str, usd_per_second: float, seconds: float
) -> None:
    """Set DEPLOYMENT_ID's GPU rate and expected run time."""
    client, as_json = obj
    body = {"usd_per_second": usd_per_second, "estimated_seconds": seconds}
    data = client.request("PUT", f"/admin/v1/pricing/deployments/{deployment_id}", body)
    _output(as_json, data, lambda: _table("Deployment rate", [data], DEPLOYMENT_PRICE_COLUMNS))


@pricing.command("clear-deployment")
@click.argument("deployment_id")
@click.pass_obj
def pricing_clear_deployment(obj: tuple[AdminClient, bool], deployment_id: str) -> None:
    """Forget DEPLOYMENT_ID's rate: its requests are estimated as unknown again."""
    client, as_json = obj
    data = client.request("DELETE", f"/admin/v1/pricing/deployments/{deployment_id}")
    _output(
        as_json, data, lambda: console.print(f"Cleared the rate of [bold]{deployment_id}[/bold].")
    )


@pricing.command("estimate")
@click.option("--model", "model_id", help="A Model API model id.")
@click.option("--deployment", "deployment_id", help="A Serverless deployment id.")
@click.option("--body", default="{}", show_default=True, help="The request body, as JSON.")
@click.pass_obj
def pricing_estimate(
    obj: tuple[AdminClient, bool], model_id: str | None, deployment_id: str | None, body: str
) -> None:
    """What the gateway would reserve for one request, and how it got there."""
    client, as_json = obj
    if (model_id is None) == (deployment_id is None):
        raise click.UsageError("give exactly one of --model and --deployment")
    try:
        inputs = json.loads(body)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--body") from None
    query = {"model_id": model_id, "deployment_id": deployment_id, "body": inputs}
    data = client.request(
        "POST", "/admin/v1/pricing/estimate", {k: v for k, v in query.items() if v is not None}
    )
    row = {**data, "cost": _dollars(data["micro"]), "notes": "; ".join(data["notes"])}
    _output(as_json, data, lambda: _table("Estimate", [row], ESTIMATE_COLUMNS))
