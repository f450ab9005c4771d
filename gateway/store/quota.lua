-- Quota helpers, prepended (after common.lua) to every script. All money is integer
-- micro-dollars; every time is Redis's clock (now_seconds()).

-- Period candidates come from the gateway as "kind,id,start,end;..." (it knows the time zone,
-- Redis knows the time): the candidate of each kind that contains now is the current period.
local function current_periods(spec, now)
  local out = {}
  for kind, id, s, e in string.gmatch(spec, '(%a),([^,;]+),([^,;]+),([^,;]+)') do
    if now >= tonumber(s) and now < tonumber(e) then
      out[kind] = {id = id, start = tonumber(s), ['end'] = tonumber(e)}
    end
  end
  return out
end

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

-- An access list is a JSON array of ids; an entry ending in '*' matches a prefix.
local function listed(list_json, target)
  local ok, list = pcall(cjson.decode, list_json)
  if not ok or type(list) ~= 'table' then return false end
  for _, p in ipairs(list) do
    if type(p) == 'string' then
      if p == '*' or p == target then return true end
      local n = #p
      if n > 1 and string.sub(p, n) == '*' and string.sub(target, 1, n - 1) == string.sub(p, 1, n - 1) then
        return true
      end
    end
  end
  return false
end

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

local function read_limits(key)
  local L = {}
  local flat = redis.call('HGETALL', key)
  for i = 1, #flat, 2 do L[flat[i]] = flat[i + 1] end
  return L
end

-- The checks every submit passes whatever its outcome: access, submit rate (GCRA) and submits
-- per day, team-wide and per key. The gate remembers the rate states to charge (commit_gate;
-- the day's count is the usage counter the caller increments) and the tightest limit for the
-- RateLimit headers (gate.rl). Returns nil, or a refusal
-- {kind, scope, limit, retry after}.
local function new_gate(L, kid, tag, day, now)
  return {L = L, kid = kid, tag = tag, day = day, now = now, rl = {'', 0, 0, 0, 0}, charges = {}}
end

local function gate_limit(g, name, per_key)
  if per_key then return tonumber(g.L['key:' .. g.kid .. ':' .. name]) end
  return tonumber(g.L[name])
end

local function gate_consider(g, name, quota, window, remaining, reset)
  local rl = g.rl
  if rl[1] == '' or remaining < rl[4] or (remaining == rl[4] and reset > rl[5]) then
    g.rl = {name, quota, window, remaining, reset}
  end
end

-- Submit rate (GCRA), team-wide and per key: also what a refused submit is charged.
local function gate_rate(g)
  local now = g.now
  for _, scope in ipairs({'team', 'key'}) do
    local per_key = scope == 'key'
    local per_minute = gate_limit(g, 'rate_per_minute', per_key)
    if per_minute and per_minute > 0 then
      local key = g.tag .. 'gcra' .. (per_key and (':' .. g.kid) or '')
      local burst = gate_limit(g, 'rate_burst', per_key) or 1
      local ok, new_tat, wait, left = gcra_peek(key, per_minute, burst, now)
      gate_consider(g, scope .. '-rate', burst, math.ceil(60 * burst / per_minute), left,
        math.max(0, new_tat - now))
      if not ok then return {'rate', scope, per_minute, wait} end
      g.charges[#g.charges + 1] = {key, per_minute, new_tat}
    end
  end
  return nil
end

local function gate_check(g, api, target)
  local L, now, day = g.L, g.now, g.day
  -- Access: models default to all, serverless deployments to none.
  if api == 'model' then
    if L.models and not listed(L.models, target) then return {'access', 'team', 0, 0} end
  elseif not (L.deployments and listed(L.deployments, target)) then
    return {'access', 'team', 0, 0}
  end
  local refusal = gate_rate(g)
  if refusal then return refusal end
  -- The day's submits are the usage counters every admitted submit increments (whether or not
  -- a limit was set when it came), so a limit set mid-day counts the submits before it.
  for _, scope in ipairs({'team', 'key'}) do
    local per_key = scope == 'key'
    local allowed = gate_limit(g, 'daily_requests', per_key)
    if allowed then
      local field = per_key and ('key:' .. g.kid .. ':requests') or 'requests'
      local used = redis.call('HGET', g.tag .. 'usage:' .. day.id, field)
      local left = allowed - (tonumber(used) or 0) - 1
      gate_consider(g, scope .. '-daily', allowed, math.ceil(day['end'] - day.start),
        math.max(0, left), day['end'] - now)
      if left < 0 then return {'daily', scope, allowed, day['end'] - now} end
    end
  end
  return nil
end

-- A refused submit, counted in the day's usage: {2, kind, scope, limit, retry after, the
-- tightest limit (name, quota, window, remaining, reset), team}.
local function refusal_reply(g, usage_key, usage_ttl, team, kind, scope, lim, retry_after)
  usage_add(usage_key, usage_ttl, {'refused', 1, 'refused:' .. kind, 1})
  local rl = g.rl
  return {2, kind, scope, tostring(lim), tostring(retry_after),
          rl[1], rl[2], rl[3], rl[4], tostring(rl[5]), team}
end

local function commit_gate(g)
  for _, c in ipairs(g.charges) do gcra_commit(c[1], c[2], c[3], g.now) end
end
