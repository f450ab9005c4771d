-- uses: access, gcra, usage
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
