-- uses: clock
-- Creates an API key only while its team exists, with its expiry by Redis's clock.
-- Reply: {1, expires ('' none)} or {0, reason}; reason: no_team | expiry_passed.
local team_record = KEYS[1]
local team_keys = KEYS[2]     -- set of the team's kids
local key_record = KEYS[3]    -- the new key's record
local key_digest = ARGV[1]
local team_id = ARGV[2]
local name = ARGV[3]
local prefix = ARGV[4]        -- the key's public prefix
local created_at = ARGV[5]
local kid = ARGV[6]
local expiry_kind = ARGV[7]   -- '' none, 'in' seconds from now, 'at' epoch seconds
local expiry_value = ARGV[8]

if redis.call('EXISTS', team_record) == 0 then return {0, 'no_team'} end
local expires = ''
if expiry_kind ~= '' then
  local now = now_seconds()
  local at = tonumber(expiry_value)
  if expiry_kind == 'in' then at = now + at end
  if at <= now then return {0, 'expiry_passed'} end
  expires = string.format('%.6f', at)
end
redis.call('HSET', key_record, 'hash', key_digest, 'team', team_id, 'name', name,
  'prefix', prefix, 'created_at', created_at)
if expires ~= '' then redis.call('HSET', key_record, 'expires', expires) end
redis.call('SADD', team_keys, kid)
return {1, expires}
