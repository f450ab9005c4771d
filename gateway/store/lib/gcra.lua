-- GCRA: one stored "theoretical arrival time" per limit; smooth, exact, no window boundary.
-- The state is stored with the emission interval it was made under ("<tat> <interval>"), so a
-- limit changed since is read as what it means, not as seconds: the requests still
-- outstanding, (tat - now) / old interval, at most one burst (more could never have been
-- admitted), each worth one interval of the limit in force now. Raising or clearing a limit
-- admits at once; lowering it applies at once.
-- Returns allowed, the TAT after this request (unchanged on a refusal), seconds until
-- allowed, requests left after this one.
local function gcra_peek(key, per_minute, burst, now)
  local interval = 60 / per_minute
  local capacity = interval * burst
  local stored = redis.call('GET', key)
  local tat = now
  if stored then
    local t, i = string.match(stored, '^(%S+) (%S+)$')
    t, i = tonumber(t or stored), tonumber(i)
    if t and t > now then
      local outstanding = (t - now) / (i or interval)
      tat = now + math.min(outstanding, burst) * interval
    end
  end
  local new_tat = tat + interval
  if new_tat - now > capacity + 1e-9 then
    return false, tat, new_tat - now - capacity, 0
  end
  return true, new_tat, 0, math.floor((capacity - (new_tat - now)) / interval + 1e-9)
end

local function gcra_commit(key, per_minute, new_tat, now)
  redis.call('SET', key, string.format('%.6f %.17g', new_tat, 60 / per_minute),
    'PX', math.ceil((new_tat - now) * 1000) + 1000)
end
