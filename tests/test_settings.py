"""Configuration as an operator sees it: what an unset variable means, how values are read from
the environment, which values are refused and under which ``GATEWAY_*`` name, and the
documented table."""

from __future__ import annotations

import math
import os
from decimal import Decimal
from typing import Any

import annotated_types
import pytest
from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo

from gateway.settings import Settings, settings_table


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees only the GATEWAY_* variables it sets."""
    for name in list(os.environ):
        if name.upper().startswith("GATEWAY_"):
            monkeypatch.delenv(name)


def refused(**env: str) -> list[tuple[str, str]]:
    """The variables a gateway started with ``env`` names as wrong, with the reasons."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        with pytest.raises(ValidationError) as info:
            Settings()
    return [
        ("GATEWAY_" + "_".join(str(p) for p in e["loc"]).upper(), e["msg"])
        for e in info.value.errors()
    ]


def bounds(field: FieldInfo) -> dict[str, float]:
    found: dict[str, float] = {}
    for item in field.metadata:
        for kind in ("ge", "gt", "le", "lt"):
            if isinstance(item, getattr(annotated_types, kind.capitalize())):
                found[kind] = getattr(item, kind)
    return found


BOUNDED = {name: bounds(f) for name, f in Settings.model_fields.items() if bounds(f)}


def test_a_gateway_without_configuration_serves_locally_in_front_of_runcomfys_public_apis() -> None:
    settings = Settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.upstream_model_api_url == "https://model-api.runcomfy.net"
    assert settings.upstream_serverless_url == "https://api.runcomfy.net"
    assert not settings.upstream_configured  # no token: it cannot call RunComfy yet
    assert settings.redis_url == ""  # the embedded Redis
    assert settings.metrics_port is None and settings.metrics_listen_host == "127.0.0.1"
    assert settings.quota_timezone == "UTC"
    assert settings.dedup_default_policy == "cache" and settings.cache_scope == "team"


def test_every_default_is_a_value_the_setting_accepts() -> None:
    settings = Settings()
    for name, limits in BOUNDED.items():
        value = getattr(settings, name)
        if value is None:
            continue
        assert limits.get("ge", -math.inf) <= value <= limits.get("le", math.inf), name
        assert limits.get("gt", -math.inf) < value < limits.get("lt", math.inf), name


def test_values_are_read_from_gateway_variables_in_their_types(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GATEWAY_PORT", "9090")
    monkeypatch.setenv("GATEWAY_POLL_INTERVAL_SECONDS", "0.5")
    monkeypatch.setenv("GATEWAY_WEBHOOK_ALLOW_PRIVATE", "true")
    monkeypatch.setenv("GATEWAY_CACHE_SCOPE", "shared")
    monkeypatch.setenv("GATEWAY_METRICS_PORT", "")
    monkeypatch.setenv("gateway_queue_depth", "7")  # names are case-insensitive
    monkeypatch.setenv("GATEWAY_NOT_A_SETTING", "ignored")
    monkeypatch.setenv("GATEWAY_UPSTREAM_TOKEN", "rc-token")
    settings = Settings()
    assert settings.port == 9090
    assert settings.poll_interval_seconds == 0.5
    assert settings.webhook_allow_private is True
    assert settings.cache_scope == "shared"
    assert settings.metrics_port is None  # empty means unset, not an error
    assert settings.queue_depth == 7
    assert settings.upstream_configured


def test_urls_lose_their_trailing_slash_and_must_be_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_PUBLIC_URL", "https://gw.example.com/")
    monkeypatch.setenv("GATEWAY_UPSTREAM_MODEL_API_URL", "http://127.0.0.1:9000/")
    settings = Settings()
    assert settings.public_url == "https://gw.example.com"
    assert settings.upstream_model_api_url == "http://127.0.0.1:9000"
    for name in ("GATEWAY_PUBLIC_URL", "GATEWAY_UPSTREAM_SERVERLESS_URL"):
        assert refused(**{name: "ftp://gw.example.com"}) == [
            (name, "Value error, must be an http:// or https:// URL")
        ]


def test_a_wrong_value_is_refused_naming_its_variable() -> None:
    cases = {
        "GATEWAY_PORT": "not-a-port",
        "GATEWAY_QUOTA_TIMEZONE": "Mars/Olympus_Mons",
        "GATEWAY_REDIS_NAMESPACE": "has spaces",
        "GATEWAY_CACHE_SCOPE": "everyone",
        "GATEWAY_LOG_FORMAT": "xml",
        "GATEWAY_REDIS_URL": "http://redis:6379",
        "GATEWAY_WEBHOOK_ALLOW_PRIVATE": "perhaps",
    }
    for name, value in cases.items():
        assert [variable for variable, _ in refused(**{name: value})] == [name], name
    assert refused(GATEWAY_QUOTA_TIMEZONE="Mars/Olympus_Mons") == [
        ("GATEWAY_QUOTA_TIMEZONE", "Value error, unknown time zone 'Mars/Olympus_Mons'")
    ]


def test_the_metrics_listener_must_not_share_the_main_port() -> None:
    assert refused(GATEWAY_PORT="9000", GATEWAY_METRICS_PORT="9000") == [
        ("GATEWAY_METRICS_PORT", "Value error, must differ from GATEWAY_PORT (9000)")
    ]


@pytest.mark.parametrize("name", sorted(BOUNDED))
def test_a_bounded_setting_accepts_its_bounds_and_refuses_what_lies_beyond(name: str) -> None:
    limits = BOUNDED[name]
    variable = f"GATEWAY_{name.upper()}"
    integer = Settings.model_fields[name].annotation in (int, int | None)
    step: Any = 1 if integer else Decimal("0.001")
    for kind, bound in limits.items():
        edge = Decimal(str(bound))
        inside = {"ge": edge, "le": edge, "gt": edge + step, "lt": edge - step}[kind]
        outside = {"ge": edge - step, "le": edge + step, "gt": edge, "lt": edge}[kind]
        with pytest.MonkeyPatch.context() as patch:
            if name == "port":  # the metrics port must differ from it
                patch.setenv("GATEWAY_METRICS_PORT", "")
            patch.setenv(variable, str(inside))
            assert Decimal(str(getattr(Settings(), name))) == inside
        assert [v for v, _ in refused(**{variable: str(outside)})] == [variable]


def test_secrets_never_show_in_the_settings_or_the_documented_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GATEWAY_UPSTREAM_TOKEN", "rc-secret-upstream")
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", "rcg-secret-admin")
    settings = Settings()
    for text in (str(settings), repr(settings), settings.model_dump_json(), settings_table()):
        assert "rc-secret-upstream" not in text and "rcg-secret-admin" not in text
    assert isinstance(settings.upstream_token, SecretStr)
    assert settings.admin_token.get_secret_value() == "rcg-secret-admin"


def test_the_settings_table_has_one_described_row_per_setting() -> None:
    rows = settings_table().splitlines()[2:]
    variables = [row.split(" | ")[0].removeprefix("| ").strip("`") for row in rows]
    assert variables == [f"GATEWAY_{name.upper()}" for name in Settings.model_fields]
    for row, (name, field) in zip(rows, Settings.model_fields.items(), strict=True):
        assert field.description and row.endswith(f" | {field.description} |"), name
    by_variable = dict(zip(variables, rows, strict=True))
    assert "| `8080` |" in by_variable["GATEWAY_PORT"]
    assert "| (empty) |" in by_variable["GATEWAY_UPSTREAM_TOKEN"]
    assert "| (per user) |" in by_variable["GATEWAY_DATA_DIR"]
    assert "| (empty) |" in by_variable["GATEWAY_METRICS_PORT"]
