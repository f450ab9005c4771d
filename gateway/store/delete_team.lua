-- Removes a team and all its keys in one atomic step, so no key outlives its team.
-- Reply: 1 deleted, 0 no such team, -1 the team's keys changed meanwhile (the caller retries).
local team_record = KEYS[1]
local team_keys = KEYS[2]              -- set of the team's kids
local key_records = {unpack(KEYS, 3)}  -- every key record of the team the caller saw
local key_count = tonumber(ARGV[1])    -- how many the caller saw

if redis.call('EXISTS', team_record) == 0 then return 0 end
if redis.call('SCARD', team_keys) ~= key_count then return -1 end
for _, key_record in ipairs(key_records) do
  if redis.call('EXISTS', key_record) == 0 then return -1 end
end
redis.call('DEL', team_record, team_keys, unpack(key_records))
return 1
