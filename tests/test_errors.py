"""Errors as a client reads them: RunComfy's shape from every error class, a code that says
which error it is, the headers that tell a client what to do, and the tree the module
documents."""

from __future__ import annotations

import re

import orjson
import pytest

from gateway.common import errors
from gateway.common.errors import (
    CircuitOpen,
    ClientError,
    GatewayError,
    MethodNotAllowed,
    QuotaRefused,
    RateLimitExceeded,
    ServiceError,
    UpstreamClientError,
    UpstreamRateLimited,
)

RUNCOMFY_BODY = {"error_code": 422001, "error_message": "num_images must be <= 4", "detail": []}


def error_classes() -> list[type[GatewayError]]:
    """The tree of gateway/common/errors.py (not subclasses that other modules keep private
    and render as their parent, e.g. the sender's StoreUnavailable)."""
    found: list[type[GatewayError]] = [GatewayError]
    for cls in found:
        found += [sub for sub in cls.__subclasses__() if sub.__module__ == errors.__name__]
    return found


def example(cls: type[GatewayError]) -> GatewayError:
    """An instance as the gateway raises it, whatever the class's constructor wants."""
    if cls is MethodNotAllowed:
        return MethodNotAllowed(["GET", "POST"])
    if issubclass(cls, UpstreamClientError):
        return cls(422, dict(RUNCOMFY_BODY), retry_after="3")
    if issubclass(cls, UpstreamRateLimited):
        return cls(None)
    if issubclass(cls, CircuitOpen):
        return cls(4)
    if issubclass(cls, QuotaRefused):
        return cls("Limit reached.", {"limit": "rate"}, {"Retry-After": "7"})
    return cls()


def own_code(cls: type[GatewayError]) -> bool:
    return "error_code" in vars(cls)


def documented_tree() -> dict[str, tuple[int, int] | None]:
    """The module docstring's tree: class name to (status, code), None where it has none."""
    rows: dict[str, tuple[int, int] | None] = {}
    for line in (errors.__doc__ or "").splitlines():
        if match := re.match(r"^\s*(?:[│ ]*[├└]── )?([A-Z]\w+)\s+(?:(\d{3}) (\d{6}))?", line):
            name, status, code = match.groups()
            if hasattr(errors, name):
                rows[name] = (int(status), int(code)) if status else None
    return rows


@pytest.mark.parametrize("cls", error_classes(), ids=lambda c: c.__name__)
def test_every_error_renders_runcomfys_shape(cls: type[GatewayError]) -> None:
    body = example(cls).body()
    assert list(body) == ["error_code", "error_message", "detail"]
    assert isinstance(body["error_code"], int) and body["error_message"]
    orjson.dumps(body)  # a JSON body, whatever the detail


@pytest.mark.parametrize("cls", error_classes(), ids=lambda c: c.__name__)
def test_an_errors_code_starts_with_its_http_status(cls: type[GatewayError]) -> None:
    error = example(cls)
    assert error.body()["error_code"] // 1000 == error.status
    assert 400 <= error.status < 600


def test_each_error_the_gateway_names_has_its_own_code() -> None:
    """A client tells errors apart by code; a subclass that keeps its parent's code (CircuitOpen
    is an UpstreamUnavailable) means the same thing to the client."""
    coded = [cls for cls in error_classes() if own_code(cls)]
    codes = [cls.error_code for cls in coded]
    assert len(codes) == len(set(codes)), sorted(codes)
    assert [cls for cls in error_classes() if not own_code(cls)] == [
        ServiceError,
        errors.BadRequest,
        UpstreamClientError,
        QuotaRefused,
        CircuitOpen,
    ]


def test_the_callers_errors_are_4xx_and_the_gateways_own_never_read_as_the_teams() -> None:
    """A rejected upstream token or an empty RunComfy balance is never a 401 or a 402, which a
    team would read as a problem with its own key or budget."""
    for cls in error_classes():
        status = example(cls).status
        if issubclass(cls, ClientError):
            assert 400 <= status < 500, cls
        elif issubclass(cls, ServiceError):
            assert status >= 500 or cls is UpstreamRateLimited, cls
            assert status not in (401, 402, 403), cls


def test_an_error_says_when_to_retry_and_how_to_authenticate() -> None:
    for cls in error_classes():
        error = example(cls)
        if error.status in (429, 503):
            assert int(error.headers()["Retry-After"]) >= 1, cls
    assert example(errors.Unauthorized).headers()["WWW-Authenticate"].startswith("Bearer ")
    assert MethodNotAllowed(["GET", "POST"]).headers() == {"Allow": "GET, POST"}
    assert MethodNotAllowed(["GET"]).body()["detail"] == {"allowed_methods": ["GET"]}
    assert CircuitOpen(0).headers() == {"Retry-After": "1"}  # never "retry in 0 s"
    assert UpstreamRateLimited("12").headers() == {"Retry-After": "12"}
    assert errors.RequestTimeout().headers() == {"Connection": "close"}


def test_a_message_replaces_the_default_and_detail_is_never_null() -> None:
    assert errors.NotFound().body() == {
        "error_code": 404001,
        "error_message": "Resource not found.",
        "detail": "",
    }
    named = errors.NotFound("No request 'r1'.", detail={"request_id": "r1"})
    assert named.body()["error_message"] == "No request 'r1'." == str(named)
    assert named.body()["detail"] == {"request_id": "r1"}
    refused = RateLimitExceeded("Slow down.", None, None)
    assert refused.body()["detail"] == "" and refused.headers() == {}


def test_runcomfys_own_refusal_reaches_the_client_unchanged() -> None:
    error = UpstreamClientError(422, dict(RUNCOMFY_BODY), retry_after=None)
    assert (error.status, error.body(), error.headers()) == (422, RUNCOMFY_BODY, {})
    assert error.message == "num_images must be <= 4"
    assert UpstreamClientError(404, {}).message == "RunComfy refused the request."


def test_the_documented_tree_lists_every_error_with_its_status_and_code() -> None:
    tree = documented_tree()
    names = {cls.__name__ for cls in error_classes()}
    assert set(tree) == names, names ^ set(tree)
    for cls in error_classes():
        documented = tree[cls.__name__]
        if documented is None:
            continue
        assert documented == (cls.status, cls.error_code), cls.__name__
