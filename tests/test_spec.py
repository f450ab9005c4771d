"""Rows of the operations table: the path a client calls and the errors a row documents."""

from __future__ import annotations

from dataclasses import replace

from aiohttp import web

from gateway.common.errors import (
    BadRequest,
    Forbidden,
    GatewayError,
    NotFound,
    StoreUnavailable,
    Unauthorized,
)
from gateway.web.spec import Auth, Ok, Operation, Param


async def nothing(request: web.Request) -> web.Response:
    return web.Response()


def row(route: str, auth: Auth = Auth.NONE) -> Operation:
    return Operation("GET", route, "op", "", "tag", auth, (Ok(200, {}, ""),), handler=nothing)


def test_a_one_word_variable_is_that_word_in_the_path_and_any_other_a_parameter() -> None:
    assert row("/v1/requests/{request_id}/{leaf:status}").path == "/v1/requests/{request_id}/status"
    assert row("/v1/models/{model_id:.+}").path == "/v1/models/{model_id}"
    assert row("/prod/{version:v1|v2}/x").path == "/prod/{version}/x"
    assert row("/healthz").path == "/healthz"


def test_a_row_documents_its_own_errors_and_those_of_its_kind_once_each() -> None:
    public = row("/healthz")
    assert public.all_errors() == (GatewayError,)
    guarded = replace(
        row("/admin/{team_id}", Auth.ADMIN),
        errors=(NotFound, Forbidden),
        params=(Param("team_id", "path", {}),),
        body={},
    )
    errors = guarded.all_errors()
    assert len(errors) == len(set(errors))
    assert {NotFound, Forbidden, Unauthorized, StoreUnavailable, BadRequest} <= set(errors)
    assert guarded.statuses() == [400, 401, 403, 404, 408, 413, 415, 500, 503]


def test_only_admin_and_catalog_rows_run_a_guard_before_their_handler() -> None:
    assert row("/x").guarded() is nothing
    assert row("/x", Auth.TEAM).guarded() is nothing
    assert row("/x", Auth.VIEWER).guarded() is not nothing
    assert row("/x", Auth.CATALOG).guarded() is not nothing
