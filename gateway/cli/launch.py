"""Starting a server process: bind first, claim the data directory, then run the app until a
signal. Imported by ``serve``, ``simulator`` and ``demo`` when they run, never by ``--help``
or the admin commands: it loads the web layer."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import IO

import click
from aiohttp import web

from gateway.settings import Settings
from gateway.web.serving import CannotStart, claim_data_dir, listen


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


def bind(host: str, port: int, **options: str) -> list[socket.socket]:
    """Bound before anything starts: a taken port is one line and exit code 1."""
    try:
        return listen(host, port, **options)
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
