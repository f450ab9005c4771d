"""The Redis key layout, version 1.

Everything one team request touches lives in that team's **shard**, ``{t:<shard>}``: a Redis
Cluster hash tag, where ``<shard>`` is a random tag carried inside the team's API keys. The
gateway therefore knows the shard before it looks anything up, every multi-key script stays
inside one Redis Cluster hash slot, and another team's records are simply not addressable with
your key. (A *slot* elsewhere is a concurrency place: a team's running job, or an
``account_slot`` under the account-wide cap.)

    <ns>:v1:teams                        hash  team_id -> shard         bound: admin actions
    <ns>:v1:pricing                      hash  price overrides (JSON)   bound: admin actions
    <ns>:v1:identity-secret              str   key of request identities created once
    <ns>:v1:{t:<shard>}:team             hash  team record               bound: admin actions
    <ns>:v1:{t:<shard>}:keys             set   key ids of the team       bound: admin actions
    <ns>:v1:{t:<shard>}:key:<kid>        hash  key record (hash only,    bound: admin actions
                                               expiry, successor)
    <ns>:v1:{t:<shard>}:policy           hash  dedup policy              bound: admin actions
    <ns>:v1:{t:<shard>}:req:<rid>        hash  gateway request record    TTL: request ttl
    <ns>:v1:{t:<shard>}:unknown          zset  submits of unknown outcome TTL: request ttl, 10,000
    <ns>:v1:{t:<shard>}:job:<jid>        hash  upstream job              TTL: job lifetime, then
                                                                         request ttl once ended
    <ns>:v1:{t:<shard>}:inflight:<hash>  str   identity -> job in flight TTL: job lifetime
    <ns>:v1:{t:<shard>}:dedup:<hash>     str   identity -> succeeded job TTL: cache ttl
    <ns>:v1:{t:<shard>}:cidx:<target>    set   cached identities         TTL: cache ttl
    <ns>:v1:{t:<shard>}:cidx             set   targets with cached ones  TTL: cache ttl
    <ns>:v1:{t:<shard>}:job:<jid>:hooks  set   followers with a webhook  TTL: request ttl
    <ns>:v1:{t:<shard>}:limits           hash  quotas, access lists     bound: admin actions
    <ns>:v1:{t:<shard>}:running          zset  jobs holding a slot      bound: jobs in flight
    <ns>:v1:{t:<shard>}:queue            zset  jobs waiting for a slot  bound: queue depth
    <ns>:v1:{t:<shard>}:qseq             str   queue order counter      -
    <ns>:v1:{t:<shard>}:gcra[:<kid>]     str   submit rate state        TTL: until refilled
    <ns>:v1:{t:<shard>}:pgcra:<kid>      str   poll rate state          TTL: until refilled
    <ns>:v1:{t:<shard>}:spend:<period>[:<kid>] hash reserved, settled, alerted (micro-dollars);
                                               per day, week and month  TTL: period end + retention
    <ns>:v1:{t:<shard>}:usage:<day>      hash  usage counters by model  TTL: usage retention
                                               and key (daily limits count these)
    <ns>:v1:{t:<shard>}:unreconciled     hash  job -> unknown-outcome reservation  admin resolves
    <ns>:v1:{q}:waiting                  zset  team shards with queued jobs  bound: teams
    <ns>:v1:{g}:running                  zset  "<shard>|<jid>" holding an bound: account-wide cap
                                               account slot, by expiry
    <ns>:v1:{poll}:due                   zset  "<shard>|<jid>" by due time bound: jobs in flight
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

from gateway.common.records import record

LAYOUT_VERSION = "v1"
UNKNOWN_SUBMITS_CAP = 10_000


@record
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

    def team_tag(self, shard: str) -> str:
        return f"{self.root}:{{t:{shard}}}"

    def team(self, shard: str) -> str:
        return f"{self.team_tag(shard)}:team"

    def team_keys(self, shard: str) -> str:
        return f"{self.team_tag(shard)}:keys"

    def key(self, shard: str, kid: str) -> str:
        return f"{self.team_tag(shard)}:key:{kid}"

    def policy(self, shard: str) -> str:
        return f"{self.team_tag(shard)}:policy"

    def request(self, shard: str, rid: str) -> str:
        return f"{self.team_tag(shard)}:req:{rid}"

    def unknown_submits(self, shard: str) -> str:
        return f"{self.team_tag(shard)}:unknown"

    def job_prefix(self, shard: str) -> str:
        return f"{self.team_tag(shard)}:job:"

    def job(self, shard: str, jid: str) -> str:
        return self.job_prefix(shard) + jid

    def dedup_prefix(self, shard: str) -> str:
        """Prefix of the team's cached entries, which scripts name themselves (same shard)."""
        return f"{self.team_tag(shard)}:dedup:"

    def dedup(self, shard: str, identity: str) -> str:
        return self.dedup_prefix(shard) + identity

    def job_hooks(self, shard: str, jid: str) -> str:
        return f"{self.job(shard, jid)}:hooks"

    def delivery_due(self) -> str:
        return f"{self.root}:{{hooks}}:due"

    def delivery(self, delivery_id: str) -> str:
        return f"{self.root}:{{hooks}}:d:{delivery_id}"

    def inflight(self, shard: str, identity: str) -> str:
        return f"{self.team_tag(shard)}:inflight:{identity}"

    def cache_index(self, shard: str, target: str) -> str:
        return f"{self.team_tag(shard)}:cidx:{target}"

    def cache_targets(self, shard: str) -> str:
        return f"{self.team_tag(shard)}:cidx"

    def limits(self, shard: str) -> str:
        return f"{self.team_tag(shard)}:limits"

    def running(self, shard: str) -> str:
        return f"{self.team_tag(shard)}:running"

    def queue(self, shard: str) -> str:
        return f"{self.team_tag(shard)}:queue"

    def queue_seq(self, shard: str) -> str:
        return f"{self.team_tag(shard)}:qseq"

    def unreconciled(self, shard: str) -> str:
        return f"{self.team_tag(shard)}:unreconciled"

    def team_prefix(self, shard: str) -> str:
        """Prefix of the team's period keys, which scripts name themselves (same shard)."""
        return f"{self.team_tag(shard)}:"

    def spend(self, shard: str, period: str, kid: str = "") -> str:
        return f"{self.team_tag(shard)}:spend:{period}" + (f":{kid}" if kid else "")

    def usage(self, shard: str, day: str) -> str:
        return f"{self.team_tag(shard)}:usage:{day}"

    def queue_waiting(self) -> str:
        return f"{self.root}:{{q}}:waiting"

    def account_running(self) -> str:
        return f"{self.root}:{{g}}:running"

    def poll_due(self) -> str:
        return f"{self.root}:{{poll}}:due"

    def admin_tokens(self) -> str:
        return f"{self.root}:{{admin}}:tokens"

    def admin_token_prefix(self) -> str:
        """Prefix of admin token records, which scripts name themselves (same shard)."""
        return f"{self.root}:{{admin}}:token:"

    def admin_token(self, token_id: str) -> str:
        return self.admin_token_prefix() + token_id

    def admin_names(self) -> str:
        return f"{self.root}:{{admin}}:names"

    def audit_log(self) -> str:
        return f"{self.root}:{{audit}}:log"
