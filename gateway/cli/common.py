"""What every admin command shares: the ``admin`` group with its ``--url``, ``--token`` and
``--json`` (written anywhere on the command line), the client of the admin API, how answers are
shown (tables or JSON) and how failures are said.

Imports stay light on purpose: ``--help`` and completion load click and this module only;
asyncio and aiohttp are imported when a request is made, rich when something is shown.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

import click

from gateway.cli.params import gateway_url

if TYPE_CHECKING:
    import aiohttp
    from rich.console import Console

REQUEST_TIMEOUT_SECONDS = 30
FREE_TEXT = frozenset({"name", "notes", "rules"})
"""Columns whose values may wrap at spaces; every other value (ids, prefixes, actions, times)
is shown whole or the table turns into one record per row: a cut id is one nobody can paste."""

_JSON = "runcomfy_gateway.admin.json"
_CONSOLE = "runcomfy_gateway.admin.console"


class AdminClient:
    """A small client of the admin API, so the CLI works against any replica, local or remote."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url.rstrip("/")
        self.token = token

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The answer's JSON; any failure is a :class:`click.ClickException` that says what
        came back (or why nothing did), never a traceback."""
        import asyncio

        import aiohttp

        if not self.token:
            raise click.UsageError(
                "an admin token is needed: give --token or set GATEWAY_ADMIN_TOKEN"
            )
        try:
            return asyncio.run(self._fetch(method, self.url + path, body))
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            if isinstance(exc, TimeoutError):
                reason = f"no answer within {REQUEST_TIMEOUT_SECONDS} s"
            raise click.ClickException(
                f"cannot reach the gateway at {self.url} ({reason}); "
                "check --url or GATEWAY_ADMIN_URL"
            ) from None

    async def _fetch(self, method: str, url: str, body: dict[str, Any] | None) -> Any:
        import aiohttp

        headers = {"Authorization": f"Bearer {self.token}"}
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
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
                raise click.ClickException(error_text(resp.status, data))
            return data


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


def error_text(status: int, data: Any) -> str:
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


# --- output ------------------------------------------------------------------------------------


def _console() -> Console:
    """This invocation's console, made on first use: it measures the terminal (or ``COLUMNS``)
    of this command, not of whatever ran before in the same process."""
    from rich.console import Console

    ctx = click.get_current_context()
    console: Console | None = ctx.meta.get(_CONSOLE)
    if console is None:
        console = ctx.meta[_CONSOLE] = Console()
    return console


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def table(
    title: str, rows: list[dict[str, Any]], columns: list[str], wrap: Collection[str] = ()
) -> None:
    """Rows as a table when it fits the terminal without cutting a value, else as records;
    ``wrap`` names more columns that may wrap (lists, URLs). No rows: the title and ``(none)``,
    not a bare title or an empty frame."""
    from rich.measure import Measurement
    from rich.table import Table
    from rich.text import Text

    console = _console()
    if not rows:
        console.print(Text(title, style="italic"))
        click.echo("  (none)")
        return
    shown = Table(title=title)
    for column in columns:
        if column in FREE_TEXT or column in wrap:
            shown.add_column(column, overflow="fold")
        else:
            shown.add_column(column, no_wrap=True, min_width=len(column))
    for row in rows:
        shown.add_row(*(Text(_cell(row.get(c))) for c in columns))
    unbounded = console.options.update(max_width=1_000_000)
    if Measurement.get(console, unbounded, shown).minimum <= console.width:
        console.print(shown)
        return
    console.print(Text(title, style="italic"))
    width = max(len(c) for c in columns)
    for row in rows:
        click.echo("")
        for column in columns:
            click.echo(f"  {column:<{width}}  {_cell(row.get(column))}")


def say(text: str) -> None:
    """A line for people, with rich markup; what came from the gateway goes in :func:`escape`d."""
    _console().print(text)


def escape(text: str) -> str:
    """``text`` shown as written inside :func:`say`'s markup."""
    from rich.markup import escape as escape_markup

    return escape_markup(text)


def show_secret(what: str, secret: str) -> None:
    """A new secret on a line of its own, to copy; the gateway keeps only its hash."""
    _console().print(f"{what} (shown once, store it now):", style="bold")
    click.echo(secret)


def output(data: Any, render: Callable[[], None]) -> None:
    """``data`` as JSON under ``--json``, else as ``render`` shows it."""
    if click.get_current_context().meta.get(_JSON):
        click.echo(json.dumps(data, indent=2))
    else:
        render()


# --- the admin group and the options written anywhere ------------------------------------------


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
        client.url = gateway_url(ctx, param, value).rstrip("/")


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
    wherever people put them. Every admin command group is one (``cls=AdminGroup``)."""

    group_class = type  # its subgroups are AdminGroups too

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        taken = {p.name for p in cmd.params}
        cmd.params += [o for o in _anywhere_options() if o.name not in taken]
        super().add_command(cmd, name)


@click.group(cls=AdminGroup)
@click.option(
    "--url",
    envvar="GATEWAY_ADMIN_URL",
    callback=gateway_url,
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
    ctx.obj = AdminClient(url, token)


admin.params.append(_json_option())


def admin_variables() -> tuple[str, str]:
    """The variables ``runcomfy-gateway admin`` reads its gateway URL and token from."""
    found: dict[str, str] = {}
    for param in admin.params:
        envvar = param.envvar
        if param.name in ("url", "token") and envvar:
            found[param.name] = envvar if isinstance(envvar, str) else envvar[0]
    return found["url"], found["token"]
