-- KEYS[1] old key record, KEYS[2] team key set, KEYS[3] new key record, KEYS[4] team policy,
-- KEYS[5] team limits.
-- ARGV: 1 new key digest, 2 new kid, 3 new public prefix, 4 created_at, 5 grace seconds,
-- 6 old key id, 7 new key id, 8 new key's expiry: '' none, 'in' or 'at' (as in create_key),
-- 9 its value, 10 old kid.
-- The new key gets the old one's team, name, per-key dedup policy and per-key limits (not its
-- counters: spend and rates of the period start afresh for it); the old one expires after
-- the grace period (never later than it already would). A key is rotated once: rotate its
-- successor next. Returns {1, old key's expires, new key's expires ('' none)} or {0, reason}:
-- unknown_key | revoked_key | already_rotated | expiry_passed.
local old = redis.call('HMGET', KEYS[1], 'team', 'name', 'revoked_at', 'replaced_by', 'expires')
if not old[1] then return {0, 'unknown_key'} end
if old[3] and old[3] ~= '' then return {0, 'revoked_key'} end
if old[4] and old[4] ~= '' then return {0, 'already_rotated'} end
local now = now_seconds()
local new_expires = ''
if ARGV[8] ~= '' then
  local at = tonumber(ARGV[9])
  if ARGV[8] == 'in' then at = now + at end
  if at <= now then return {0, 'expiry_passed'} end
  new_expires = string.format('%.6f', at)
end
local old_expires = now + tonumber(ARGV[5])
if old[5] and old[5] ~= '' and tonumber(old[5]) < old_expires then
  old_expires = tonumber(old[5])
end
old_expires = string.format('%.6f', old_expires)
redis.call('HSET', KEYS[3], 'hash', ARGV[1], 'team', old[1], 'name', old[2],
  'prefix', ARGV[3], 'created_at', ARGV[4], 'rotated_from', ARGV[6])
if new_expires ~= '' then redis.call('HSET', KEYS[3], 'expires', new_expires) end
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[1], 'expires', old_expires, 'replaced_by', ARGV[7])
local policy = redis.call('HGET', KEYS[4], 'key:' .. ARGV[6])
if policy then redis.call('HSET', KEYS[4], 'key:' .. ARGV[7], policy) end
local limits = redis.call('HGETALL', KEYS[5])
local old_prefix = 'key:' .. ARGV[10] .. ':'
for i = 1, #limits, 2 do
  local field = limits[i]
  if string.sub(field, 1, #old_prefix) == old_prefix then
    local name = string.sub(field, #old_prefix + 1)
    redis.call('HSET', KEYS[5], 'key:' .. ARGV[2] .. ':' .. name, limits[i + 1])
  end
end
return {1, old_expires, new_expires}
