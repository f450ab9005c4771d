"""The simulator's middlewares, outermost first.

1. errors: everything below may raise; render it in RunComfy's shape, never HTML.
2. calls: count every API call, including ones a fault or auth then rejects.
3. faults: injected failures come before auth, as a broken upstream would fail before
   looking at the token.
4. auth: the Bearer token, on API routes only (not ``/_sim/``, not unmatched paths).
"""

from __future__ import annotations

from aiohttp.typedefs import Middleware

from gateway.simulator.middlewares.auth import auth_middleware
from gateway.simulator.middlewares.calls import calls_middleware
from gateway.simulator.middlewares.errors import error_middleware
from gateway.simulator.middlewares.faults import fault_middleware

MIDDLEWARES: tuple[Middleware, ...] = (
    error_middleware,
    calls_middleware,
    fault_middleware,
    auth_middleware,
)
