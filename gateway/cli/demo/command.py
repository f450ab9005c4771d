"""``runcomfy-gateway demo``: its options and help; what it starts is imported when it runs."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("demo")
@click.option("--host", default=None, help="Listen address (GATEWAY_HOST, default 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Listen port (GATEWAY_PORT, default 8080).")
@click.option(
    "--data-dir",
    default=None,
    type=click.Path(path_type=Path),
    help="Where the demo keeps its Redis and credentials. Default: demo/ in the data directory "
    "(GATEWAY_DATA_DIR; unset, your user's, e.g. ~/.local/share/runcomfy-gateway).",
)
def demo(host: str | None, port: int | None, data_dir: Path | None) -> None:
    """Gateway + simulator + embedded Redis in one process, with a ready team key; the same
    admin token and key on every start."""
    from gateway.cli.demo.start import run_demo

    run_demo(host, port, data_dir)
