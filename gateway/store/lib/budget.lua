-- All money is integer micro-dollars.
-- Budget alerts fire once per threshold per period, when committed spend (settled plus
-- reserved) first reaches it. Returns the highest newly crossed threshold, or 0.
local ALERT_LEVELS = {50, 80, 100}
local function budget_alert(spend_key, budget)
  if not budget or budget <= 0 then return 0 end
  local v = redis.call('HMGET', spend_key, 'reserved', 'settled', 'alerted')
  local committed = (tonumber(v[1]) or 0) + (tonumber(v[2]) or 0)
  local alerted = tonumber(v[3]) or 0
  local level = 0
  for _, l in ipairs(ALERT_LEVELS) do
    if committed * 100 >= budget * l and l > alerted then level = l end
  end
  if level > 0 then redis.call('HSET', spend_key, 'alerted', level) end
  return level
end
