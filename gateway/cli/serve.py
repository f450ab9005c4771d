"""``runcomfy-gateway serve``: the gateway.

The web layer is imported inside the command, so that ``--help`` and the admin commands do not
pay for it."""

from __future__ import annotations

import sys

import click

from gateway.cli.config import load_settings


@click.command("serve")
@click.option("--host", default=None, help="Listen address (GATEWAY_HOST).")
@click.option("--port", default=None, type=int, help="Listen port (GATEWAY_PORT).")
@click.option(
    "--role",
    type=click.Choice(["all", "api", "poller"]),
    default=None,
    help="all: serve and poll RunComfy; api: serve only; poller: poll only (GATEWAY_ROLE).",
)
def serve(host: str | None, port: int | None, role: str | None) -> None:
    """Run the gateway (embedded Redis unless GATEWAY_REDIS_URL is set)."""
    from gateway.cli import launch
    from gateway.observability.logs import configure_logging
    from gateway.web.app import MetricsListenerError, create_app, freeze_startup_objects
    from gateway.web.serving import log_listening, warn_about_old_data

    settings = load_settings(host=host, port=port, role=role)
    sockets = launch.bind(settings.host, settings.port)
    claimed = None if settings.redis_url else launch.claim(settings.data_dir)
    configure_logging(settings.log_level, settings.log_format, launch.secrets_of(settings))
    if not settings.redis_url:
        warn_about_old_data(settings.data_dir)
    app = create_app(settings)
    app.on_startup.append(freeze_startup_objects)  # runs after every cleanup_ctx has started
    app.on_startup.append(log_listening(sockets))
    try:
        launch.run(app, settings, sockets)
    except MetricsListenerError as exc:
        click.echo(f"cannot start: {exc}", err=True)
        sys.exit(2)
    del claimed  # held until here
