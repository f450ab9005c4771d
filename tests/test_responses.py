"""Admin answers serialized through their models are byte for byte what the services return."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel

from gateway.access.admins import AdminToken
from gateway.access.audit import AuditEntry
from gateway.access.teams import ApiKey, Team
from gateway.money.pricing import Estimate
from gateway.money.quotas import Limits
from gateway.web import responses
from gateway.web.responses import answer

BUDGET: dict[str, Any] = {
    "period": "2026-12",
    "period_kind": "month",
    "resets_at": "2027-01-01T00:00:00+00:00",
    "budget_usd": None,
    "settled_usd": 5,
    "reserved_usd": 0.25,
    "remaining_usd": None,
    "alerted_percent": 0,
}


def sent(model: type[BaseModel], body: dict[str, Any]) -> bytes:
    response = answer(model.model_validate(body))
    assert response.body is not None
    return bytes(response.body)  # type: ignore[arg-type]


def test_money_keeps_integers_as_integers_and_nulls_as_nulls() -> None:
    assert sent(responses.Budget, BUDGET) == orjson.dumps(BUDGET)
    assert b'"settled_usd":5,' in sent(responses.Budget, BUDGET)


def test_limits_are_answered_in_the_order_and_with_the_nulls_the_service_gives() -> None:
    limits = Limits.model_validate(
        {"budget_usd": "12.5", "rate_burst": 3, "keys": {"k1": {"daily_requests": 9}}}
    )
    body = {"team_id": "design", **limits.public(), "budget": BUDGET}
    assert sent(responses.LimitsView, body) == orjson.dumps(body)


def test_records_of_teams_keys_and_admin_tokens_pass_unchanged() -> None:
    team = Team("design", "Design", "2026-12-03T00:00:00Z")
    key = ApiKey(
        "k" * 16, "design", "ci", "rcg_kkkk", "2026-12-03T00:00:00Z", None, None, None, True
    )
    token = AdminToken(
        "t1", "alice", "viewer", "rca_t1", "2026-12-03T00:00:00Z", "bootstrap", None, None
    )
    assert sent(responses.Team, team.to_json()) == orjson.dumps(team.to_json())
    assert sent(responses.ApiKey, key.to_json()) == orjson.dumps(key.to_json())
    rotated = {**key.to_json(), "key": "rcg_secret", "replaces": key.to_json()}
    assert sent(responses.RotatedApiKey, rotated) == orjson.dumps(rotated)
    assert sent(responses.AdminToken, token.to_json()) == orjson.dumps(token.to_json())


def test_an_estimate_and_a_usage_report_pass_unchanged() -> None:
    estimate = Estimate(1500, 50, 30.0, "second", "deployment", ("rate set by an admin",))
    assert sent(responses.Estimate, estimate.to_json()) == orjson.dumps(estimate.to_json())
    usage = {
        "team_id": "design",
        "from": "2026-12-01",
        "to": "2026-12-03",
        "timezone": "UTC",
        "totals": {"hit": 2, "spend_usd": 0.5, "hit_rate": 0.4},
        "by_day": [{"day": "2026-12-01", "hit": 2}],
        "by_model": {"m/x": {"hit": 2}},
        "requests_by_key": {"design.k1": 4},
        "running": 0,
        "queued": 1,
        "unreconciled": 0,
        "budget": BUDGET,
    }
    assert sent(responses.Usage, usage) == orjson.dumps(usage)


def test_an_audit_page_passes_unchanged_entries_without_a_correlation_id_included() -> None:
    entry = AuditEntry.from_stream(
        "1796267773667-0", {"actor": "alice", "action": "team.create", "after": '{"a": 1}'}
    )
    page = {"entries": [entry.to_json()], "next_cursor": None}
    assert sent(responses.AuditPage, page) == orjson.dumps(page)
