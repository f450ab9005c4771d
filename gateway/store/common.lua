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
