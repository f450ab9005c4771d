"""The ``runcomfy-gateway`` command line: serve, simulator, demo, admin and config."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shlex
import shutil
import socket
import sys
from collections.abc import AsyncIterator, Callable, Collection
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import aiohttp
import click
from aiohttp import web
from pydantic import SecretStr, ValidationError
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from gateway import __version__
from gateway.access.credentials import KEY_PREFIX
from gateway.observability.logs import configure_logging
from gateway.settings import Settings, settings_table
from gateway.web.appkeys import EMBEDDED_REDIS, TEAMS
from gateway.web.serving import (
    OLD_DATA_DIR,
    CannotStart,
    claim_data_dir,
    listen,
    log_listening,
    urls,
    warn_about_old_data,
)


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


def _run(app: web.Application, settings: Settings, sockets: list[socket.socket]) -> None:
    _install_uvloop()
    web.run_app(
        app,
        sock=sockets,
        shutdown_timeout=settings.shutdown_grace_seconds,
        keepalive_timeout=settings.client_idle_timeout_seconds,  # also bounds slow headers
        access_log=None,
        print=None,
        handle_signals=True,
    )


def _listen(host: str, port: int, **options: str) -> list[socket.socket]:
    """Bound before anything starts: a taken port is one line and exit code 1."""
    try:
        return listen(host, port, **options)
    except CannotStart as exc:
        raise click.ClickException(str(exc)) from None


def _claim(data_dir: Path) -> IO[str] | None:
    """The data directory's lock, held until the process ends; in use: one line, exit 1."""
    try:
        return claim_data_dir(data_dir)
    except CannotStart as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
@click.version_option(__version__, prog_name="runcomfy-gateway")
def main() -> None:
    """A caching, quota-enforcing gateway in front of the RunComfy APIs."""


@main.command()
@click.option("--host", default=None, help="Listen address (GATEWAY_HOST).")
@click.option("--port", default=None, type=int, help="Listen port (GATEWAY_PORT).")
def serve(host: str | None, port: int | None) -> None:
    """Run the gateway (embedded Redis unless GATEWAY_REDIS_URL is set)."""
    from gateway.web.app import MetricsListenerError, create_app, freeze_startup_objects

    settings = _load_settings(host=host, port=port)
    sockets = _listen(settings.host, settings.port)
    claimed = None if settings.redis_url else _claim(settings.data_dir)
    configure_logging(settings.log_level, settings.log_format, _secrets_of(settings))
    if not settings.redis_url:
        warn_about_old_data(settings.data_dir)
    app = create_app(settings)
    app.on_startup.append(freeze_startup_objects)  # runs after every cleanup_ctx has started
    app.on_startup.append(log_listening(sockets))
    try:
        _run(app, settings, sockets)
    except MetricsListenerError as exc:
        click.echo(f"cannot start: {exc}", err=True)
        sys.exit(2)
    del claimed  # held until here


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
    sockets = _listen(host, port, ports="--port", hosts="--host")
    click.echo(f"RunComfy simulator on {', '.join(urls(sockets))} (token {token!r})")
    _install_uvloop()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_simulator(host, port, config, sockets))


def _admin_variables() -> tuple[str, str]:
    """The variables ``runcomfy-gateway admin`` reads its gateway URL and token from."""
    found: dict[str, str] = {}
    for param in main.commands["admin"].params:
        envvar = param.envvar
        if param.name in ("url", "token") and envvar:
            found[param.name] = envvar if isinstance(envvar, str) else envvar[0]
    return found["url"], found["token"]


def _program() -> str:
    """How the user started this command, to print commands they can paste."""
    argv0 = sys.argv[0]
    if Path(argv0).name != "runcomfy-gateway":
        return f"{shlex.quote(sys.executable)} -m gateway"  # this Python has the gateway
    on_path = shutil.which("runcomfy-gateway")
    if on_path and Path(on_path).resolve() == Path(argv0).resolve():
        return "runcomfy-gateway"
    return shlex.quote(argv0)


def _shown_host(host: str) -> str:
    """Where a local client reaches a listener on ``host`` (any-address means loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


@main.command()
@click.option("--host", default=None, help="Listen address (GATEWAY_HOST, default 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Listen port (GATEWAY_PORT, default 8080).")
@click.option(
    "--data-dir",
    default=None,
    type=click.Path(path_type=Path),
    help="Where the demo keeps its Redis and credentials (default: the demo subdirectory of "
    "GATEWAY_DATA_DIR).",
)
def demo(host: str | None, port: int | None, data_dir: Path | None) -> None:
    """Gateway + simulator + embedded Redis in one process, with a ready team key; the same
    admin token and key on every start."""
    from gateway.cli import demo as credentials
    from gateway.simulator import SimulatorConfig, create_simulator_app
    from gateway.web.app import create_app

    base_settings = _load_settings(host=host, port=port)
    sockets = _listen(base_settings.host, base_settings.port)
    sim_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sim_sock.bind(("127.0.0.1", 0))
    sim_port = sim_sock.getsockname()[1]
    sim_config = SimulatorConfig(token=secrets.token_urlsafe(16))
    directory = data_dir if data_dir is not None else base_settings.data_dir / "demo"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    claimed = _claim(directory)
    admin_token = credentials.admin_token(directory, os.environ.get("GATEWAY_ADMIN_TOKEN", ""))
    port = sockets[0].getsockname()[1]
    base = f"http://{_shown_host(base_settings.host)}:{port}"
    specific = base_settings.host not in ("", "0.0.0.0", "::")
    settings = _load_settings(
        upstream_model_api_url=f"http://127.0.0.1:{sim_port}",
        upstream_serverless_url=f"http://127.0.0.1:{sim_port}",
        upstream_token=SecretStr(sim_config.token),
        admin_token=SecretStr(admin_token),
        redis_url="",
        data_dir=directory,
        # the URLs in answers are the ones printed below (on every interface, clients' own)
        public_url=base if specific else None,
        host=base_settings.host,
        port=port,
        log_format="console",
        log_level="warning",
    )
    configure_logging(settings.log_level, settings.log_format, _secrets_of(settings))
    warn_about_old_data(directory, OLD_DATA_DIR / "demo")
    app = create_app(settings)

    async def simulator_ctx(_: web.Application) -> AsyncIterator[None]:
        runner = web.AppRunner(create_simulator_app(sim_config), access_log=None)
        await runner.setup()
        await web.SockSite(runner, sim_sock).start()
        yield
        await runner.cleanup()

    async def announce(gateway: web.Application) -> None:
        demo_key = await credentials.team_key(gateway[TEAMS], directory)
        server = gateway[EMBEDDED_REDIS].info
        redis_text = f"{server.name} {server.version}" if server else "?"
        url_variable, token_variable = _admin_variables()
        auth = f'-H "Authorization: Bearer {demo_key.key}"'
        request = f"{base}/v1/requests/<request_id>"
        click.echo(
            f"\nruncomfy-gateway demo on {base} (RunComfy simulator on 127.0.0.1:{sim_port})\n"
            f"  data directory : {directory.resolve()} (embedded {redis_text})\n"
            f"  admin token    : {admin_token}\n"
            f"  team 'demo' key ({demo_key.info.prefix}) : {demo_key.key}\n"
            "  (the same token and key on every start: "
            f"{directory.resolve() / credentials.CREDENTIALS_FILE})\n\n"
            "Try, in another terminal:\n"
            f"  curl -s -X POST {base}/v1/models/google/nano-banana/pro/text-to-image \\\n"
            f'    {auth} -H "Content-Type: application/json" \\\n'
            f'    -d \'{{"prompt": "a lighthouse at dawn"}}\'\n'
            "then, with the request_id it answers (done after about 4 seconds):\n"
            f'  curl -s "{request}/status" {auth}\n'
            f'  curl -s "{request}/result?include_cost=true" {auth}\n\n'
            "For the admin command line (and $KEY for your own requests), paste:\n"
            f"  export {url_variable}={base} {token_variable}={shlex.quote(admin_token)} "
            f"KEY={demo_key.key}\n"
            f"  {_program()} admin teams list\n"
            "\nCtrl-C stops it.\n"
        )

    app.cleanup_ctx.insert(0, simulator_ctx)
    app.on_startup.append(announce)
    _run(app, settings, sockets)
    del claimed  # held until here


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

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url.rstrip("/")
        self.token = token

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The answer's JSON; any failure is a :class:`click.ClickException` that says what
        came back (or why nothing did), never a traceback."""
        if not self.token:
            raise click.UsageError(
                "an admin token is needed: give --token or set GATEWAY_ADMIN_TOKEN"
            )
        url = self.url + path

        async def go() -> Any:
            headers = {"Authorization": f"Bearer {self.token}"}
            timeout = aiohttp.ClientTimeout(total=30)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.request(method, url, json=body, headers=headers) as resp,
            ):
                text = await resp.text(errors="replace")
                try:
                    data = json.loads(text)
                except ValueError:
                    raise click.ClickException(_not_json(resp, text)) from None
                if resp.status >= 400:
                    raise click.ClickException(_error_text(resp.status, data))
                return data

        try:
            return asyncio.run(go())
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            if isinstance(exc, TimeoutError):
                reason = "no answer within 30 s"
            raise click.ClickException(
                f"cannot reach the gateway at {self.url} ({reason}); "
                "check --url or GATEWAY_ADMIN_URL"
            ) from None


def _not_json(resp: aiohttp.ClientResponse, text: str) -> str:
    """What came back when it was not the gateway's JSON: a proxy's HTML page, a bare 502."""
    excerpt = " ".join(re.sub(r"<[^>]*>", " ", text).split())
    if len(excerpt) > 200:
        excerpt = excerpt[:200] + "…"
    kind = resp.headers.get("Content-Type", "no content type")
    return (
        f"{resp.status} {resp.reason or ''}".rstrip()
        + f" from {resp.url}: not a JSON answer from the gateway ({kind})"
        + (f": {excerpt}" if excerpt else ", empty body")
    )


def _error_text(status: int, data: Any) -> str:
    """A RunComfy-shaped error as lines: the message, then each reason the detail gives."""
    if not isinstance(data, dict):
        return f"{status}: {json.dumps(data)}"
    lines = [f"{status}: {data.get('error_message') or json.dumps(data)}"]
    detail = data.get("detail")
    if isinstance(detail, list):
        for item in detail:
            if isinstance(item, dict) and "msg" in item:
                where = ".".join(str(part) for part in item.get("loc") or ())
                why = str(item["msg"]).removeprefix("Value error, ")  # pydantic's model checks
                lines.append(f"  {where}: {why}" if where else f"  {why}")
            else:
                lines.append(f"  {item if isinstance(item, str) else json.dumps(item)}")
    elif isinstance(detail, dict):
        lines += [f"  {k}: {v if isinstance(v, str) else json.dumps(v)}" for k, v in detail.items()]
    elif detail not in (None, ""):
        lines.append(f"  detail: {detail}")
    return "\n".join(lines)


_JSON = "runcomfy_gateway.admin.json"
_CONSOLE = "runcomfy_gateway.admin.console"
FREE_TEXT = frozenset({"name", "notes", "rules"})
"""Columns whose values may wrap at spaces; every other value (ids, prefixes, actions, times)
is shown whole or the table turns into one record per row: a cut id is one nobody can paste."""


def _console() -> Console:
    """This invocation's console; made at its start, so it measures the terminal (or
    ``COLUMNS``) of this command."""
    ctx = click.get_current_context()
    console: Console | None = ctx.meta.get(_CONSOLE)
    if console is None:
        console = ctx.meta[_CONSOLE] = Console()
    return console


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def _table(
    title: str, rows: list[dict[str, Any]], columns: list[str], wrap: Collection[str] = ()
) -> None:
    """Rows as a table when it fits the terminal without cutting a value, else as records;
    ``wrap`` names more columns that may wrap (lists, URLs)."""
    console = _console()
    table = Table(title=title)
    for column in columns:
        if column in FREE_TEXT or column in wrap:
            table.add_column(column, overflow="fold")
        else:
            table.add_column(column, no_wrap=True, min_width=len(column))
    for row in rows:
        table.add_row(*(Text(_cell(row.get(c))) for c in columns))
    unbounded = console.options.update(max_width=1_000_000)
    if Measurement.get(console, unbounded, table).minimum <= console.width:
        console.print(table)
        return
    console.print(Text(title, style="italic"))
    width = max(len(c) for c in columns)
    for row in rows:
        click.echo("")
        for column in columns:
            click.echo(f"  {column:<{width}}  {_cell(row.get(column))}")


def _say(text: str) -> None:
    """A line for people, with rich markup; what came from the gateway goes in escaped."""
    _console().print(text)


def _output(data: Any, render: Callable[[], None]) -> None:
    if click.get_current_context().meta.get(_JSON):
        click.echo(json.dumps(data, indent=2))
    else:
        render()


def _json_flag(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta[_JSON] = True  # meta is shared by the whole command line's contexts


def _json_option() -> click.Option:
    return click.Option(
        ["--json"],
        is_flag=True,
        expose_value=False,
        callback=_json_flag,
        help="Print JSON instead of tables (anywhere on the command line).",
    )


def _url_later(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    client = ctx.find_object(AdminClient)
    if value is not None and client is not None:
        client.url = _gateway_url(ctx, param, value).rstrip("/")


def _token_later(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    client = ctx.find_object(AdminClient)
    if value is not None and client is not None:
        client.token = value


def _anywhere_options() -> list[click.Option]:
    """``--json``, and ``--url``/``--token`` (described once, in ``admin --help``), for a
    command after which people write them."""
    return [
        _json_option(),
        click.Option(["--url"], expose_value=False, callback=_url_later, hidden=True),
        click.Option(["--token"], expose_value=False, callback=_token_later, hidden=True),
    ]


class AdminGroup(click.Group):
    """A group whose commands and subgroups all take ``--json``, ``--url`` and ``--token``,
    wherever people put them."""

    group_class = type  # its subgroups are AdminGroups too

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        taken = {p.name for p in cmd.params}
        cmd.params += [o for o in _anywhere_options() if o.name not in taken]
        super().add_command(cmd, name)


_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """Seconds, written as ``3600``, ``90s``, ``15m``, ``12h`` or ``30d``."""
    if value is None:
        return None
    match = re.fullmatch(r"(\d+)([smhd]?)", value.strip())
    if not match:
        raise click.BadParameter(f"{value!r} is not a duration like 3600, 90m, 12h or 30d")
    return int(match[1]) * _DURATION_UNITS[match[2]]


def _gateway_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """An http(s) URL, so ``localhost:8080`` is refused here rather than failing later."""
    if not re.match(r"https?://[^/]", value):
        raise click.BadParameter(f"{value!r}: give the gateway's URL, e.g. http://127.0.0.1:8080")
    return value


@main.group(cls=AdminGroup)
@click.option(
    "--url",
    envvar="GATEWAY_ADMIN_URL",
    callback=_gateway_url,
    default="http://127.0.0.1:8080",
    show_default=True,
    show_envvar=True,
    help="The gateway (any replica).",
)
@click.option(
    "--token",
    envvar="GATEWAY_ADMIN_TOKEN",
    show_envvar=True,
    help="An admin token: the gateway's bootstrap GATEWAY_ADMIN_TOKEN or a named rca_ token.",
)
@click.pass_context
def admin(ctx: click.Context, url: str, token: str | None) -> None:
    """Manage teams, API keys, limits, prices, dedup and admin tokens, and read usage and the
    audit log, through a running gateway's admin API.

    --url, --token and --json may also be written after the command and its arguments."""
    ctx.meta[_CONSOLE] = Console()
    ctx.obj = AdminClient(url, token)


admin.params.append(_json_option())


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


def _id_of(prefix: str) -> Callable[[click.Context, click.Parameter, str | None], str | None]:
    """An id argument that also takes what people have at hand: the public prefix a table shows
    (``rcg_<id>``) or the whole key or token (``rcg_<id>_<secret>``), e.g. to revoke a leak."""

    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value is None or not value.startswith(prefix):
            return value
        return value.removeprefix(prefix).split("_", 1)[0]

    return callback


def _show_secret(what: str, secret: str) -> None:
    _console().print(f"{what} (shown once, store it now):", style="bold")
    click.echo(secret)


@admin.group()
def teams() -> None:
    """Create, list, show and delete teams."""


@teams.command("list")
@click.pass_obj
def teams_list(client: AdminClient) -> None:
    """Every team."""
    data = client.request("GET", "/admin/v1/teams")
    _output(data, lambda: _table("Teams", data["teams"], TEAM_COLUMNS))


@teams.command("create")
@click.argument("team_id")
@click.option("--name", default=None, help="A display name (free text).")
@click.pass_obj
def teams_create(client: AdminClient, team_id: str, name: str | None) -> None:
    """A new team TEAM_ID (lower case letters, digits, - and _)."""
    data = client.request("POST", "/admin/v1/teams", {"team_id": team_id, "name": name})
    _output(data, lambda: _table("Team created", [data], TEAM_COLUMNS))


@teams.command("show")
@click.argument("team_id")
@click.pass_obj
def teams_show(client: AdminClient, team_id: str) -> None:
    """TEAM_ID and how many keys it has."""
    data = client.request("GET", f"/admin/v1/teams/{team_id}")
    _output(data, lambda: _table("Team", [data], [*TEAM_COLUMNS, "keys", "active_keys"]))


@teams.command("delete")
@click.argument("team_id")
@click.confirmation_option(prompt="Delete the team and revoke all its keys?")
@click.pass_obj
def teams_delete(client: AdminClient, team_id: str) -> None:
    """Delete TEAM_ID and revoke every key of it."""
    data = client.request("DELETE", f"/admin/v1/teams/{team_id}")
    _output(data, lambda: _say(f"Deleted team [bold]{escape(team_id)}[/bold]."))


@admin.group()
def keys() -> None:
    """Create, list, show, rotate and revoke API keys."""


@keys.command("create")
@click.argument("team_id")
@click.option("--name", default=None, help="What the key is for, e.g. laptop or ci.")
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
    client: AdminClient,
    team_id: str,
    name: str | None,
    expires_in: int | None,
    expires_at: str | None,
) -> None:
    """A new key for TEAM_ID, optionally expiring."""
    body = {"name": name, **_expiry(expires_in, expires_at)}
    data = client.request("POST", f"/admin/v1/teams/{team_id}/keys", body)

    def render() -> None:
        _table("Key created", [data], KEY_COLUMNS)
        _show_secret("API key", data["key"])

    _output(data, render)


@keys.command("rotate")
@click.argument("key_id", callback=_id_of(KEY_PREFIX))
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
    client: AdminClient,
    key_id: str,
    grace: int,
    expires_in: int | None,
    expires_at: str | None,
) -> None:
    """A new key in place of KEY_ID. Same team and name; the old one works for the grace."""
    body = {"grace_seconds": grace, **_expiry(expires_in, expires_at)}
    data = client.request("POST", f"/admin/v1/keys/{key_id}/rotate", body)

    def render() -> None:
        _table("Key rotated", [data["replaces"], data], KEY_COLUMNS)
        _show_secret("New API key", data["key"])

    _output(data, render)


@keys.command("list")
@click.argument("team_id")
@click.pass_obj
def keys_list(client: AdminClient, team_id: str) -> None:
    """TEAM_ID's keys, revoked and replaced ones included. Never the keys themselves."""
    data = client.request("GET", f"/admin/v1/teams/{team_id}/keys")
    _output(data, lambda: _table(f"Keys of {team_id}", data["keys"], KEY_COLUMNS))


@keys.command("show")
@click.argument("key_id", callback=_id_of(KEY_PREFIX))
@click.pass_obj
def keys_show(client: AdminClient, key_id: str) -> None:
    """One key by its id (its prefix or the key itself will do)."""
    data = client.request("GET", f"/admin/v1/keys/{key_id}")
    _output(data, lambda: _table("Key", [data], KEY_COLUMNS))


@keys.command("revoke")
@click.argument("key_id", callback=_id_of(KEY_PREFIX))
@click.pass_obj
def keys_revoke(client: AdminClient, key_id: str) -> None:
    """Revoke KEY_ID at once, on every replica. A rotation's grace ends too."""
    data = client.request("DELETE", f"/admin/v1/keys/{key_id}")
    _output(data, lambda: _table("Key revoked", [data], KEY_COLUMNS))


@admin.command("unknown-submits")
@click.argument("team_id")
@click.pass_obj
def unknown_submits(client: AdminClient, team_id: str) -> None:
    """Submits of TEAM_ID whose outcome is unknown. For reconciliation with RunComfy."""
    data = client.request("GET", f"/admin/v1/teams/{team_id}/unknown-submits")
    columns = ["request_id", "api", "target", "key_id", "created_at"]
    _output(data, lambda: _table("Unknown submits", data["requests"], columns))


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
    """Price overrides and trial estimates. An estimate is what a budget reserves."""


@pricing.command("show")
@click.pass_obj
def pricing_show(client: AdminClient) -> None:
    """Every model override and deployment rate."""
    data = client.request("GET", "/admin/v1/pricing")

    def render() -> None:
        models = [
            {"model_id": k, **v, "rules": _rules_text(v.get("rules", []))}
            for k, v in data["models"].items()
        ]
        _table("Model price overrides", models, [*MODEL_PRICE_COLUMNS, "rules"])
        deployments = [{"deployment_id": k, **v} for k, v in data["deployments"].items()]
        _table("Deployment rates", deployments, DEPLOYMENT_PRICE_COLUMNS)

    _output(data, render)


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
    metavar="PARAM=VALUE:USD|xN",
    help="PARAM=VALUE:USD sets the unit price, PARAM=VALUE:xN multiplies it; applied in order, "
    "repeatable. PARAM must be an input of the model and VALUE one it can take.",
)
@click.pass_obj
def pricing_set_model(
    client: AdminClient,
    model_id: str,
    unit_price: float | None,
    unit: str | None,
    units_param: str | None,
    default_units: float | None,
    rules: tuple[str, ...],
) -> None:
    """Replace MODEL_ID's price override. Options not given are not kept; the gateway checks
    it against the model's input schema in RunComfy's catalog."""
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
        data,
        lambda: _table("Model price override", [row], [*MODEL_PRICE_COLUMNS, "rules"]),
    )


@pricing.command("clear-model")
@click.argument("model_id")
@click.pass_obj
def pricing_clear_model(client: AdminClient, model_id: str) -> None:
    """Drop MODEL_ID's override. The catalog price applies again."""
    data = client.request("DELETE", f"/admin/v1/pricing/models/{quote(model_id, safe='/')}")
    _output(data, lambda: _say(f"Cleared the override of [bold]{escape(model_id)}[/bold]."))


@pricing.command("set-deployment")
@click.argument("deployment_id")
@click.option("--usd-per-second", type=float, required=True, help="GPU rate in USD per second.")
@click.option("--seconds", type=float, required=True, help="Expected run time of one job.")
@click.pass_obj
def pricing_set_deployment(
    client: AdminClient, deployment_id: str, usd_per_second: float, seconds: float
) -> None:
    """Set DEPLOYMENT_ID's GPU rate and expected run time."""
    body = {"usd_per_second": usd_per_second, "estimated_seconds": seconds}
    data = client.request("PUT", f"/admin/v1/pricing/deployments/{deployment_id}", body)
    _output(data, lambda: _table("Deployment rate", [data], DEPLOYMENT_PRICE_COLUMNS))


@pricing.command("clear-deployment")
@click.argument("deployment_id")
@click.pass_obj
def pricing_clear_deployment(client: AdminClient, deployment_id: str) -> None:
    """Forget DEPLOYMENT_ID's rate. Its requests are estimated as unknown again."""
    data = client.request("DELETE", f"/admin/v1/pricing/deployments/{deployment_id}")
    _output(data, lambda: _say(f"Cleared the rate of [bold]{escape(deployment_id)}[/bold]."))


@pricing.command("estimate")
@click.option("--model", "model_id", help="A Model API model id.")
@click.option("--deployment", "deployment_id", help="A Serverless deployment id.")
@click.option(
    "--body",
    default="{}",
    show_default=True,
    help="The request body as JSON, or @FILE to read it from a file (@- from stdin), as curl's -d.",
)
@click.pass_obj
def pricing_estimate(
    client: AdminClient, model_id: str | None, deployment_id: str | None, body: str
) -> None:
    """What the gateway would reserve for one request. It says how it got there."""
    if (model_id is None) == (deployment_id is None):
        raise click.UsageError("give exactly one of --model and --deployment")
    if body.startswith("@"):
        try:
            with click.open_file(body[1:], encoding="utf-8") as source:
                body = source.read()
        except OSError as exc:
            why = f"cannot read {body[1:]}: {exc.strerror}"
            raise click.BadParameter(why, param_hint="--body") from None
    try:
        inputs = json.loads(body)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--body") from None
    query = {"model_id": model_id, "deployment_id": deployment_id, "body": inputs}
    data = client.request(
        "POST", "/admin/v1/pricing/estimate", {k: v for k, v in query.items() if v is not None}
    )
    row = {**data, "cost": _dollars(data["micro"]), "notes": "; ".join(data["notes"])}
    _output(data, lambda: _table("Estimate", [row], ESTIMATE_COLUMNS))
