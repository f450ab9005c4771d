"""``runcomfy-gateway config``, and the settings every command that runs the gateway loads."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from gateway.settings import Settings


def load_settings(**overrides: Any) -> Settings:
    """The settings from ``GATEWAY_*`` variables and ``overrides`` (``None`` ones left out);
    invalid ones are one line each and exit code 2, not a traceback."""
    from pydantic import ValidationError

    from gateway.settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False):
            name = "GATEWAY_" + "_".join(str(p) for p in error["loc"]).upper()
            click.echo(f"configuration error: {name}: {error['msg']}", err=True)
        sys.exit(2)


@click.command("config")
@click.option("--markdown", is_flag=True, help="Print the settings as a Markdown table.")
def config(markdown: bool) -> None:
    """Show the gateway's settings (from GATEWAY_* variables), secrets hidden."""
    from gateway.settings import settings_table

    if markdown:
        click.echo(settings_table())
        return
    settings = load_settings()
    for name, value in settings.model_dump().items():
        click.echo(f"GATEWAY_{name.upper()}={value}")
