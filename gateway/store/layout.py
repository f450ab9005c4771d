"""The Redis key layout, version 1.

Everything one team request touches lives in that team's hash slot, ``{t:<slot>}``, where
``<slot>`` is a random tag carried inside the team's API keys. The gateway therefore knows the
slot before it looks anything up, every multi-key script stays inside one Redis Cluster slot, and
another team's records are simply not addressable with your key.

    <ns>:v1:teams                        hash  team_id -> slot          bound: admin actions
    <ns>:v1:pricing                      hash  price overrides (JSON)   bound: admin actions
    <ns>:v1:identity-secret              str   key of request identities created once
    <ns>:v1:{t:<slot>}:team              hash  team record               bound: admin actions
    <ns>:v1:{t:<slot>}:keys              set   key ids of the team       bound: admin actions
    <ns>:v1:{t:<slot>}:key:<kid>         hash  key record (hash only,    bound: admin actions
                                               expiry, successor)
    <ns>:v1:{t:<slot>}:policy            hash  dedup policy              bound: admin actions
    <ns>:v1:{t:<slot>}:req:<rid>         hash  gateway request record    TTL: request ttl
    <ns>:v1:{t:<slot>}:unknown           zset  submits of unknown outcome TTL: request ttl, 10,000
    <ns>:v1:{t:<slot>}:job:<jid>         hash  upstream job              TTL: job lifetime, then
                                                                         request ttl once ended
    <ns>:v1:{t:<slot>}:inflight:<hash>   str   identity -> job in flight TTL: job lifetime
    <ns>:v1:{t:<slot>}:dedup:<hash>      str   identity -> succeeded job TTL: cache ttl
    <ns>:v1:{t:<slot>}:cidx:<target>     set   cached identities         TTL: cache ttl
    <ns>:v1:{t:<slot>}:cidx              set   targets with cached ones  TTL: cache ttl
    <ns>:v1:{t:<slot>}:job:<jid>:hooks   set   followers with a webhook  TTL: request ttl
    <ns>:v1:{t:<slot>}:limits            hash  quotas, access lists     bound: admin actions
    <ns>:v1:{t:<slot>}:running           zset  jobs holding a slot      bound: jobs in flight
    <ns>:v1:{t:<slot>}:queue             zset  jobs waiting for a slot  bound: queue depth
    <ns>:v1:{t:<slot>}:qseq              str   queue order counter      -
    <ns>:v1:{t:<slot>}:gcra[:<kid>]      str   submit rate state        TTL: until refilled
    <ns>:v1:{t:<slot>}:pgcra:<kid>       str   poll rate state          TTL: until refilled
    <ns>:v1:{t:<slot>}:spend:<period>[:<kid>] hash reserved, settled, alerted (micro-dollars);
                                               per day, week and month  TTL: period end + retention
    <ns>:v1:{t:<slot>}:usage:<day>       hash  usage counters by model  TTL: usage retention
                                               and key (daily limits count these)
    <ns>:v1:{t:<slot>}:unreconciled      hash  job -> unknown-outcome reservation  admin resolves
    <ns>:v1:{q}:waiting                  zset  team slots with queued jobs  bound: teams
    <ns>:v1:{poll}:due                   zset  "<slot>|<jid>" by due time bound: jobs in flight
    <ns>:v1:{hooks}:due                  zset  webhook deliveries by time bound: pending deliveries
    <ns>:v1:{hooks}:d:<id>               hash  one delivery              TTL: request ttl
    <ns>:v1:{admin}:tokens               set   named admin token ids     bound: admin actions
    <ns>:v1:{admin}:token:<id>           hash  admin token (hash only)   bound: admin actions
    <ns>:v1:{admin}:names                hash  active name -> token id   bound: admin actions
    <ns>:v1:{audit}:log                  stream every admin change     bound: admin actions, never
                                                                         trimmed by the gateway

The ``v1`` segment is the layout version: a replica with an incompatible layout uses ``v2`` keys, so
old and new replicas can share one Redis during a rolling upgrade without misreading each other.
"""

from __future__ import annotations

from dataclasses import dataclass

LAYOUT_VERSION = "v1"
UNKNOWN_SUBMITS_CAP = 10_000


@dataclass(frozen=True, slots=True)
class Layout:
    """Builds key names under one namespace."""

    namespace: str

    @property
    def root(self) -> str:
        return f"{self.namespace}:{LAYOUT_VERSION}"

    def team_index(self) -> str:
        return f"{self.root}:teams"

    def pricing(self) -> str:
        return f"{self.root}:pricing"

    def identity_secret(self) -> str:
        return f"{self.root}:identity-secret"

    def team_tag(self, slot: str) -> str:
        return f"{self.root}:{{t:{slot}}}"

    def team(self, slot: str) -> str:
        return f"{self.team_tag(slot)}:team"

    def team_keys(self, slot: str) -> str:
        return f"{self.team_tag(slot)}:keys"

    def key(self, slot: str, kid: str) -> str:
        return f"{self.team_tag(slot)}:key:{kid}"

    def policy(self, slot: str) -> str:
        return f"{self.team_tag(slot)}:policy"

    def request(self, slot: str, rid: str) -> str:
        return f"{self.team_tag(slot)}:req:{rid}"

    def unknown_submits(self, slot: str) -> str:
        return f"{self.team_tag(slot)}:unknown"

    def job_prefix(self, slot: str) -> str:
        return f"{self.team_tag(slot)}:job:"

    def job(self, slot: str, jid: str) -> str:
        return self.job_prefix(slot) + jid

    def dedup_prefix(self, slot: str) -> str:
        """Prefix of the slot's cached entries, which scripts name themselves (same slot)."""
        return f"{self.team_tag(slot)}:dedup:"

    def dedup(self, slot: str, identity: str) -> str:
        return self.dedup_prefix(slot) + identity

    def job_hooks(self, slot: str, jid: str) -> str:
        return f"{self.job(slot, jid)}:hooks"

    def delivery_due(self) -> str:
        return f"{self.root}:{{hooks}}:due"

    def delivery(self, delivery_id: str) -> str:
        return f"{self.root}:{{hooks}}:d:{delivery_id}"

    def inflight(self, slot: str, identity: str) -> str:
        return f"{self.team_tag(slot)}:inflight:{identity}"

    def cache_index(self, slot: str, target: str) -> str:
        return f"{self.team_tag(slot)}:cidx:{target}"

    def cache_targets(self, slot: str) -> str:
        return f"{self.team_tag(slot)}:cidx"

    def limits(self, slot: str) -> str:
        return f"{self.team_tag(slot)}:limits"

    def running(self, slot: str) -> str:
        return f"{self.team_tag(slot)}:running"

    def queue(self, slot: str) -> str:
        return f"{self.team_tag(slot)}:queue"

    def queue_seq(self, slot: str) -> str:
        return f"{self.team_tag(slot)}:qseq"

    def unreconciled(self, slot: str) -> str:
        return f"{self.team_tag(slot)}:unreconciled"

    def team_prefix(self, slot: str) -> str:
        """Prefix of the team's period keys, which scripts name themselves (same slot)."""
        return f"{self.team_tag(slot)}:"

    def spend(self, slot: str, period: str, kid: str = "") -> str:
        return f"{self.team_tag(slot)}:spend:{period}" + (f":{kid}" if kid else "")

    def usage(self, slot: str, day: str) -> str:
        return f"{self.team_tag(slot)}:usage:{day}"

    def queue_waiting(self) -> str:
        return f"{self.root}:{{q}}:waiting"

    def account_running(self) -> str:
        return f"{self.root}:{{g}}:running"

    def poll_due(self) -> str:
        return f"{self.root}:{{poll}}:due"

    def admin_tokens(self) -> str:
        return f"{self.root}:{{admin}}:tokens"

    def admin_token_prefix(self) -> str:
        """Prefix of admin token records, which scripts name themselves (same slot)."""
        return f"{self.root}:{{admin}}:token:"

    def admin_token(self, token_id: str) -> str:
        return self.admin_token_prefix() + token_id

    def admin_names(self) -> str:
        return f"{self.root}:{{admin}}:names"

    def audit_log(self) -> str:
        return f"{self.root}:{{audit}}:log"
