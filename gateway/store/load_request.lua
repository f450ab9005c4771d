-- KEYS[1] key record, KEYS[2] request record; ARGV[1] SHA-256 of the presented key.
-- Verifies the key and reads the request in one round trip.
-- Returns {1, team_id, field, value, ...}, {2, team_id} when the request is unknown, or {0, reason}.
local team, err = verify_key(KEYS[1], ARGV[1])
if not team then return {0, err} end
local rec = redis.call('HGETALL', KEYS[2])
if #rec == 0 then return {2, team} end
local out = {1, team}
for i = 1, #rec do out[#out + 1] = rec[i] end
return out
