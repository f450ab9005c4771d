"""Lua scripts, loaded once per client and called by SHA (redis-py reloads them after NOSCRIPT).

Every script gets ``common.lua`` (key verification, Redis's clock, terminal states) prepended.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from importlib import resources

from redis.asyncio import Redis
from redis.commands.core import AsyncScript


def _read(name: str) -> str:
    return resources.files("gateway.store").joinpath(name).read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class Scripts:
    authenticate: AsyncScript
    team_policy: AsyncScript
    load_request: AsyncScript
    admit: AsyncScript
    job_update: AsyncScript
    detach: AsyncScript
    reattach: AsyncScript
    poll_claim: AsyncScript
    poll_schedule: AsyncScript
    delete_team: AsyncScript
    revoke_key: AsyncScript
    create_key: AsyncScript
    rotate_key: AsyncScript
    now: AsyncScript
    admin_token_create: AsyncScript
    admin_token_revoke: AsyncScript

    @classmethod
    def register(cls, redis: Redis) -> Scripts:
        common = _read("common.lua")
        return cls(
            **{
                f.name: redis.register_script(common + "\n" + _read(f"{f.name}.lua"))
                for f in fields(cls)
            }
        )
