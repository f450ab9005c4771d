"""Build and run the simulator: one aiohttp app serving the Model API and Serverless API."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Sequence

from aiohttp import web

from gateway.simulator import catalog_api, control_api, deployments_api, model_api, serverless_api
from gateway.simulator.catalog import Catalog
from gateway.simulator.config import SimulatorConfig
from gateway.simulator.keys import SIM_ROUTES, SIM_STATE
from gateway.simulator.middlewares import MIDDLEWARES
from gateway.simulator.routing import RouteTable
from gateway.simulator.state import SimState

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024 * 1024 + 1024
"""RunComfy clients send inputs inline as data URIs, up to 64 MiB."""


def create_simulator_app(config: SimulatorConfig | None = None) -> web.Application:
    """A fresh simulator; point both upstream base URLs (Model API, Serverless) at it."""
    config = config or SimulatorConfig()
    app = web.Application(middlewares=MIDDLEWARES, client_max_size=MAX_BODY_BYTES)
    app[SIM_STATE] = SimState(config, Catalog.load(config.catalog_path))
    routes = RouteTable()
    catalog_api.register(app, routes)  # before model_api: "categories" is a reserved model id
    model_api.register(app, routes)
    serverless_api.register(app, routes)
    deployments_api.register(app, routes)
    control_api.register(app)
    app[SIM_ROUTES] = routes
    return app


async def run_simulator(
    host: str,
    port: int,
    config: SimulatorConfig,
    sockets: Sequence[socket.socket] = (),
) -> None:
    """Serve until cancelled (``runcomfy-gateway simulator --port P``), on ``sockets`` when
    given (bound beforehand, so a taken port is the caller's one line), else on host:port."""
    runner = web.AppRunner(create_simulator_app(config))
    await runner.setup()
    try:
        sites: list[web.BaseSite] = [web.SockSite(runner, sock) for sock in sockets]
        sites = sites or [web.TCPSite(runner, host, port)]
        for site in sites:
            await site.start()
        logger.info("RunComfy simulator listening on %s", ", ".join(map(str, runner.addresses)))
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
