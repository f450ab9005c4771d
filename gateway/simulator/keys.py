"""Every ``web.AppKey`` the simulator stores on its application."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from gateway.simulator.routing import RouteTable
from gateway.simulator.state import SimState

SIM_STATE: Final = web.AppKey("sim_state", SimState)
"""The mutable simulator state: jobs, balance, counters, faults, config."""
SIM_ROUTES: Final = web.AppKey("sim_routes", RouteTable)
"""Route names for the call log and fault rules."""
