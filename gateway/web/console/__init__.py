"""The admin console: the admin API as server-rendered pages under ``/admin/ui/``.

Off unless ``GATEWAY_CONSOLE`` is set (then nothing answers under ``/admin/ui/`` but 404). It is
served on the gateway's port because the admin API it fronts already is; it adds a session
cookie, not an authority: every page acts as the admin token that signed in, through the API's
own handlers (:mod:`.api`). Pages are Jinja templates; htmx (vendored) swaps them without full
reloads, and everything works without it. See docs/console.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from gateway.web.appkeys import REDIS, SETTINGS
from gateway.web.console import admin, cache, limits, money, signin, teams
from gateway.web.console.guard import CONSOLE_SESSIONS, ConsoleHandler, page
from gateway.web.console.render import PREFIX, redirect, static
from gateway.web.console.sessions import SessionStore

__all__ = ["PREFIX", "setup_console"]


async def _sessions_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[CONSOLE_SESSIONS] = SessionStore(
        app[REDIS], settings.redis_namespace, settings.console_session_seconds
    )
    yield


async def _home(request: web.Request) -> web.Response:
    return redirect(f"{PREFIX}/teams")


def _team(path: str) -> str:
    return f"{PREFIX}/teams/{{team_id}}{path}"


def setup_console(app: web.Application) -> None:
    """Serve the console on ``app`` (its sessions live in the app's Redis)."""
    app.cleanup_ctx.append(_sessions_ctx)
    add = app.router.add_route
    add("GET", PREFIX, _home)
    add("GET", f"{PREFIX}/", _home)
    add("GET", f"{PREFIX}/static/{{name}}", static)
    add("GET", f"{PREFIX}/login", signin.sign_in_page)
    add("POST", f"{PREFIX}/login", signin.sign_in)
    add("POST", f"{PREFIX}/logout", page(signin.sign_out, change=False))
    pages: list[tuple[str, str, ConsoleHandler]] = [
        ("GET", f"{PREFIX}/teams", teams.list_teams),
        ("POST", f"{PREFIX}/teams", teams.create_team),
        ("GET", _team(""), teams.show_team),
        ("GET", _team("/delete"), teams.confirm_delete),
        ("POST", _team("/delete"), teams.delete_team),
        ("POST", _team("/keys"), teams.create_key),
        ("POST", _team("/keys/{key_id}/rotate"), teams.rotate_key),
        ("POST", _team("/keys/{key_id}/revoke"), teams.revoke_key),
        ("GET", _team("/limits"), limits.limits_page),
        ("POST", _team("/limits"), limits.set_limits),
        ("GET", _team("/limits/keys/{key_id}"), limits.key_limits_page),
        ("POST", _team("/limits/keys/{key_id}"), limits.set_key_limits),
        ("POST", _team("/limits/keys/{key_id}/clear"), limits.clear_key_limits),
        ("GET", _team("/usage"), money.usage_page),
        ("GET", _team("/cache"), cache.cache_page),
        ("POST", _team("/cache"), cache.purge_cache),
        ("POST", _team("/dedup-policy"), cache.set_policy),
        ("GET", _team("/cache/entry"), cache.choose_cache_entry),
        ("POST", _team("/cache/entry/{cache_key}"), cache.purge_cache_entry),
        ("GET", f"{PREFIX}/cache", cache.every_team_page),
        ("GET", f"{PREFIX}/cache/model", cache.choose_model),
        ("POST", f"{PREFIX}/cache/models/{{target:.+}}", cache.purge_model),
        ("GET", _team("/unreconciled"), money.ledger_page),
        ("POST", _team("/unreconciled/{job_id}"), money.resolve),
        ("GET", f"{PREFIX}/pricing", money.pricing_page),
        ("GET", f"{PREFIX}/pricing/model", money.choose_model),
        ("GET", f"{PREFIX}/pricing/models/{{model_id:.+}}", money.model_price_page),
        ("POST", f"{PREFIX}/pricing/models/{{model_id:.+}}", money.set_model_price),
        ("POST", f"{PREFIX}/pricing/clear/{{model_id:.+}}", money.clear_model_price),
        ("GET", f"{PREFIX}/pricing/deployment", money.choose_deployment),
        ("GET", f"{PREFIX}/pricing/deployments/{{deployment_id}}", money.deployment_price_page),
        ("POST", f"{PREFIX}/pricing/deployments/{{deployment_id}}", money.set_deployment_price),
        (
            "POST",
            f"{PREFIX}/pricing/deployments/{{deployment_id}}/clear",
            money.clear_deployment_price,
        ),
        ("GET", f"{PREFIX}/admins", admin.admins_page),
        ("POST", f"{PREFIX}/admins", admin.create_admin),
        ("POST", f"{PREFIX}/admins/{{token_id}}/revoke", admin.revoke_admin),
        ("GET", f"{PREFIX}/audit", admin.audit_page),
    ]
    for method, path, handler in pages:
        add(method, path, page(handler))
    # an estimate changes nothing: viewers may ask for one too
    add("POST", f"{PREFIX}/pricing/estimate", page(money.estimate, change=False))
