-- Shared by every script that acts for a team key: prepended to each script's text.
-- Redis's clock is the one clock of all replicas.
-- CLOCK_OFFSET is defined by the loader (gateway/store/scripts.py): 0 outside of tests.
local function now_seconds()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000 + CLOCK_OFFSET
end

-- The key record lives in the team's slot; comparing SHA-256 digests here is safe against
-- timing attacks because a caller controls the key, not its digest. A key stops working at its
-- expiry (set when created, or by a rotation's grace period) by Redis's clock.
local function verify_key(key_rec, presented_hash)
  local rec = redis.call('HMGET', key_rec, 'hash', 'team', 'revoked_at', 'expires')
  if not rec[1] or rec[1] ~= presented_hash then
    return nil, 'unknown_key'
  end
  if rec[3] and rec[3] ~= '' then
    return nil, 'revoked_key'
  end
  if rec[4] and rec[4] ~= '' and now_seconds() >= tonumber(rec[4]) then
    return nil, 'expired_key'
  end
  return rec[2], nil
end

-- The most restrictive of the team's default, the key's and the model's dedup policy.
local function resolve_policy(policy_key, kid, target, default)
  local rank = {off = 0, inflight = 1, seeded = 2, cache = 3}
  local p = redis.call('HMGET', policy_key, 'default', 'key:' .. kid, 'model:' .. target)
  local policy = default
  if p[1] and rank[p[1]] then policy = p[1] end
  for i = 2, 3 do
    if p[i] and rank[p[i]] and rank[p[i]] < rank[policy] then policy = p[i] end
  end
  return policy
end

local TERMINAL = {succeeded = true, failed = true, cancelled = true, rejected = true, unknown = true}
