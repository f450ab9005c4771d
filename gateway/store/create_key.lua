-- KEYS[1] team record, KEYS[2] team key set, KEYS[3] the new key record.
-- ARGV: 1 key digest, 2 team id, 3 name, 4 public prefix, 5 created_at, 6 kid,
-- 7 expiry: '' none, 'in' seconds from now, 'at' epoch seconds; 8 its value.
-- Creates the key only while the team exists, with its expiry by Redis's clock.
-- Returns {1, expires ('' none)} or {0, reason}: no_team | expiry_passed.
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 'no_team'} end
local expires = ''
if ARGV[7] ~= '' then
  local now = now_seconds()
  local at = tonumber(ARGV[8])
  if ARGV[7] == 'in' then at = now + at end
  if at <= now then return {0, 'expiry_passed'} end
  expires = string.format('%.6f', at)
end
redis.call('HSET', KEYS[3], 'hash', ARGV[1], 'team', ARGV[2], 'name', ARGV[3],
  'prefix', ARGV[4], 'created_at', ARGV[5])
if expires ~= '' then redis.call('HSET', KEYS[3], 'expires', expires) end
redis.call('SADD', KEYS[2], ARGV[6])
return {1, expires}
