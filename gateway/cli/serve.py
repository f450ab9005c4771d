"""``runcomfy-gateway serve``: the gateway.

The web layer is imported inside the command, so that ``--help`` and the admin commands do not
pay for it."""

from __future__ import annotations

import sys

import click

from gateway.cli.config import load_settings


@click.command("serve")
@click.option(
    "--host",
    default=None,
    help="Listen address (GATEWAY_HOST; default 127.0.0.1, this machine only).",
)
@click.option("--port", default=None, type=int, help="Listen port (GATEWAY_PORT; default 8080).")
@click.option(
    "--workers",
    default=None,
    metavar="N|auto",
    help="Processes serving the port: a number, or auto for the CPUs this process may use "
    "(GATEWAY_WORKERS; default 1).",
)
@click.option(
    "--role",
    type=click.Choice(["all", "api", "poller"]),
    default=None,
    help="all: serve and poll RunComfy; api: serve only; poller: poll only (GATEWAY_ROLE; "
    "default all).",
)
@click.option("--worker", "worker", default=None, hidden=True, help="Set by the supervisor.")
def serve(
    host: str | None, port: int | None, workers: str | None, role: str | None, worker: str | None
) -> None:
    """Run the gateway (embedded Redis unless GATEWAY_REDIS_URL is set)."""
    from gateway.cli import launch, supervisor

    settings = load_settings(host=host, port=port, workers=workers, role=role)
    if worker is not None:
        supervisor.serve_worker(settings, supervisor.WorkerSpec.parse(worker))
        return
    count = supervisor.worker_count(settings.workers)
    if count > 1:
        sys.exit(supervisor.supervise(settings, count))
    sockets = launch.bind(settings.host, settings.port)
    claimed = None if settings.redis_url else launch.claim(settings.data_dir)
    launch.start_logging(settings)
    launch.serve_gateway(settings, sockets)
    del claimed  # held until here
