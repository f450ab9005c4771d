-- uses: clock
-- The key record lives in the team's shard; comparing SHA-256 digests here is safe against
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
