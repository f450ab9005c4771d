-- Shared by every script that acts for a team key: prepended to each script's text.
-- The key record lives in the team's slot; comparing SHA-256 digests here is safe against
-- timing attacks because a caller controls the key, not its digest.
local function verify_key(key_rec, presented_hash)
  local rec = redis.call('HMGET', key_rec, 'hash', 'team', 'revoked_at')
  if not rec[1] or rec[1] ~= presented_hash then
    return nil, 'unknown_key'
  end
  if rec[3] and rec[3] ~= '' then
    return nil, 'revoked_key'
  end
  return rec[2], nil
end

-- Redis's clock is the one clock of all replicas.
local function now_seconds()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local TERMINAL = {succeeded = true, failed = true, cancelled = true, rejected = true, unknown = true}
