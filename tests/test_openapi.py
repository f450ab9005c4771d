"""The OpenAPI document: valid, complete, served, and true of a live gateway (schemathesis)."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from schemathesis import APIOperation, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.web.operations import document, operations
from gateway.web.spec import Auth, Relayed, status_of
from tests.conftest import ADMIN_TOKEN, NANO, Gateway, Simulator, assert_error_shape

# Bounded so the run stays well under a minute on two shared cores; raise locally to dig deeper.
MAX_EXAMPLES = int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", "6"))
FUZZ_SEED = int(os.environ.get("GATEWAY_FUZZ_SEED", "20261125"))
# Not negative_data_rejection: admin bodies are validated in pydantic's lax mode, where `true`
# counts as 1 for a number, which that check reports; invalid input is still sent (negative
# cases) and must get a documented answer.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    ignored_auth,
]
_GROUP = re.compile(r"\(\?P<(?P<name>\w+)>")
_ALTERNATIVES = re.compile(r"^[\w-]+(\|[\w-]+)*$")


def _group_body(pattern: str, name: str) -> str:
    """The regex of named group ``name`` in an aiohttp route pattern (balanced parentheses)."""
    start = pattern.index(f"(?P<{name}>") + len(f"(?P<{name}>")
    depth = 1
    for at in range(start, len(pattern)):
        char = pattern[at]
        if char == "\\":
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0:
            return pattern[start:at]
    raise AssertionError(f"unbalanced group {name} in {pattern}")


def expand(resource: web.AbstractResource) -> list[str]:
    """The paths clients call for one aiohttp resource: ``{leaf:status|result}`` is two paths,
    any other variable stays a ``{name}`` parameter."""
    info = resource.get_info()
    if "path" in info:
        return [str(info["path"])]
    formatter, pattern = str(info["formatter"]), info["pattern"].pattern
    paths = [formatter]
    for name in _GROUP.findall(pattern):
        body = _group_body(pattern, name)
        if _ALTERNATIVES.match(body):
            paths = [p.replace(f"{{{name}}}", alt) for p in paths for alt in body.split("|")]
    return paths


def served(app: web.Application) -> set[tuple[str, str]]:
    return {
        (route.method, path)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None  # aiohttp adds a HEAD per GET
        for path in expand(route.resource)
    }


def documented() -> set[tuple[str, str]]:
    return {(op.method, op.path) for op in operations()}


def refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref":
                yield str(item)
            else:
                yield from refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from refs(item)


def test_the_document_is_valid_openapi_3_1_and_every_reference_resolves() -> None:
    doc = document()
    schemathesis.openapi.from_dict(doc).validate()
    for reference in set(refs(doc)):
        node: Any = doc
        for part in reference.removeprefix("#/").split("/"):
            node = node[part]
    ids = [op.operation_id for op in operations()]
    assert len(ids) == len(set(ids)), "operationIds must be unique"


async def test_every_route_is_documented_and_every_documented_operation_is_a_route(
    gateway: Gateway,
) -> None:
    routes, docs = served(gateway.app), documented()
    assert routes - docs == set(), "routes without a row in gateway/web/operations.py"
    assert docs - routes == set(), "rows in gateway/web/operations.py naming no route"
    assert len(operations()) == len(docs), "one row per method and path"


async def test_every_error_is_documented_in_runcomfys_shape_with_its_headers() -> None:
    doc = document()
    for op in operations():
        responses = doc["paths"][op.path][op.method.lower()]["responses"]
        for status in op.statuses():
            shared = doc["components"]["responses"][f"Error{status}"]
            assert responses[str(status)] == {"$ref": f"#/components/responses/Error{status}"}
            schema = shared["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}
            if status == 401:
                assert "WWW-Authenticate" in shared["headers"]
            if status in (429, 503):
                assert "Retry-After" in shared["headers"]
        if op.auth is not Auth.NONE:
            assert {"401", "403"} <= set(responses), op.operation_id
    assert doc["components"]["schemas"]["Error"]["required"] == [
        "error_code",
        "error_message",
        "detail",
    ]


def test_every_admin_answer_is_a_response_model_that_serializes_and_documents_it() -> None:
    schemas = document()["components"]["schemas"]
    admin_rows = [op for op in operations() if op.path.startswith("/admin/")]
    assert len(admin_rows) >= 30
    for op in admin_rows:
        for ok in op.ok:
            assert isinstance(ok.body, type) and issubclass(ok.body, BaseModel), op.operation_id
            assert ok.body.__name__ in schemas, op.operation_id


def test_every_error_class_a_row_names_is_an_example_of_its_status_with_its_code() -> None:
    responses = document()["components"]["responses"]
    for op in operations():
        for error in op.all_errors():
            shared = responses[f"Error{status_of(error)}"]
            if isinstance(error, Relayed):
                assert "passed on as RunComfy sent it" in shared["description"]
                continue
            example = shared["content"]["application/json"]["examples"][error.__name__]
            assert example["value"]["error_code"] == error.error_code, op.operation_id
            assert f"`{error.error_code}` {error.__name__}" in shared["description"]


async def test_the_gateway_serves_its_document_without_credentials(gateway: Gateway) -> None:
    status, body, headers = await gateway.request("GET", "/openapi.json")
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert body == document()


SLASHED = ("model_id", "target")  # ids with slashes: the route takes the rest of the path


def concrete(template: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: "a/b" if m[1] in SLASHED else "x1", template)


def matches(template: str, path: str) -> bool:
    pattern = re.sub(
        r"\\\{(\w+)\\\}",
        lambda m: ".+" if m[1] in SLASHED else "[^/]+",
        re.escape(template),
    )
    return re.fullmatch(pattern, path) is not None


async def test_an_undocumented_method_is_405_listing_the_allowed_ones_in_runcomfys_shape(
    gateway: Gateway,
) -> None:
    for path in {op.path for op in operations()}:
        url = concrete(path)
        allowed = {op.method for op in operations() if matches(op.path, url)}
        status, body, headers = await gateway.request("OPTIONS", url, key=ADMIN_TOKEN)
        assert status == 405, url
        assert_error_shape(body, 405001)
        listed = set(headers["Allow"].split(", ")) - {"HEAD"}  # aiohttp's add_get adds HEAD
        assert listed == allowed, url


# --- schemathesis against a live gateway ------------------------------------------------------


@dataclass
class Fixtures:
    """Credentials and ids that exist, so generated requests reach past the 404s."""

    url: str
    team_key: str
    known: dict[str, list[str]] = field(default_factory=dict)
    model_request: str = ""
    serverless_request: str = ""


def _order(path: str, method: str) -> tuple[int, str, str]:
    """Team routes first, then admin reads, changes, and deletions last (they end coverage of
    what they delete: a deleted team's key is refused from then on)."""
    admin = path.startswith(("/admin/", "/prod/v2/deployments", "/prod/v2/balance"))
    rank = 0 if not admin else {"GET": 1, "DELETE": 3}.get(method, 2)
    if method == "DELETE" and (path.endswith("/teams/{team_id}") or "/keys/" in path):
        rank = 4
    return rank, path, method


def exercise(
    cases: st.SearchStrategy[schemathesis.Case[Any]],
    weight: int,
    url: str,
    session: requests.Session,
    headers: dict[str, str],
    seen: Counter[str],
) -> None:
    """Send generated cases of one operation and check each answer against the document."""

    @seed(FUZZ_SEED)
    @settings(
        max_examples=MAX_EXAMPLES * weight,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def run(case: schemathesis.Case[Any]) -> None:
        response = case.call_and_validate(
            base_url=url, session=session, headers=headers, checks=CHECKS
        )
        seen[f"{case.operation.label} {response.status_code}"] += 1

    run()


def at_parameters(
    operation: APIOperation[Any, Any, Any, Any],
) -> Callable[[dict[str, str]], st.SearchStrategy[schemathesis.Case[Any]]]:
    """Cases of ``operation`` with these path parameters (ids that exist)."""

    def cases(params: dict[str, str]) -> st.SearchStrategy[schemathesis.Case[Any]]:
        return operation.as_strategy(path_parameters=params)

    return cases


def fuzz(fx: Fixtures) -> list[str]:
    """Run every operation's generated requests; the failures, one message each."""
    schema = schemathesis.openapi.from_dict(document())
    failures: list[str] = []
    seen: Counter[str] = Counter()
    session = requests.Session()
    team_headers = {"Authorization": f"Bearer {fx.team_key}"}
    admin_headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    found = [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]
    assert len(found) == len(operations()), "every operation of the document loads"
    auth = {(op.method, op.path): op.auth for op in operations()}
    started = time.monotonic()
    for operation in sorted(found, key=lambda o: _order(o.path, o.method.upper())):
        team = auth[(operation.method.upper(), operation.path)] is Auth.TEAM
        headers = team_headers if team else admin_headers
        names = [p.name for p in operation.path_parameters]
        known = {name: fx.known[name] for name in names if name in fx.known}
        if "request_id" in known:
            rid = fx.serverless_request if "/prod/" in operation.path else fx.model_request
            known["request_id"] = [rid]
        strategies = [
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        ]
        if names and len(known) == len(names):
            fixed = st.fixed_dictionaries({n: st.sampled_from(v) for n, v in known.items()})
            strategies.append(fixed.flatmap(at_parameters(operation)))

        try:
            exercise(st.one_of(strategies), len(strategies), fx.url, session, headers, seen)
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup is the latter
            failures.append(f"{operation.label}:\n{exc}")
    session.close()
    print("\n".join(f"{count:4d}  {what}" for what, count in sorted(seen.items())))
    failures.append(f"({seen.total()} requests in {time.monotonic() - started:.1f} s)")
    return failures


@pytest.mark.slow
async def test_schemathesis_finds_no_server_error_and_no_answer_off_the_document(
    gateway_factory: Any, simulator: Simulator
) -> None:
    gw: Gateway = await gateway_factory(webhook_allow_private=False)
    key = await gw.new_team("design", deployments=["*"])
    await gw.new_team("ops")
    _, keys = await gw.admin("GET", "/admin/v1/teams/design/keys")
    _, admin = await gw.admin("POST", "/admin/v1/admins", {"name": "fuzz", "role": "viewer"})
    _, deployments, _ = await gw.request("GET", "/prod/v2/deployments", key=ADMIN_TOKEN)
    dep = deployments[0]["id"]
    _, sub, headers = await gw.request("POST", f"/v1/models/{NANO}", key=key, json={"prompt": "x"})
    _, inf, _ = await gw.request(
        "POST", f"/prod/v1/deployments/{dep}/inference", key=key, json={"overrides": {}}
    )
    fx = Fixtures(
        url=gw.url,
        team_key=key,
        known={
            "model_id": [NANO],
            "target": [NANO],
            "deployment_id": [dep],
            "team_id": ["design", "ops"],
            "key_id": [keys["keys"][0]["key_id"]],
            "token_id": [admin["token_id"]],
            "cache_key": [headers["X-Gateway-Cache-Key"]],
            "request_id": [sub["request_id"]],
        },
        model_request=sub["request_id"],
        serverless_request=inf["request_id"],
    )
    failures = await asyncio.to_thread(fuzz, fx)
    took = failures.pop()
    assert not failures, "\n\n".join(failures) + f"\n{took}"
