-- Redis's clock is the one clock of all replicas. CLOCK_OFFSET is defined by the loader
-- (gateway/store/scripts.py): 0 outside of tests.
local function now_seconds()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000 + CLOCK_OFFSET
end
