-- KEYS[1] due set; ARGV[1] member, ARGV[2] delay seconds, ARGV[3] 'NX' (only if absent,
-- used to heal a job that lost its schedule) or 'ANY'. Scores use Redis's clock.
local t = redis.call('TIME')
local at = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[2])
if ARGV[3] == 'NX' then
  return redis.call('ZADD', KEYS[1], 'NX', at, ARGV[1])
end
return redis.call('ZADD', KEYS[1], at, ARGV[1])
