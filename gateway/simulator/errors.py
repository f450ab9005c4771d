"""RunComfy's error shape and the errors handlers raise (rendered by ``middlewares.errors``).

Clients parse ``{"error_code", "error_message", "detail"}`` on any non-2xx answer, so even the
router's own 404/405 and unexpected crashes are rendered that way, never as aiohttp's HTML.
"""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web

from gateway.simulator.jsonio import json_response

ApiFamily = Literal["model", "serverless"]

MODEL_AUTH_CODE = 400004
"""Model API ``UserAccountError``: bad or expired token."""
SERVERLESS_AUTH_CODE = 401001
INSUFFICIENT_BALANCE_CODE = 400002
"""``InsufficientResources``: the account has no balance left."""


def api_family(path: str) -> ApiFamily:
    """Which API a path belongs to; the two use different codes for the same failure."""
    return "serverless" if path.startswith("/prod/") else "model"


def default_error_code(status: int, family: ApiFamily) -> int:
    """The code RunComfy pairs with an HTTP status, falling back to ``status * 1000 + 1``."""
    if status == 401:
        return SERVERLESS_AUTH_CODE if family == "serverless" else MODEL_AUTH_CODE
    if status == 402:
        return INSUFFICIENT_BALANCE_CODE
    return status * 1000 + 1


def error_body(error_code: int, message: str, detail: Any = "") -> dict[str, Any]:
    """The JSON body of every error answer."""
    return {"error_code": error_code, "error_message": message, "detail": detail}


class SimError(Exception):
    """A RunComfy-shaped error raised by handlers and rendered by :func:`error_middleware`."""

    def __init__(
        self,
        status: int,
        error_code: int,
        message: str,
        detail: Any = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.detail = detail
        self.headers = headers or {}

    def response(self) -> web.Response:
        """The HTTP answer for this error."""
        return json_response(
            error_body(self.error_code, self.message, self.detail),
            status=self.status,
            headers=self.headers,
        )


def bad_request(message: str, detail: Any = "") -> SimError:
    """400 400001: the body or a parameter cannot be used at all."""
    return SimError(400, 400001, message, detail)


def not_found(message: str, detail: Any = "") -> SimError:
    """404 404001: unknown model, request id, deployment or route."""
    return SimError(404, 404001, message, detail)


def validation_failed(message: str, detail: list[dict[str, Any]]) -> SimError:
    """422 422001 with a ``detail`` array of ``{"loc", "msg", "type"}`` entries."""
    return SimError(422, 422001, message, detail)


def unauthorized(family: ApiFamily) -> SimError:
    """401 with the code each API uses for a missing or wrong token."""
    return SimError(
        401,
        default_error_code(401, family),
        "Invalid or expired API token.",
        "Send 'Authorization: Bearer <token>' with a valid API token.",
        headers={"WWW-Authenticate": "Bearer"},
    )


def insufficient_balance(balance_usd: float) -> SimError:
    """402 400002: clients special-case 402 as "top up your balance"."""
    return SimError(
        402,
        INSUFFICIENT_BALANCE_CODE,
        "Insufficient balance to run this request.",
        f"Account balance is {balance_usd:.6f} USD.",
    )
