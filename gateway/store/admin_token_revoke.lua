-- KEYS[1] the token's record, KEYS[2] active name -> token id.
-- ARGV: 1 token id, 2 revoked_at, 3 revoked_by, 4 '1' to refuse revoking the last active admin,
-- 5 prefix of token records (same slot).
-- Idempotent: a revoked token keeps its first revocation. Its name becomes free again.
-- Returns the record, {} when there is no such token, or {'last_admin'}.
local rec = redis.call('HMGET', KEYS[1], 'name', 'role', 'revoked_at')
if not rec[1] then return {} end
if not rec[3] or rec[3] == '' then
  if ARGV[4] == '1' and rec[2] == 'admin' then
    local admins = 0
    for _, id in ipairs(redis.call('HVALS', KEYS[2])) do
      if redis.call('HGET', ARGV[5] .. id, 'role') == 'admin' then admins = admins + 1 end
    end
    if admins <= 1 then return {'last_admin'} end
  end
  redis.call('HSET', KEYS[1], 'revoked_at', ARGV[2], 'revoked_by', ARGV[3])
  if redis.call('HGET', KEYS[2], rec[1]) == ARGV[1] then redis.call('HDEL', KEYS[2], rec[1]) end
end
return redis.call('HGETALL', KEYS[1])
