"""Starting a server process: bind first, claim the data directory, then run the app until a
signal. Imported by ``serve``, ``simulator`` and ``demo`` when they run, never by ``--help``
or the admin commands: it loads the web layer."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO

import click
from aiohttp import web

from gateway.observability.logs import configure_logging
from gateway.settings import Settings
from gateway.web.serving import (
    CannotStart,
    claim_data_dir,
    listen,
    listen_for_workers,
    log_listening,
    warn_about_old_data,
)


def install_uvloop() -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is absent on Windows only
        pass


def run(app: web.Application, settings: Settings, sockets: list[socket.socket]) -> None:
    """Serve ``app`` on the bound ``sockets`` until SIGINT or SIGTERM, then drain."""
    install_uvloop()
    web.run_app(
        app,
        sock=sockets,
        shutdown_timeout=settings.shutdown_grace_seconds,
        keepalive_timeout=settings.client_idle_timeout_seconds,  # also bounds slow headers
        access_log=None,
        print=None,
        handle_signals=True,
    )


def start_logging(settings: Settings) -> None:
    """The log as configured; and the hint about an older version's data, which it may hold."""
    configure_logging(settings.log_level, settings.log_format, secrets_of(settings))
    if not settings.redis_url:
        warn_about_old_data(settings.data_dir)


def serve_gateway(
    settings: Settings,
    sockets: list[socket.socket],
    started: Callable[[web.Application], Awaitable[None]] | None = None,
    prepare: Callable[[web.Application], None] | None = None,
) -> None:
    """Build the gateway, let ``prepare`` add to it, serve it on ``sockets`` until a signal;
    ``started`` runs once it answers. A metrics port it cannot listen on is one line, exit 2."""
    from gateway.web.app import MetricsListenerError, create_app, freeze_startup_objects

    app = create_app(settings)
    if prepare is not None:
        prepare(app)
    app.on_startup.append(freeze_startup_objects)  # runs after every cleanup_ctx has started
    app.on_startup.append(log_listening(sockets))
    if started is not None:
        app.on_startup.append(started)
    try:
        run(app, settings, sockets)
    except MetricsListenerError as exc:
        click.echo(f"cannot start: {exc}", err=True)
        sys.exit(2)


def bind(host: str, port: int, **options: str) -> list[socket.socket]:
    """Bound before anything starts: a taken port is one line and exit code 1."""
    try:
        return listen(host, port, **options)
    except CannotStart as exc:
        raise click.ClickException(str(exc)) from None


def bind_workers(host: str, port: int, workers: int, **options: str) -> list[list[socket.socket]]:
    """Each worker's sockets, bound before anything starts, as :func:`bind`."""
    try:
        return listen_for_workers(host, port, workers, **options)
    except CannotStart as exc:
        raise click.ClickException(str(exc)) from None


def claim(data_dir: Path) -> IO[str] | None:
    """The data directory's lock, held until the process ends; in use: one line, exit 1."""
    try:
        return claim_data_dir(data_dir)
    except CannotStart as exc:
        raise click.ClickException(str(exc)) from None


def secrets_of(settings: Settings) -> list[str]:
    """What the logs must never show."""
    return [settings.upstream_token.get_secret_value(), settings.admin_token.get_secret_value()]
