-- uses: usage
-- Spend records: a new job reserves its estimate on the team's and its key's records of the day,
-- the ISO week and the month it was admitted in, whether or not a budget is set, so a budget
-- set mid-period, or moved to another kind of period, counts all of that period's spend. The
-- job keeps their period ids in 'spend_periods' ("<day> <week> <month>") next to 'spend_key'
-- and 'key_spend_key' (the two records of the budget period, all a job of the previous version
-- has, and all that version settles).
local SPEND_KINDS = {'d', 'w', 'm'}

local function spend_records(tag, ids, kid)
  local out = {}
  for _, kind in ipairs(SPEND_KINDS) do
    out[#out + 1] = tag .. 'spend:' .. ids[kind]
    out[#out + 1] = tag .. 'spend:' .. ids[kind] .. ':' .. kid
  end
  return out
end

local function parse_spend_periods(text)
  local ids, i = {}, 0
  for id in string.gmatch(text, '%S+') do
    i = i + 1
    ids[SPEND_KINDS[i]] = id
  end
  return ids
end

-- The records a job reserved on, and the team's record of the given period kind (the one its
-- budget alerts read), from its fields: spend_periods, or only the two keys of an old job.
local function job_spend_records(spend_key, key_spend_key, spend_periods, kid, kind)
  if not spend_key or spend_key == '' or not spend_periods or spend_periods == '' then
    return {spend_key, key_spend_key}, spend_key
  end
  local tag = string.match(spend_key, '^(.*)spend:[^:]+$')
  local ids = parse_spend_periods(spend_periods)
  return spend_records(tag, ids, kid), tag .. 'spend:' .. (ids[kind] or ids['m'])
end

-- Turns a job's reservation into what it cost: on every spend record it reserved on ('' and a
-- trailing nil are skipped), and on the day's usage counters.
local function settle_spend(spend_keys, usage_key, usage_ttl, target, reserved, amount)
  for _, k in ipairs(spend_keys) do
    if k and k ~= '' then
      if reserved ~= 0 then redis.call('HINCRBY', k, 'reserved', 0 - reserved) end
      if amount ~= 0 then redis.call('HINCRBY', k, 'settled', amount) end
    end
  end
  if usage_key and usage_key ~= '' and amount ~= 0 then
    usage_add(usage_key, usage_ttl, {'spend', amount, 'm:' .. target .. ':spend', amount})
  end
end
