"""``runcomfy-gateway simulator``: the RunComfy stand-in, imported only when it runs."""

from __future__ import annotations

import contextlib

import click


@click.command("simulator")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8188, type=int, show_default=True)
@click.option("--token", default="sim-token", show_default=True, help="Accepted bearer token.")
@click.option("--queue-seconds", default=1.0, type=float, show_default=True)
@click.option("--run-seconds", default=3.0, type=float, show_default=True)
def simulator(host: str, port: int, token: str, queue_seconds: float, run_seconds: float) -> None:
    """Run the RunComfy simulator (both APIs, catalog, faults, call counters)."""
    import asyncio

    from gateway.cli import launch
    from gateway.simulator import SimulatorConfig, run_simulator
    from gateway.web.serving import urls

    config = SimulatorConfig(token=token, queue_seconds=queue_seconds, run_seconds=run_seconds)
    sockets = launch.bind(host, port, ports="--port", hosts="--host")
    click.echo(f"RunComfy simulator on {', '.join(urls(sockets))} (token {token!r})")
    launch.install_uvloop()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_simulator(host, port, config, sockets))
