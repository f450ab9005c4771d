-- uses: clock
-- Rotates an API key: the new key gets the old one's team, name, per-key dedup policy and
-- per-key limits (not its counters: spend and rates of the period start afresh for it); the
-- old one expires after the grace period (never later than it already would). A key is rotated
-- once: rotate its successor next.
-- Reply: {1, old key's expires, new key's expires ('' none)} or {0, reason}; reason:
-- unknown_key | revoked_key | already_rotated | expiry_passed.
local old_key_record = KEYS[1]
local team_keys = KEYS[2]        -- set of the team's kids
local new_key_record = KEYS[3]
local policy_hash = KEYS[4]      -- the team's dedup policy
local team_limits = KEYS[5]
local new_digest = ARGV[1]
local new_kid = ARGV[2]
local new_prefix = ARGV[3]       -- the new key's public prefix
local created_at = ARGV[4]
local grace_seconds = tonumber(ARGV[5])
local old_key_id = ARGV[6]
local new_key_id = ARGV[7]
local expiry_kind = ARGV[8]      -- the new key's: '' none, 'in' or 'at' (as in create_key)
local expiry_value = ARGV[9]
local old_kid = ARGV[10]

local old = redis.call('HMGET', old_key_record, 'team', 'name', 'revoked_at', 'replaced_by',
  'expires')
if not old[1] then return {0, 'unknown_key'} end
if old[3] and old[3] ~= '' then return {0, 'revoked_key'} end
if old[4] and old[4] ~= '' then return {0, 'already_rotated'} end
local now = now_seconds()
local new_expires = ''
if expiry_kind ~= '' then
  local at = tonumber(expiry_value)
  if expiry_kind == 'in' then at = now + at end
  if at <= now then return {0, 'expiry_passed'} end
  new_expires = string.format('%.6f', at)
end
local old_expires = now + grace_seconds
if old[5] and old[5] ~= '' and tonumber(old[5]) < old_expires then
  old_expires = tonumber(old[5])
end
old_expires = string.format('%.6f', old_expires)
redis.call('HSET', new_key_record, 'hash', new_digest, 'team', old[1], 'name', old[2],
  'prefix', new_prefix, 'created_at', created_at, 'rotated_from', old_key_id)
if new_expires ~= '' then redis.call('HSET', new_key_record, 'expires', new_expires) end
redis.call('SADD', team_keys, new_kid)
redis.call('HSET', old_key_record, 'expires', old_expires, 'replaced_by', new_key_id)
local policy = redis.call('HGET', policy_hash, 'key:' .. old_key_id)
if policy then redis.call('HSET', policy_hash, 'key:' .. new_key_id, policy) end
local limits = redis.call('HGETALL', team_limits)
local old_prefix = 'key:' .. old_kid .. ':'
for i = 1, #limits, 2 do
  local field = limits[i]
  if string.sub(field, 1, #old_prefix) == old_prefix then
    local name = string.sub(field, #old_prefix + 1)
    redis.call('HSET', team_limits, 'key:' .. new_kid .. ':' .. name, limits[i + 1])
  end
end
return {1, old_expires, new_expires}
