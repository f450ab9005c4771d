"""Lua scripts, loaded once per client and called by SHA (redis-py reloads them after NOSCRIPT).

Every script gets ``common.lua`` (key verification, Redis's clock, terminal states) and
``quota.lua`` (periods, GCRA, budget alerts, usage counters) prepended.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from importlib import resources

from redis.commands.core import AsyncScript

from gateway.store.client import Store


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
    dispatch: AsyncScript
    requeue: AsyncScript
    resolve_unreconciled: AsyncScript
    global_slot: AsyncScript
    zrem_if_older: AsyncScript
    create_key: AsyncScript
    rotate_key: AsyncScript
    now: AsyncScript
    admin_token_create: AsyncScript
    admin_token_revoke: AsyncScript
    replace_hash: AsyncScript
    purge_target: AsyncScript
    delivery_enqueue: AsyncScript

    @classmethod
    def register(cls, redis: Store, clock_offset: float = 0.0) -> Scripts:
        """``clock_offset`` shifts Redis's clock as the scripts see it (tests of period ends)."""
        prelude = "\n".join(
            [f"local CLOCK_OFFSET = {clock_offset!r}", _read("common.lua"), _read("quota.lua")]
        )
        return cls(
            **{
                f.name: redis.register_script(prelude + "\n" + _read(f"{f.name}.lua"))
                for f in fields(cls)
            }
        )
