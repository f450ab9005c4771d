"""Lua scripts, loaded once per client and called by SHA (redis-py reloads them after NOSCRIPT)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from redis.asyncio import Redis
from redis.commands.core import AsyncScript


def _read(name: str) -> str:
    return resources.files("gateway.store").joinpath(name).read_text(encoding="utf-8")


def _team_script(name: str) -> str:
    """A script that acts for a team key gets the shared ``verify_key`` prepended."""
    return _read("common.lua") + "\n" + _read(name)


@dataclass(frozen=True, slots=True)
class Scripts:
    authenticate: AsyncScript
    load_request: AsyncScript
    begin_request: AsyncScript
    delete_team: AsyncScript
    revoke_key: AsyncScript

    @classmethod
    def register(cls, redis: Redis) -> Scripts:
        return cls(
            authenticate=redis.register_script(_team_script("authenticate.lua")),
            load_request=redis.register_script(_team_script("load_request.lua")),
            begin_request=redis.register_script(_team_script("begin_request.lua")),
            delete_team=redis.register_script(_read("delete_team.lua")),
            revoke_key=redis.register_script(_read("revoke_key.lua")),
        )
