-- KEYS[1] key record, KEYS[2] new request record.
-- ARGV[1] SHA-256 of the presented key, ARGV[2] TTL seconds, ARGV[3..] field, value pairs.
-- Verifies the key and records the request *before* anything is sent upstream, so no submit can
-- reach RunComfy unrecorded. Returns {1, team_id}, {0, reason} or {3, 'exists'}.
local team, err = verify_key(KEYS[1], ARGV[1])
if not team then return {0, err} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {3, 'exists'} end
local fields = {'team', team}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
return {1, team}
