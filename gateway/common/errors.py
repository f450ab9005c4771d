"""The gateway's exception tree; one middleware renders each into RunComfy's error shape.

Every error a client sees is ``{"error_code": int, "error_message": str, "detail": ...}``, the
shape RunComfy itself answers with, so existing clients parse gateway errors unchanged.

    GatewayError                      500 500001  unexpected failure inside the gateway
    ├── ClientError                   (the caller's fault: 4xx)
    │   ├── BadRequest                400 400001  malformed JSON, bad identifiers
    │   ├── Unauthorized              401 401001  missing, unknown, expired or revoked key
    │   ├── Forbidden                 403 403001  a team key on an admin-only route
    │   ├── QuotaRefused              (a team limit; the message names it)
    │   │   ├── BudgetExhausted       402 402001  the period's budget cannot cover the estimate
    │   │   ├── RequestTooExpensive   402 402002  the estimate exceeds the per-request cap
    │   │   ├── AccessDenied          403 403002  a model or deployment not on the team's list
    │   │   ├── RateLimitExceeded     429 429002  submit rate or submits per day
    │   │   ├── QueueFull             429 429003  the team's queue of waiting submits is full
    │   │   └── PollRateExceeded      429 429004  status/result polls of one key, too fast
    │   ├── NotFound                  404 404001  unknown route, model or request id
    │   ├── MethodNotAllowed          405 405001
    │   ├── RequestTimeout            408 408001  the request body did not arrive in time
    │   ├── Conflict                  409 409001  e.g. a team id that already exists
    │   ├── PayloadTooLarge           413 413001
    │   ├── UnsupportedMediaType      415 415001  a Content-Encoding other than gzip or deflate
    │   ├── ValidationFailed          422 422001  admin API bodies that fail validation
    │   └── UpstreamClientError       (any)       RunComfy's own 4xx for the team's input, passed on
    └── ServiceError                  (the gateway's or RunComfy's fault: 5xx)
        ├── UpstreamBadGateway        502 502001  RunComfy answered 5xx, garbage or hung up
        │   └── UpstreamAuthRejected  502 502002  RunComfy rejected the *gateway's* token
        ├── UpstreamRateLimited       429 429001  RunComfy is rate-limiting the gateway's account
        ├── UpstreamUnavailable       503 503001  RunComfy unreachable
        │   └── CircuitOpen           503 503001  RunComfy kept failing: not called for a while
        ├── UpstreamAccountError      503 503002  the *gateway's* RunComfy balance or account
        ├── StoreUnavailable          503 503003  Redis unreachable
        ├── GatewayBusy               503 503004  too many large bodies at once; retry shortly
        ├── UpstreamTimeout           504 504001  RunComfy did not answer in time
        └── SubmitOutcomeUnknown      504 504002  a submit may or may not have started a job

The gateway's own failures are never reported with the codes a team would read as *its* auth or
balance problem (401/402): a rejected upstream token is a 502, an empty gateway account a 503.
"""

from __future__ import annotations

from typing import Any, ClassVar


class GatewayError(Exception):
    """Base of every error the gateway renders; subclasses fix status and code."""

    status: int = 500
    error_code: int = 500001
    default_message: ClassVar[str] = "The gateway failed to handle the request."

    def __init__(self, message: str | None = None, detail: Any = None) -> None:
        self.message = message or self.default_message
        self.detail = detail if detail is not None else ""
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        """The JSON body of the error response."""
        return {"error_code": self.error_code, "error_message": self.message, "detail": self.detail}

    def headers(self) -> dict[str, str]:
        """Extra response headers (e.g. ``Retry-After``)."""
        return {}


class ClientError(GatewayError):
    """The caller's request cannot be served as sent."""

    status = 400
    error_code = 400001
    default_message = "The request is invalid."


class BadRequest(ClientError):
    pass


class Unauthorized(ClientError):
    status = 401
    error_code = 401001
    default_message = "Missing or invalid API key."

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="runcomfy-gateway"'}


class Forbidden(ClientError):
    status = 403
    error_code = 403001
    default_message = "Permission denied."


class NotFound(ClientError):
    status = 404
    error_code = 404001
    default_message = "Resource not found."


class MethodNotAllowed(ClientError):
    status = 405
    error_code = 405001
    default_message = "Method not allowed on this resource."

    def __init__(self, allowed: list[str]) -> None:
        super().__init__(detail={"allowed_methods": allowed})
        self._allowed = allowed

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self._allowed)}  # RFC 9110: a 405 must list what is allowed


class RequestTimeout(ClientError):
    status = 408
    error_code = 408001
    default_message = "The request body was not received in time."

    def headers(self) -> dict[str, str]:
        return {"Connection": "close"}


class Conflict(ClientError):
    status = 409
    error_code = 409001
    default_message = "The resource already exists."


class PayloadTooLarge(ClientError):
    status = 413
    error_code = 413001
    default_message = "The request body is too large."


class UnsupportedMediaType(ClientError):
    status = 415
    error_code = 415001
    default_message = "The request body's Content-Encoding is not supported."


class ValidationFailed(ClientError):
    status = 422
    error_code = 422001
    default_message = "The request body failed validation."


class UpstreamClientError(ClientError):
    """A 4xx from RunComfy about the team's own input, passed through with RunComfy's body."""

    def __init__(self, status: int, body: dict[str, Any], retry_after: str | None = None) -> None:
        self._body = body
        self._retry_after = retry_after
        super().__init__(str(body.get("error_message") or "RunComfy refused the request."))
        self.status = status

    def body(self) -> dict[str, Any]:
        return self._body

    def replace_body(self, body: dict[str, Any]) -> None:
        self._body = body

    def headers(self) -> dict[str, str]:
        return {"Retry-After": self._retry_after} if self._retry_after else {}


class QuotaRefused(ClientError):
    """A team limit refused the request; carries ``Retry-After`` and RateLimit headers. Always
    raised with a message naming the limit; ``default_message`` is what the API docs show."""

    def __init__(
        self, message: str, detail: Any = None, extra_headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message, detail)
        self._headers = extra_headers or {}

    def headers(self) -> dict[str, str]:
        return self._headers


class BudgetExhausted(QuotaRefused):
    status = 402
    error_code = 402001
    default_message = "The team's budget for this period cannot cover the request's estimated cost."


class RequestTooExpensive(QuotaRefused):
    status = 402
    error_code = 402002
    default_message = "The request's estimated cost exceeds the team's per-request cap."


class AccessDenied(QuotaRefused):
    status = 403
    error_code = 403002
    default_message = "The model or deployment is not on the team's list."


class RateLimitExceeded(QuotaRefused):
    status = 429
    error_code = 429002
    default_message = "A submit rate or daily limit of the team or key is reached; retry later."


class QueueFull(QuotaRefused):
    status = 429
    error_code = 429003
    default_message = "The team's queue of waiting submits is full; retry later."


class PollRateExceeded(QuotaRefused):
    status = 429
    error_code = 429004
    default_message = "Status and result polls of this key come too fast; retry later."


class ServiceError(GatewayError):
    """The gateway or RunComfy failed; the caller's request may be fine."""


class UpstreamBadGateway(ServiceError):
    status = 502
    error_code = 502001
    default_message = "The gateway's upstream (RunComfy) returned an invalid response."


class UpstreamAuthRejected(UpstreamBadGateway):
    error_code = 502002
    default_message = (
        "RunComfy rejected the gateway's own credentials; this is a gateway configuration "
        "problem, not a problem with your API key. Operators have been alerted in the logs."
    )


class UpstreamRateLimited(ServiceError):
    status = 429
    error_code = 429001
    default_message = "RunComfy is rate-limiting the gateway's account; retry later."

    def __init__(self, retry_after: str | None = None) -> None:
        super().__init__()
        self._retry_after = retry_after or "5"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": self._retry_after}


class UpstreamUnavailable(ServiceError):
    status = 503
    error_code = 503001
    default_message = "The gateway's upstream (RunComfy) is unreachable; retry later."

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "5"}


class CircuitOpen(UpstreamUnavailable):
    """The circuit breaker refused the call: nothing was sent (:mod:`gateway.upstream.breaker`)."""

    default_message = (
        "The gateway's upstream (RunComfy) has been failing, so the gateway stops calling it for "
        "a few seconds; nothing was sent. Retry after the time in Retry-After."
    )

    def __init__(self, retry_after: int) -> None:
        super().__init__(detail="circuit_open")
        self.retry_after = max(1, retry_after)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class UpstreamAccountError(ServiceError):
    status = 503
    error_code = 503002
    default_message = (
        "The gateway's RunComfy account cannot run jobs right now (balance or account problem); "
        "this is not a problem with your team's account. Retry later or contact the operators."
    )

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "60"}


class StoreUnavailable(ServiceError):
    status = 503
    error_code = 503003
    default_message = "The gateway's state store (Redis) is unavailable; retry shortly."

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "2"}


class GatewayBusy(ServiceError):
    status = 503
    error_code = 503004
    default_message = "The gateway is busy; retry shortly."

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class UpstreamTimeout(ServiceError):
    status = 504
    error_code = 504001
    default_message = "The gateway's upstream (RunComfy) did not answer in time."


class SubmitOutcomeUnknown(ServiceError):
    status = 504
    error_code = 504002
    default_message = (
        "The submit reached RunComfy but no answer came back, so whether a job was started is "
        "unknown. The gateway did not retry it (that could pay for the generation twice) and "
        "recorded it for reconciliation."
    )
