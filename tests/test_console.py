"""The admin console over real HTTP (no browser): sessions, CSRF, roles, headers, and that its
changes are the admin API's own (validation messages, audit records, numbers).

The browser walks are in tests/test_console_browser.py.
"""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from gateway.cli.demo import start
from gateway.store.client import connect
from gateway.web.appkeys import METRICS, SERVICES, SETTINGS
from gateway.web.console.render import CSP
from tests.conftest import ADMIN_TOKEN, NANO, SIM_TOKEN, Gateway, Simulator, redis_text
from tests.test_demo import _a_demo

UI = "/admin/ui"


class Browser:
    """A browser's view of the console: its own cookie jar, following no redirect."""

    def __init__(self, gw: Gateway, session: aiohttp.ClientSession) -> None:
        self.gw = gw
        self.session = session
        self.csrf = ""

    async def get(self, path: str) -> tuple[int, str, Any]:
        async with self.session.get(self.gw.url + path, allow_redirects=False) as resp:
            text = await resp.text()
            if match := re.search(r'<meta name="csrf-token" content="([^"]+)"', text):
                self.csrf = match[1]
            return resp.status, text, resp.headers

    async def post(
        self, path: str, data: dict[str, str], *, csrf: bool = True, **headers: str
    ) -> tuple[int, str, Any]:
        form = {**data, "csrf_token": self.csrf} if csrf else data
        async with self.session.post(
            self.gw.url + path, data=form, allow_redirects=False, headers=headers
        ) as resp:
            return resp.status, await resp.text(), resp.headers

    async def sign_in(self, token: str = ADMIN_TOKEN) -> None:
        status, _, headers = await self.post(f"{UI}/login", {"token": token}, csrf=False)
        assert status == 303, status
        assert headers["Location"] == f"{UI}/teams"
        status, _, _ = await self.get(f"{UI}/teams")
        assert status == 200
        assert self.csrf


@pytest.fixture
async def console(gateway_factory: Any) -> Gateway:
    gw: Gateway = await gateway_factory(console=True)
    return gw


@pytest.fixture
async def browser(console: Gateway) -> AsyncIterator[Browser]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield Browser(console, session)


async def new_browser(gw: Gateway) -> Browser:
    return Browser(gw, aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)))


async def named_admin(gw: Gateway, name: str, role: str) -> dict[str, Any]:
    status, body = await gw.admin("POST", "/admin/v1/admins", {"name": name, "role": role})
    assert status == 201, body
    return dict(body)


async def test_the_console_is_not_served_unless_turned_on(gateway: Gateway) -> None:
    for path in (UI, f"{UI}/", f"{UI}/login", f"{UI}/teams", f"{UI}/static/htmx.min.js"):
        status, _, _ = await gateway.request("GET", path)
        assert status == 404, path
    status, _, _ = await gateway.request("POST", f"{UI}/login", data=b"token=x")
    assert status == 404


async def test_without_a_session_every_page_sends_to_the_sign_in_page(browser: Browser) -> None:
    for path in (f"{UI}/teams", f"{UI}/teams/x", f"{UI}/audit", f"{UI}/admins"):
        status, _, headers = await browser.get(path)
        assert status == 303
        assert headers["Location"].startswith(f"{UI}/login?next=")
    status, _, headers = await browser.post(f"{UI}/teams", {"team_id": "x"}, csrf=False)
    assert status == 303
    status, _ = await browser.gw.admin("GET", "/admin/v1/teams/x")
    assert status == 404


async def test_a_forged_session_cookie_is_no_session(console: Gateway) -> None:
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        session.cookie_jar.update_cookies({"rcg_console": "A" * 43})
        async with session.get(console.url + f"{UI}/teams", allow_redirects=False) as resp:
            assert resp.status == 303
            assert resp.headers["Location"].startswith(f"{UI}/login")


async def test_sign_in_sets_a_strict_http_only_cookie_holding_no_token(
    browser: Browser, console: Gateway
) -> None:
    status, _, headers = await browser.post(f"{UI}/login", {"token": ADMIN_TOKEN}, csrf=False)
    assert status == 303
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/admin/ui" in cookie
    assert "Secure" not in cookie  # plain http here; https: see the next test
    assert ADMIN_TOKEN not in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    assert len(value) >= 43  # 256 bits, url-safe base64
    settings = console.app[SETTINGS]
    stored = await redis_text(settings.redis_url, settings.redis_namespace)
    assert value not in stored
    assert ADMIN_TOKEN not in stored


async def test_over_https_the_cookie_is_secure(browser: Browser) -> None:
    status, _, headers = await browser.post(
        f"{UI}/login", {"token": ADMIN_TOKEN}, csrf=False, **{"X-Forwarded-Proto": "https"}
    )
    assert status == 303
    assert "Secure" in headers["Set-Cookie"]


async def test_a_wrong_token_or_a_team_key_does_not_sign_in(
    browser: Browser, console: Gateway
) -> None:
    key = await console.new_team("design")
    for token in ("nope", key, ADMIN_TOKEN + "x", "rca_aaaaaaaaaaaa_" + "a" * 40):
        status, text, headers = await browser.post(f"{UI}/login", {"token": token}, csrf=False)
        assert status == 401, token
        assert "Set-Cookie" not in headers
        assert token not in text


async def test_every_page_has_a_strict_content_security_policy(browser: Browser) -> None:
    await browser.sign_in()
    for path in (f"{UI}/teams", f"{UI}/audit", f"{UI}/admins", f"{UI}/pricing", f"{UI}/login"):
        status, text, headers = await browser.get(path)
        assert status == 200, path
        assert headers["Content-Security-Policy"] == CSP
        assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "same-origin"
        assert headers["Cache-Control"] == "no-store"
        assert "<script>" not in text and " style=" not in text and "<style" not in text
        assert "https://" not in re.sub(r'placeholder="[^"]*"', "", text)  # nothing from a CDN


async def test_a_change_without_the_csrf_token_or_from_another_origin_is_refused(
    browser: Browser, console: Gateway
) -> None:
    await browser.sign_in()
    status, _, _ = await browser.post(f"{UI}/teams", {"team_id": "nocsrf"}, csrf=False)
    assert status == 403
    status, _, _ = await browser.post(
        f"{UI}/teams", {"team_id": "nocsrf", "csrf_token": "x"}, csrf=False
    )
    assert status == 403
    status, _, _ = await browser.post(
        f"{UI}/teams", {"team_id": "nocsrf"}, Origin="https://evil.example"
    )
    assert status == 403
    status, _ = await console.admin("GET", "/admin/v1/teams/nocsrf")
    assert status == 404
    status, _, _ = await browser.post(f"{UI}/teams", {"team_id": "withcsrf"}, Origin=console.url)
    assert status == 303
    status, _ = await console.admin("GET", "/admin/v1/teams/withcsrf")
    assert status == 200


async def test_a_change_is_the_apis_own_and_audited_under_the_signed_in_admin(
    browser: Browser, console: Gateway
) -> None:
    alice = await named_admin(console, "alice", "admin")
    await browser.sign_in(alice["token"])
    status, _, headers = await browser.post(f"{UI}/teams", {"team_id": "design", "name": "Design"})
    assert status == 303
    assert headers["Location"] == f"{UI}/teams/design"
    status, body = await console.admin("GET", "/admin/v1/audit?action=team.create")
    [entry] = body["entries"]
    assert (entry["actor"], entry["role"], entry["token_id"]) == (
        "alice",
        "admin",
        alice["token_id"],
    )
    assert entry["target"] == "team/design"


async def test_a_refusal_shows_the_apis_message_next_to_its_field(
    browser: Browser, console: Gateway
) -> None:
    await browser.sign_in()
    status, text, _ = await browser.post(f"{UI}/teams", {"team_id": "Not A Team!"})
    assert status == 422
    assert 'id="team_id-error"' in text
    assert "String should match pattern" in text
    await console.new_team("design")
    status, text, _ = await browser.post(
        f"{UI}/teams/design/limits",
        {"rate_per_minute": "lots", "budget_usd": "-1", "budget_period": "month"},
    )
    assert status == 422
    assert 'id="rate_per_minute-error"' in text and 'id="budget_usd-error"' in text
    assert "Input should be a valid number" in text
    assert "greater than or equal to 0" in text
    assert 'value="lots"' in text  # what was typed stays in the form


async def test_limits_set_in_the_form_are_the_apis_limits(
    browser: Browser, console: Gateway
) -> None:
    await console.new_team("design")
    await browser.sign_in()
    form = {
        "budget_usd": "250",
        "budget_period": "week",
        "daily_requests": "2000",
        "rate_per_minute": "60",
        "rate_burst": "10",
        "models": "google/*, openai/*",
        "deployments": "",
    }
    status, text, _ = await browser.post(f"{UI}/teams/design/limits", form)
    assert status == 200, text
    assert "Limits saved" in text
    _, limits = await console.admin("GET", "/admin/v1/teams/design/limits")
    assert limits["budget_usd"] == 250 and limits["budget_period"] == "week"
    assert limits["daily_requests"] == 2000 and limits["rate_per_minute"] == 60
    assert limits["models"] == ["google/*", "openai/*"] and limits["deployments"] == []
    assert limits["max_concurrent"] is None


async def test_a_key_is_shown_once_and_never_again(browser: Browser, console: Gateway) -> None:
    await console.new_team("design")
    await browser.sign_in()
    status, text, _ = await browser.post(f"{UI}/teams/design/keys", {"name": "laptop"})
    assert status == 200
    key = re.search(r'<code id="new-key">([^<]+)</code>', text)
    assert key is not None
    status, body, _ = await console.request(
        "POST", f"/v1/models/{NANO}", key=key[1], json={"prompt": "x"}
    )
    assert status == 200, body
    for path in (
        f"{UI}/teams/design",
        f"{UI}/audit",
        f"{UI}/teams/design/usage",
        f"{UI}/teams/design/limits",
    ):
        status, page_text, _ = await browser.get(path)
        assert status == 200
        assert key[1] not in page_text and key[1].rsplit("_", 1)[1] not in page_text
        assert SIM_TOKEN not in page_text and ADMIN_TOKEN not in page_text


async def test_a_viewer_sees_no_write_controls_and_a_forged_form_is_403(
    browser: Browser, console: Gateway
) -> None:
    await console.new_team("design")
    kid = await _key_id(console, "design")
    viewer = await named_admin(console, "grafana-bot", "viewer")
    await browser.sign_in(viewer["token"])
    for path in (
        f"{UI}/teams",
        f"{UI}/teams/design",
        f"{UI}/teams/design/limits",
        f"{UI}/teams/design/limits/keys/{kid}",
        f"{UI}/cache",
        f"{UI}/pricing/deployments/dep-1",
        f"{UI}/admins",
        f"{UI}/teams/design/cache",
        f"{UI}/teams/design/unreconciled",
    ):
        status, text, _ = await browser.get(path)
        assert status == 200, path
        buttons = re.findall(r'<button type="submit"[^>]*>([^<]+)</button>', text)
        assert buttons == ["Sign out"], (path, buttons)
    for path, form in (
        (f"{UI}/teams", {"team_id": "forged"}),
        (f"{UI}/teams/design/delete", {"confirm": "design"}),
        (f"{UI}/teams/design/keys", {"name": "x"}),
        (f"{UI}/teams/design/limits", {"budget_usd": "1"}),
        (f"{UI}/teams/design/limits/keys/{kid}", {"daily_requests": "1"}),
        (f"{UI}/teams/design/limits/keys/{kid}/clear", {}),
        (f"{UI}/teams/design/dedup-policy", {"default": "off"}),
        (f"{UI}/cache/models/{NANO}", {}),
        (f"{UI}/pricing/deployments/dep-1", {"usd_per_second": "1", "estimated_seconds": "1"}),
        (f"{UI}/pricing/deployments/dep-1/clear", {}),
        (f"{UI}/teams/design/cache", {"scope": "team"}),
        (f"{UI}/admins", {"name": "mallory", "role": "admin"}),
    ):
        status, _, _ = await browser.post(path, form)
        assert status == 403, path
    status, body = await console.admin("GET", "/admin/v1/teams")
    assert [t["team_id"] for t in body["teams"]] == ["design"]
    status, body = await console.admin("GET", "/admin/v1/audit?actor=grafana-bot")
    assert body["entries"] == []


async def test_revoking_the_admin_token_ends_its_session(
    browser: Browser, console: Gateway
) -> None:
    alice = await named_admin(console, "alice", "admin")
    await browser.sign_in(alice["token"])
    status, _ = await console.admin("DELETE", f"/admin/v1/admins/{alice['token_id']}")
    assert status == 200
    status, _, headers = await browser.get(f"{UI}/teams")
    assert status == 303
    assert "reason=revoked" in headers["Location"]
    status, _, headers = await browser.post(f"{UI}/teams", {"team_id": "late"})
    assert status == 303
    status, _ = await console.admin("GET", "/admin/v1/teams/late")
    assert status == 404


async def test_a_bootstrap_session_ends_when_the_bootstrap_token_changes(
    gateway_factory: Any, console: Gateway, browser: Browser
) -> None:
    await browser.sign_in()
    from pydantic import SecretStr

    other = await gateway_factory(
        console=True, admin_token=SecretStr("another-bootstrap-token-xyz")
    )
    cookies = browser.session.cookie_jar.filter_cookies(URL(console.url + UI + "/"))
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        session.cookie_jar.update_cookies(
            {"rcg_console": cookies["rcg_console"].value}, URL(other.url + UI + "/")
        )
        async with session.get(other.url + f"{UI}/teams", allow_redirects=False) as resp:
            assert resp.status == 303
            assert "reason=revoked" in resp.headers["Location"]


async def test_sign_out_ends_the_session(browser: Browser) -> None:
    await browser.sign_in()
    cookies = browser.session.cookie_jar.filter_cookies(URL(browser.gw.url + UI + "/"))
    value = cookies["rcg_console"].value
    status, _, _ = await browser.post(f"{UI}/logout", {})
    assert status == 303
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        session.cookie_jar.update_cookies({"rcg_console": value}, URL(browser.gw.url + UI + "/"))
        async with session.get(browser.gw.url + f"{UI}/teams", allow_redirects=False) as resp:
            assert resp.status == 303


@pytest.mark.parametrize(
    "path",
    [
        f"{UI}/static/..%2Fconsole.js",
        f"{UI}/static/%2e%2e/render.py",
        f"{UI}/static/%2e%2e%2frender.py",
        f"{UI}/static/../render.py",
        f"{UI}/static/templates%2Fbase.html",
        f"{UI}/static/",
        f"{UI}/teams%2Fdesign",
    ],
)
async def test_path_tricks_under_the_console_find_nothing(
    browser: Browser, console: Gateway, path: str
) -> None:
    await browser.sign_in()
    async with browser.session.get(console.url + path, allow_redirects=False) as resp:
        assert resp.status == 404, (path, resp.status)


async def test_the_console_cookie_opens_nothing_of_the_admin_api(browser: Browser) -> None:
    await browser.sign_in()
    for path in ("/admin/v1/teams", f"{UI}/%2e%2e/v1/teams", f"{UI}/../v1/teams"):
        async with browser.session.get(browser.gw.url + path, allow_redirects=False) as resp:
            assert resp.status == 401, path


async def test_the_static_files_are_served_from_the_package(browser: Browser) -> None:
    for name, kind in (("htmx.min.js", "text/javascript"), ("console.css", "text/css")):
        status, text, headers = await browser.get(f"{UI}/static/{name}")
        assert status == 200
        assert headers["Content-Type"].startswith(kind)
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert text


async def test_the_usage_page_shows_the_apis_numbers_and_metrics_agree(
    browser: Browser, console: Gateway, simulator: Simulator
) -> None:
    key = await console.new_team("design", budget_usd=100)
    status, sub, _ = await console.request(
        "POST", f"/v1/models/{NANO}", key=key, json={"prompt": "a lighthouse"}
    )
    assert status == 200, sub
    for _ in range(100):
        _, state, _ = await console.request(
            "GET", f"/v1/requests/{sub['request_id']}/status", key=key
        )
        if state["status"] == "completed":
            break
        await asyncio.sleep(0.05)
    await console.request("POST", f"/v1/models/{NANO}", key=key, json={"prompt": "a lighthouse"})
    await browser.sign_in()
    _, text, _ = await browser.get(f"{UI}/teams/design/usage")
    _, usage = await console.admin("GET", "/admin/v1/teams/design/usage")
    budget = usage["budget"]
    assert budget["settled_usd"] > 0
    assert f"${budget['settled_usd']} settled + ${budget['reserved_usd']} reserved" in text
    assert f"of ${budget['budget_usd']}" in text
    totals = re.findall(r"<dt>([^<]+)</dt><dd>([^<]+)</dd>", text)
    assert dict(totals) == {name: str(value) for name, value in usage["totals"].items()}
    assert usage["totals"]["hit"] == 1
    services = console.app[SERVICES]  # what the redis probe and the team gauges do, now
    console.app[METRICS].set_teams(await services.teams.team_ids())
    await services.quotas.export(services.teams, console.app[METRICS])
    _, metrics, _ = await console.request("GET", "/metrics")
    spend = re.search(r'gateway_team_spend_usd\{team="design"\} (\S+)', metrics)
    assert spend is not None
    assert float(spend[1]) == budget["settled_usd"]


async def test_a_session_lasts_the_configured_time_in_redis(
    gateway_factory: Any, http: aiohttp.ClientSession
) -> None:
    gw = await gateway_factory(console=True, console_session_seconds=600)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        browser = Browser(gw, session)
        _, _, headers = await browser.post(f"{UI}/login", {"token": ADMIN_TOKEN}, csrf=False)
        assert "Max-Age=600" in headers["Set-Cookie"]
    settings = gw.app[SETTINGS]
    client = connect(settings.redis_url)
    try:
        names = [n async for n in client.scan_iter(match=f"{settings.redis_namespace}:*session*")]
        assert len(names) == 1
        assert str(names[0]).startswith(f"{settings.redis_namespace}:v1:{{console}}:session:")
        assert 590 <= await client.ttl(names[0]) <= 600
    finally:
        await client.aclose()


def test_the_demo_turns_the_console_on_and_prints_its_url(tmp_path: Path) -> None:
    the_demo, key = _a_demo(tmp_path)
    text = start._announcement(the_demo, key, "valkey 9")
    assert (
        "The admin console (sign in with the admin token): http://127.0.0.1:18080/admin/ui/" in text
    )
    assert start._settings(the_demo, "127.0.0.1", 18080).console


async def test_an_admin_token_made_in_the_console_is_shown_once_and_revoked_there(
    browser: Browser, console: Gateway
) -> None:
    await browser.sign_in()
    status, text, _ = await browser.post(f"{UI}/admins", {"name": "Bad Name!", "role": "admin"})
    assert status == 422
    assert 'id="name-error"' in text
    status, text, _ = await browser.post(f"{UI}/admins", {"name": "carol", "role": "viewer"})
    assert status == 200
    token = re.search(r'<code id="new-token">([^<]+)</code>', text)
    assert token is not None
    status, who, _ = await console.request("GET", "/admin/v1/whoami", key=token[1])
    assert status == 200 and who == {"name": "carol", "role": "viewer", "token_id": who["token_id"]}
    _, listing, _ = await browser.get(f"{UI}/admins")
    assert token[1] not in listing and who["token_id"] in listing
    status, text, _ = await browser.post(f"{UI}/admins/{who['token_id']}/revoke", {})
    assert status == 200
    assert f"Admin token {who['token_id']} revoked." in text
    status, _, _ = await console.request("GET", "/admin/v1/whoami", key=token[1])
    assert status == 401


async def test_a_cache_purge_from_the_console_is_the_apis(
    browser: Browser, console: Gateway
) -> None:
    key = await console.new_team("design")
    for _ in range(2):
        status, body, _ = await console.request(
            "POST", f"/v1/models/{NANO}", key=key, json={"prompt": "same"}
        )
        assert status == 200, body
    await browser.sign_in()
    status, text, _ = await browser.get(f"{UI}/teams/design/cache")
    assert status == 200
    status, text, _ = await browser.post(f"{UI}/teams/design/cache", {"scope": "model"})
    assert status == 422 and "Name the model to purge." in text
    status, text, _ = await browser.post(
        f"{UI}/teams/design/cache", {"scope": "model", "model": NANO}
    )
    assert status == 200, text
    assert re.search(rf"Purged \d+ cached results of {NANO}\.", text)
    status, text, _ = await browser.post(f"{UI}/teams/design/cache", {"scope": "team"})
    assert "Purged 0 cached results of the team." in text
    _, audit = await console.admin("GET", "/admin/v1/audit?action=cache.purge")
    targets = [e["target"] for e in audit["entries"]]
    assert targets == ["team/design/cache", f"team/design/cache/model/{NANO}"]


async def test_the_estimate_preview_is_the_apis_estimate(
    browser: Browser, console: Gateway
) -> None:
    viewer = await named_admin(console, "auditor", "viewer")
    await browser.sign_in(viewer["token"])
    form = {"model_id": NANO, "request_body": '{"prompt": "x"}'}
    status, text, _ = await browser.post(f"{UI}/pricing/estimate", form)
    assert status == 200, text
    _, estimate = await console.admin(
        "POST", "/admin/v1/pricing/estimate", {"model_id": NANO, "body": {"prompt": "x"}}
    )
    assert f"${estimate['micro'] / 1_000_000:.6f}" in text
    status, text, _ = await browser.post(f"{UI}/pricing/estimate", {**form, "request_body": "["})
    assert status == 422 and "The request body is not a JSON object." in text
    status, text, _ = await browser.post(f"{UI}/pricing/estimate", {**form, "model_id": "a b"})
    assert status == 422 and 'id="model_id-error"' in text


async def test_an_unreconciled_submit_is_resolved_from_the_console(
    gateway_factory: Any, simulator: Simulator
) -> None:
    gw = await gateway_factory(console=True, upstream_submit_timeout=0.3)
    key = await gw.new_team("design", budget_usd=1)
    await simulator.fault(route="model.submit", action="delay", delay=0.8, after=True)
    status, _, _ = await gw.request("POST", f"/v1/models/{NANO}", key=key, json={"prompt": "x"})
    assert status == 504
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        browser = Browser(gw, session)
        await browser.sign_in()
        _, text, _ = await browser.get(f"{UI}/teams/design/unreconciled")
        _, ledger = await gw.admin("GET", "/admin/v1/teams/design/unreconciled")
        [entry] = ledger["jobs"]
        assert entry["job_id"] in text and "1 unreconciled" in text
        _, unknown = await gw.admin("GET", "/admin/v1/teams/design/unknown-submits")
        [submit] = unknown["requests"]
        assert "1 unknown submits" in text
        assert f'<td class="id">{submit["request_id"]}</td><td>{submit["api"]}</td>' in text
        assert text.count('id="unknown-submits"') == 1  # the table once, in the page's body
        assert "<title>Unreconciled submits of design · runcomfy-gateway</title>" in text
        path = f"{UI}/teams/design/unreconciled/{entry['job_id']}"
        status, text, _ = await browser.post(path, {"outcome": "maybe"})
        assert status == 422
        status, text, _ = await browser.post(path, {"outcome": "refunded"})
        assert status == 200, text
        assert f"Job {entry['job_id']} refunded" in text and "0 unreconciled" in text
    _, audit = await gw.admin("GET", "/admin/v1/audit?action=unreconciled.resolve")
    assert [e["actor"] for e in audit["entries"]] == ["bootstrap"]


async def test_a_team_is_deleted_only_once_its_id_is_typed(
    browser: Browser, console: Gateway
) -> None:
    await console.new_team("design")
    await browser.sign_in()
    status, text, _ = await browser.get(f"{UI}/teams/design/delete")
    assert status == 200 and "Type" in text
    status, text, _ = await browser.post(f"{UI}/teams/design/delete", {"confirm": "desig"})
    assert status == 422
    status, _ = await console.admin("GET", "/admin/v1/teams/design")
    assert status == 200
    status, text, _ = await browser.post(f"{UI}/teams/design/delete", {"confirm": "design"})
    assert status == 200 and "Team design deleted" in text
    status, _ = await console.admin("GET", "/admin/v1/teams/design")
    assert status == 404
    status, text, _ = await browser.get(f"{UI}/teams/design")
    assert status == 404 and 'id="error-message"' in text


async def test_a_models_price_override_is_set_checked_and_cleared_in_the_console(
    browser: Browser, console: Gateway
) -> None:
    await browser.sign_in()
    status, _, headers = await browser.get(f"{UI}/pricing/model?model_id={NANO}")
    assert status == 303 and headers["Location"] == f"{UI}/pricing/models/{NANO}"
    path = f"{UI}/pricing/models/{NANO}"
    wrong = '{"rules": [{"param": "resolution", "equals": "8K", "multiplier": 2}]}'
    status, text, _ = await browser.post(path, {"override": wrong})
    assert status == 422, text
    _, api_answer = await console.admin(
        "PUT",
        f"/admin/v1/pricing/models/{NANO}",
        {"rules": [{"param": "resolution", "equals": "8K", "multiplier": 2}]},
    )
    for item in api_answer["detail"]:
        assert item["msg"] in html.unescape(text)  # the API's own words
    right = '{"rules": [{"param": "resolution", "equals": "4K", "unit_price_usd": 0.3}]}'
    status, text, _ = await browser.post(path, {"override": right})
    assert status == 200 and "Override saved." in text
    _, book = await console.admin("GET", "/admin/v1/pricing")
    assert book["models"][NANO]["rules"][0]["unit_price_usd"] == 0.3
    status, text, _ = await browser.post(f"{UI}/pricing/clear/{NANO}", {})
    assert status == 200 and "Override cleared" in text
    _, book = await console.admin("GET", "/admin/v1/pricing")
    assert NANO not in book["models"]
    _, audit = await console.admin("GET", "/admin/v1/audit?target=pricing/")
    assert [e["action"] for e in audit["entries"]] == ["pricing.clear_model", "pricing.set_model"]


async def test_one_cached_result_is_purged_by_its_key_after_a_confirmation(
    browser: Browser, console: Gateway
) -> None:
    key = await console.new_team("design")
    _, _, headers = await console.request(
        "POST", f"/v1/models/{NANO}", key=key, json={"prompt": "one"}
    )
    cache_key = headers["X-Gateway-Cache-Key"]
    await browser.sign_in()
    status, text, _ = await browser.get(f"{UI}/teams/design/cache/entry?cache_key={cache_key}")
    assert status == 200 and cache_key in text
    status, text, _ = await browser.post(f"{UI}/teams/design/cache/entry/{cache_key}", {})
    assert status == 200, text
    assert f"cached result {cache_key}" in text
    _, audit = await console.admin("GET", "/admin/v1/audit?action=cache.purge")
    assert [e["target"] for e in audit["entries"]] == [f"team/design/cache/entry/{cache_key}"]


async def _key_id(gw: Gateway, team_id: str) -> str:
    _, listing = await gw.admin("GET", f"/admin/v1/teams/{team_id}/keys")
    return str(listing["keys"][0]["key_id"])


async def test_a_keys_own_limits_are_set_in_the_console_and_bind_its_submits(
    browser: Browser, console: Gateway
) -> None:
    key = await console.new_team("design", budget_usd=250, budget_period="week")
    kid = await _key_id(console, "design")
    await browser.sign_in()
    status, text, _ = await browser.get(f"{UI}/teams/design/limits")
    assert status == 200 and f'id="key-limits-{kid}"' in text
    path = f"{UI}/teams/design/limits/keys/{kid}"
    status, text, _ = await browser.post(path, {"daily_requests": "0", "budget_usd": "5"})
    assert status == 200, text
    assert f"Limits of key {kid} saved." in text
    assert "<small>Team: 250" in text and "<small>Team: no limit</small>" in text  # beside each
    _, limits = await console.admin("GET", "/admin/v1/teams/design/limits")
    assert limits["keys"][kid]["daily_requests"] == 0 and limits["keys"][kid]["budget_usd"] == 5
    assert limits["budget_usd"] == 250 and limits["budget_period"] == "week"  # the team's kept
    status, body, _ = await console.request(
        "POST", f"/v1/models/{NANO}", key=key, json={"prompt": "x"}
    )
    assert status == 429, body
    status, text, _ = await browser.post(f"{path}/clear", {})
    assert status == 200 and f"Key {kid} has no limits of its own." in text
    _, limits = await console.admin("GET", "/admin/v1/teams/design/limits")
    assert limits["keys"] == {} and limits["budget_usd"] == 250
    _, audit = await console.admin("GET", "/admin/v1/audit?action=limits.replace")
    assert len(audit["entries"]) == 3  # the team's, then the key's set and removed


async def test_a_keys_refused_limits_show_the_apis_messages_next_to_its_fields(
    browser: Browser, console: Gateway
) -> None:
    await console.new_team("design")
    kid = await _key_id(console, "design")
    await browser.sign_in()
    form = {"daily_requests": "-5", "rate_per_minute": "lots"}
    status, text, _ = await browser.post(f"{UI}/teams/design/limits/keys/{kid}", form)
    assert status == 422
    assert 'id="daily_requests-error"' in text and 'id="rate_per_minute-error"' in text
    assert 'value="lots"' in text
    _, api_answer = await console.admin(
        "PUT", "/admin/v1/teams/design/limits", {"keys": {kid: form}}
    )
    assert len(api_answer["detail"]) == 2
    for item in api_answer["detail"]:
        assert f"<li>{item['msg']}</li>" in html.unescape(text)  # the API's words, by the field
    _, limits = await console.admin("GET", "/admin/v1/teams/design/limits")
    assert limits["keys"] == {}


async def test_a_key_of_another_team_has_no_limits_page_there(
    browser: Browser, console: Gateway
) -> None:
    await console.new_team("design")
    await console.new_team("ml")
    kid = await _key_id(console, "ml")
    await browser.sign_in()
    status, _, _ = await browser.get(f"{UI}/teams/design/limits/keys/{kid}")
    assert status == 404
    status, _, _ = await browser.post(
        f"{UI}/teams/design/limits/keys/{kid}", {"daily_requests": "1"}
    )
    assert status == 404
    _, limits = await console.admin("GET", "/admin/v1/teams/ml/limits")
    assert limits["keys"] == {}


async def test_emptied_fields_clear_the_teams_limits_and_the_period_goes_back_to_month(
    browser: Browser, console: Gateway
) -> None:
    await console.new_team("design", budget_usd=250, budget_period="week", daily_requests=9)
    await browser.sign_in()
    form = {"budget_usd": "", "budget_period": "month", "daily_requests": "", "models": ""}
    status, text, _ = await browser.post(f"{UI}/teams/design/limits", form)
    assert status == 200, text
    _, limits = await console.admin("GET", "/admin/v1/teams/design/limits")
    assert (limits["budget_usd"], limits["budget_period"], limits["daily_requests"]) == (
        None,
        "month",
        None,
    )
    assert limits["models"] is None


async def test_a_teams_dedup_policy_is_set_in_the_console_as_the_api_stores_it(
    browser: Browser, console: Gateway
) -> None:
    key = await console.new_team("design")
    kid = await _key_id(console, "design")
    await browser.sign_in()
    status, text, _ = await browser.get(f"{UI}/teams/design/cache")
    assert status == 200 and 'id="dedup-form"' in text and "gateway default (cache)" in text
    form = {
        "default": "seeded",
        f"key.{kid}": "off",
        "new_model": NANO,
        "new_model_policy": "inflight",
    }
    status, text, _ = await browser.post(f"{UI}/teams/design/dedup-policy", form)
    assert status == 200, text
    assert "Dedup policy saved" in text
    _, policy = await console.admin("GET", "/admin/v1/teams/design/dedup-policy")
    assert policy == {"default": "seeded", "keys": {kid: "off"}, "models": {NANO: "inflight"}}
    for _ in range(2):  # the key's "off": the same request twice is two jobs, no hit
        _, _, headers = await console.request(
            "POST", f"/v1/models/{NANO}", key=key, json={"prompt": "same"}
        )
        assert headers["X-Gateway-Cache"] == "miss"
    # what the page shows is what it saves: the model entry removed, the rest kept
    form = {"default": "seeded", f"key.{kid}": "off", f"model.{NANO}": ""}
    status, text, _ = await browser.post(f"{UI}/teams/design/dedup-policy", form)
    assert status == 200, text
    _, policy = await console.admin("GET", "/admin/v1/teams/design/dedup-policy")
    assert policy == {"default": "seeded", "keys": {kid: "off"}, "models": {}}
    _, audit = await console.admin("GET", "/admin/v1/audit?action=dedup_policy.replace")
    assert len(audit["entries"]) == 2


async def test_a_refused_dedup_policy_shows_the_apis_message_next_to_its_entry(
    browser: Browser, console: Gateway
) -> None:
    await console.new_team("design")
    await browser.sign_in()
    form = {"default": "sometimes", "new_model": NANO, "new_model_policy": "never"}
    status, text, _ = await browser.post(f"{UI}/teams/design/dedup-policy", form)
    assert status == 422
    assert 'id="default-error"' in text and 'id="new_model-error"' in text
    _, api_answer = await console.admin(
        "PUT",
        "/admin/v1/teams/design/dedup-policy",
        {"default": "sometimes", "models": {NANO: "never"}},
    )
    assert len(api_answer["detail"]) == 2
    for item in api_answer["detail"]:
        assert f"<li>{item['msg']}</li>" in html.unescape(text)  # by the field
    assert f'value="{NANO}"' in text  # what was typed stays in the form
    form = {"default": "off", "new_model": NANO, "new_model_policy": ""}
    status, text, _ = await browser.post(f"{UI}/teams/design/dedup-policy", form)
    assert status == 422 and 'id="new_model_policy-error"' in text
    assert "Choose the model&#39;s mode." in text
    _, policy = await console.admin("GET", "/admin/v1/teams/design/dedup-policy")
    assert policy == {"default": None, "keys": {}, "models": {}}


async def test_a_model_is_purged_for_every_team_after_a_confirmation(
    browser: Browser, console: Gateway
) -> None:
    for team in ("design", "ml"):
        key = await console.new_team(team)
        status, body, _ = await console.request(
            "POST", f"/v1/models/{NANO}", key=key, json={"prompt": "everywhere"}
        )
        assert status == 200, body
    await browser.sign_in()
    status, text, _ = await browser.get(f"{UI}/cache/model?model=a b")
    assert status == 422 and "is not a model or deployment id" in text
    status, text, _ = await browser.get(f"{UI}/cache/model?model={NANO}")
    assert status == 200 and f"every team's cached results of {NANO}" in html.unescape(text)
    status, text, _ = await browser.post(f"{UI}/cache/models/{NANO}", {})
    assert status == 200, text
    assert re.search(rf"Purged \d+ cached results of {NANO}, in every team\.", text)
    _, audit = await console.admin("GET", "/admin/v1/audit?action=cache.purge")
    assert [e["target"] for e in audit["entries"]] == [f"cache/model/{NANO}"]


async def test_a_deployments_rate_is_set_checked_and_cleared_in_the_console(
    browser: Browser, console: Gateway
) -> None:
    await browser.sign_in()
    status, _, headers = await browser.get(f"{UI}/pricing/deployment?deployment_id=dep-1")
    assert status == 303 and headers["Location"] == f"{UI}/pricing/deployments/dep-1"
    status, text, _ = await browser.get(f"{UI}/pricing/deployment?deployment_id=a/b")
    assert status == 422 and "is not a deployment id" in html.unescape(text)
    path = f"{UI}/pricing/deployments/dep-1"
    wrong = {"usd_per_second": "-1", "estimated_seconds": "0"}
    status, text, _ = await browser.post(path, wrong)
    assert status == 422
    assert 'id="usd_per_second-error"' in text and 'id="estimated_seconds-error"' in text
    _, api_answer = await console.admin("PUT", "/admin/v1/pricing/deployments/dep-1", wrong)
    for item in api_answer["detail"]:
        assert f"<li>{item['msg']}</li>" in html.unescape(text)
    status, text, _ = await browser.post(
        path, {"usd_per_second": "0.00054", "estimated_seconds": "40"}
    )
    assert status == 200 and "Rate saved." in text
    _, book = await console.admin("GET", "/admin/v1/pricing")
    assert book["deployments"]["dep-1"] == {"usd_per_second": 0.00054, "estimated_seconds": 40}
    status, text, _ = await browser.post(f"{path}/clear", {})
    assert status == 200 and "Rate cleared" in text
    _, book = await console.admin("GET", "/admin/v1/pricing")
    assert book["deployments"] == {}
    _, audit = await console.admin("GET", "/admin/v1/audit?target=pricing/deployment/")
    assert [e["action"] for e in audit["entries"]] == [
        "pricing.clear_deployment",
        "pricing.set_deployment",
    ]


async def test_a_serverless_estimate_is_the_apis_and_needs_exactly_one_target(
    browser: Browser, console: Gateway
) -> None:
    rate = {"usd_per_second": 0.00054, "estimated_seconds": 40}
    status, _ = await console.admin("PUT", "/admin/v1/pricing/deployments/dep-1", rate)
    assert status == 200
    await browser.sign_in()
    form = {"model_id": "", "deployment_id": "dep-1", "request_body": "{}"}
    status, text, _ = await browser.post(f"{UI}/pricing/estimate", form)
    assert status == 200, text
    _, estimate = await console.admin(
        "POST", "/admin/v1/pricing/estimate", {"deployment_id": "dep-1", "body": {}}
    )
    assert estimate["micro"] == 21_600
    assert f"${estimate['micro'] / 1_000_000:.6f}" in text
    status, text, _ = await browser.post(f"{UI}/pricing/estimate", {**form, "model_id": NANO})
    assert status == 422 and "give exactly one of model_id and deployment_id" in text


async def test_every_console_form_is_refused_without_its_csrf_token(
    browser: Browser, console: Gateway
) -> None:
    await console.new_team("design")
    values = {
        "team_id": "design",
        "key_id": await _key_id(console, "design"),
        "cache_key": "k",
        "target": NANO,
        "model_id": NANO,
        "deployment_id": "dep-1",
        "token_id": "t",
        "job_id": "j",
    }
    posts = [
        r.resource.canonical
        for r in console.app.router.routes()
        if r.method == "POST" and r.resource is not None
    ]
    posts = [p for p in posts if p.startswith(UI) and p != f"{UI}/login"]
    assert len(posts) >= 20
    await browser.sign_in()
    _, before = await console.admin("GET", "/admin/v1/audit")
    for canonical in posts:
        path = re.sub(r"\{(\w+)(:[^}]*)?\}", lambda m: values[m[1]], canonical)
        status, _, _ = await browser.post(path, {"default": "off", "budget_usd": "1"}, csrf=False)
        assert status == 403, path
    _, after = await console.admin("GET", "/admin/v1/audit")
    assert after["entries"] == before["entries"]
