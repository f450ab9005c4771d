-- Schedules a member of a due set after a delay by Redis's clock (never shifted).
-- Reply: ZADD's count of added members.
local due_set = KEYS[1]
local member = ARGV[1]
local delay_seconds = tonumber(ARGV[2])
local mode = ARGV[3]  -- 'NX' only if absent (heals a job that lost its schedule), or 'ANY'

local t = redis.call('TIME')
local at = tonumber(t[1]) + tonumber(t[2]) / 1000000 + delay_seconds
if mode == 'NX' then
  return redis.call('ZADD', due_set, 'NX', at, member)
end
return redis.call('ZADD', due_set, at, member)
