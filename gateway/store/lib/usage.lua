-- Usage counters of a day, by model and key.
local function usage_add(usage_key, ttl, pairs)
  for i = 1, #pairs, 2 do
    redis.call('HINCRBY', usage_key, pairs[i], pairs[i + 1])
  end
  redis.call('EXPIRE', usage_key, ttl)
end

-- Takes back what admitting submits counted when RunComfy refused the job they made (no job
-- was created: the team's input, or nothing reached RunComfy): n submits of one key under
-- one outcome, and what they were said to save. Counters that reach 0 are removed, so a
-- refused model leaves no usage row. The submit rate stays charged.
local function usage_uncount(usage_key, ttl, kid, target, outcome, n, saved)
  local m = 'm:' .. target .. ':'
  local counters = {'requests', 'key:' .. kid .. ':requests', outcome, m .. 'requests', m .. outcome}
  if saved > 0 then
    counters[#counters + 1] = 'saved'
    counters[#counters + 1] = m .. 'saved'
  end
  for i, field in ipairs(counters) do
    local by = i > 5 and saved or n
    if redis.call('HINCRBY', usage_key, field, 0 - by) <= 0 then
      redis.call('HDEL', usage_key, field)
    end
  end
  redis.call('EXPIRE', usage_key, ttl)
end
