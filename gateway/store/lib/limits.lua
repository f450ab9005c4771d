-- A team's limits hash as a table.
local function read_limits(key)
  local L = {}
  local flat = redis.call('HGETALL', key)
  for i = 1, #flat, 2 do L[flat[i]] = flat[i + 1] end
  return L
end
