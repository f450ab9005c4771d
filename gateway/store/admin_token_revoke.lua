-- Revokes an admin token; idempotent: a revoked token keeps its first revocation. Its name
-- becomes free again. Refuses (when asked) to revoke the last active admin, since without the
-- bootstrap token nobody could administer the gateway any more.
-- Reply: the token's record as a flat field/value list, {} when there is no such token, or
-- {'last_admin'}.
local token_record = KEYS[1]
local active_names = KEYS[2]          -- active name -> token id
local token_id = ARGV[1]
local revoked_at = ARGV[2]
local revoked_by = ARGV[3]
local keep_an_admin = ARGV[4] == '1'  -- refuse revoking the last active admin
local token_prefix = ARGV[5]          -- prefix of token records (same shard)

local rec = redis.call('HMGET', token_record, 'name', 'role', 'revoked_at')
if not rec[1] then return {} end
if not rec[3] or rec[3] == '' then
  if keep_an_admin and rec[2] == 'admin' then
    local admins = 0
    for _, id in ipairs(redis.call('HVALS', active_names)) do
      if redis.call('HGET', token_prefix .. id, 'role') == 'admin' then admins = admins + 1 end
    end
    if admins <= 1 then return {'last_admin'} end
  end
  redis.call('HSET', token_record, 'revoked_at', revoked_at, 'revoked_by', revoked_by)
  if redis.call('HGET', active_names, rec[1]) == token_id then
    redis.call('HDEL', active_names, rec[1])
  end
end
return redis.call('HGETALL', token_record)
