"""A faithful stand-in for RunComfy's Model API and Serverless API, for tests and local runs.

One aiohttp app serves both APIs with RunComfy's exact paths, bodies, status codes and error
shapes (see docs/architecture.md, "The simulator"), plus a test-only control API under ``/_sim/``
for call counters, fault injection, scripted outcomes and simulated time.
"""

from gateway.simulator.app import create_simulator_app, run_simulator
from gateway.simulator.config import SimulatorConfig
from gateway.simulator.keys import SIM_ROUTES, SIM_STATE
from gateway.simulator.state import SimState

__all__ = [
    "SIM_ROUTES",
    "SIM_STATE",
    "SimState",
    "SimulatorConfig",
    "create_simulator_app",
    "run_simulator",
]
