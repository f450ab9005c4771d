-- Admission of a submit, in the team's slot, all or nothing: verify the key, resolve the dedup
-- policy, check the team's access list and limits, then hit a completed result, follow
-- (coalesce onto) a job in flight, or claim a new job (sent now, or queued behind the team's
-- concurrency limit). Every check and its charge happen here, against Redis's clock, so N
-- replicas can never admit more than the limits allow.
-- KEYS[1] key record, KEYS[2] new request record, KEYS[3] team policy hash,
-- KEYS[4] cached result of the request's identity, KEYS[5] the new job's record,
-- KEYS[6] job in flight of the request's identity, KEYS[7] team limits, KEYS[8] running jobs,
-- KEYS[9] queued jobs, KEYS[10] queue sequence.
-- ARGV: 1 key digest, 2 key id, 3 api, 4 target, 5 identity hash, 6 lookup allowed (1/0),
-- 7 store allowed (1/0), 8 max age seconds (-1: any), 9 job lifetime seconds,
-- 10 request ttl, 11 job key prefix, 12 new job id, 13 created_at, 14 default policy,
-- 15 new request id, 16 submit deadline seconds, 17 api version, 18 webhook URL ('' none),
-- 19 webhook intermediate status (1/0), 20 scope: 'team' or 'shared', 21 team (shared),
-- 22 team key prefix ('<ns>:v1:{t:<slot>}:'), 23 period candidates, 24 estimated cost (micro),
-- 25 serverless rate (micro per second, 0 if none), 26 raw body, 27 default queue depth,
-- 28 usage retention seconds, 29 key id without slot, 30 body pending (1: the body is over
-- the inline size and was not sent; the caller stores it if the job is queued), 31 the request
-- pins its seeds (1/0): under the 'seeded' policy only such a request hits or stores a result,
-- and it hits only a result whose own request pinned them (the job's 'pinned').
-- In the shared scope every key lives in the shared slot: the caller verified the key and
-- resolved the policy (ARGV[14]) and charged the outcome-free limits (access, rate, daily) in
-- the team's slot first (team_policy.lua); KEYS[1], KEYS[3] and the quota keys are unused there,
-- and budgets and concurrency limits, which follow a job's life in the team's slot, do not apply.
-- Returns {0, reason} for a bad key; {2, kind, scope, limit, retry after, rate-limit info (5),
-- team} for a refusal; or {1, team, outcome, job id, policy, saved micro, queue position,
-- rate-limit name, quota, window, remaining, reset, alert level, budget period, committed,
-- budget}; outcome: hit | coalesced | miss | queued.
local team, policy
local quotas = ARGV[20] == 'team'
if quotas then
  local err
  team, err = verify_key(KEYS[1], ARGV[1])
  if not team then return {0, err} end
  policy = resolve_policy(KEYS[3], ARGV[2], ARGV[4], ARGV[14])
else
  team, policy = ARGV[21], ARGV[14]
end
local now = now_seconds()
local tag, kid, target, api = ARGV[22], ARGV[29], ARGV[4], ARGV[3]
local periods = current_periods(ARGV[23], now)
local day = periods['d']
local usage_key = tag .. 'usage:' .. day.id
local usage_ttl = tonumber(ARGV[28])

local L = quotas and read_limits(KEYS[7]) or {}
local function limit(name) return tonumber(L[name]) end
local function key_limit(name) return tonumber(L['key:' .. kid .. ':' .. name]) end
local gate = new_gate(L, kid, tag, day, now)

local function refuse(kind, scope, lim, retry_after)
  return refusal_reply(gate, usage_key, usage_ttl, team, kind, scope, lim, retry_after)
end

-- Access, submit rate and submits per day: checked now, charged once admitted.
if quotas then
  local refusal = gate_check(gate, api, target)
  if refusal then return refuse(unpack(refusal)) end
end

local function charge_submit(outcome)
  if not quotas then return end  -- the shared scope charged the team's slot already
  commit_gate(gate)
  usage_add(usage_key, usage_ttl, {'requests', 1, 'key:' .. kid .. ':requests', 1, outcome, 1,
    'm:' .. target .. ':requests', 1, 'm:' .. target .. ':' .. outcome, 1})
end

local function record(job, role)
  redis.call('HSET', KEYS[2], 'team', team, 'key_id', ARGV[2], 'api', api,
    'target', target, 'job', job, 'role', role, 'created_at', ARGV[13], 'version', ARGV[17])
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[10]))
  if ARGV[18] ~= '' then
    redis.call('HSET', KEYS[2], 'webhook', ARGV[18], 'webhook_intermediate', ARGV[19])
    local hooks = ARGV[11] .. job .. ':hooks'
    redis.call('SADD', hooks, ARGV[15])
    redis.call('EXPIRE', hooks, tonumber(ARGV[10]))
  end
end

local function admitted(outcome, jid, saved, queue_pos, alert)
  alert = alert or {0, '', 0, 0}
  local rl = gate.rl
  return {1, team, outcome, jid, policy, tostring(saved), queue_pos,
          rl[1], rl[2], rl[3], rl[4], tostring(rl[5]), alert[1], alert[2], alert[3], alert[4]}
end

-- 'seeded' is 'cache' for a request that pins its seeds and 'inflight' for any other.
local pinned = ARGV[31] == '1'
local caches = policy == 'cache' or (policy == 'seeded' and pinned)
if policy ~= 'off' and ARGV[6] == '1' then
  local jid = redis.call('GET', KEYS[6])
  if jid then
    local jkey = ARGV[11] .. jid
    local j = redis.call('HMGET', jkey, 'state', 'expires_ts', 'submit_deadline_ts', 'estimate')
    if ((j[1] == 'active' or j[1] == 'queued') and now < tonumber(j[2]))
        or (j[1] == 'submitting' and now < tonumber(j[3])) then
      redis.call('HINCRBY', jkey, 'attached', 1)
      if quotas then  -- taken back if RunComfy refuses the job (job_update.lua)
        redis.call('HINCRBY', jkey, 'fw:' .. day.id .. ':' .. kid, 1)
      end
      record(jid, 'follower')
      charge_submit('coalesced')
      local saved = tonumber(j[4]) or 0
      if saved > 0 then
        usage_add(usage_key, usage_ttl, {'saved', saved, 'm:' .. target .. ':saved', saved})
      end
      return admitted('coalesced', jid, saved, 0)
    end
  end
  if caches then
    jid = redis.call('GET', KEYS[4])
    if jid then
      local j = redis.call('HMGET', ARGV[11] .. jid, 'state', 'finished_ts', 'settled', 'pinned')
      local max_age = tonumber(ARGV[8])
      if j[1] == 'succeeded' and (max_age < 0 or now - tonumber(j[2]) <= max_age)
          and (policy == 'cache' or j[4] == '1') then
        record(jid, 'hit')
        charge_submit('hit')
        local saved = tonumber(j[3]) or 0
        if saved > 0 then
          usage_add(usage_key, usage_ttl, {'saved', saved, 'm:' .. target .. ':saved', saved})
        end
        return admitted('hit', jid, saved, 0)
      end
    end
  end
end

-- A new job: its estimated cost must fit the per-request cap and the budgets, and it needs a
-- concurrency slot or a place in the team's queue.
local estimate = tonumber(ARGV[24]) or 0
local bp = periods[L.budget_period or 'm'] or periods['m']
local budget_key = tag .. 'spend:' .. bp.id
local queued = false
if quotas then
  for _, m in ipairs({{'team', limit('max_request_micro')}, {'key', key_limit('max_request_micro')}}) do
    if m[2] and estimate > m[2] then return refuse('max_request', m[1], m[2], 0) end
  end
  for _, b in ipairs({{'team', limit('budget_micro'), budget_key},
                      {'key', key_limit('budget_micro'), budget_key .. ':' .. kid}}) do
    if b[2] then
      local v = redis.call('HMGET', b[3], 'reserved', 'settled')
      local committed = (tonumber(v[1]) or 0) + (tonumber(v[2]) or 0)
      if committed + estimate > b[2] then
        return refuse('budget', b[1], b[2], bp['end'] - now)
      end
    end
  end
  local max_concurrent = limit('max_concurrent')
  if max_concurrent then
    local busy = redis.call('ZCOUNT', KEYS[8], '(' .. now, '+inf')
    local waiting = redis.call('ZCARD', KEYS[9])
    if busy >= max_concurrent or waiting > 0 then
      local depth = limit('max_queue') or tonumber(ARGV[27])
      if waiting >= depth then return refuse('queue_full', 'team', depth, 0) end
      queued = true
    end
  end
end

charge_submit(queued and 'queued' or 'miss')
local register = policy ~= 'off' and ARGV[7] == '1'
local store = (caches and ARGV[7] == '1') and '1' or '0'
local deadline = now + tonumber(ARGV[16])
redis.call('HSET', KEYS[5], 'state', queued and 'queued' or 'submitting', 'team', team,
  'owner', ARGV[15], 'key_id', kid, 'api', api, 'target', target, 'version', ARGV[17],
  'hash', ARGV[5], 'created_at', ARGV[13], 'created_ts', now,
  'expires_ts', now + tonumber(ARGV[9]), 'submit_deadline_ts', deadline, 'attached', 1,
  'store', store, 'pinned', pinned and '1' or '0', 'estimate', estimate,
  'rate_micro', ARGV[25], 'usage_key', usage_key)
redis.call('EXPIRE', KEYS[5], tonumber(ARGV[9]))
if register then
  redis.call('SET', KEYS[6], ARGV[12], 'EX', tonumber(ARGV[9]))
end
record(ARGV[12], 'owner')

local alert = {0, '', 0, 0}
if quotas then
  -- Reserve the estimate on the day's, week's and month's records of the team and the key,
  -- budget or not; the job settles it to the actual cost when it ends. A record expires after
  -- its period plus the usage retention, set when the reservation creates it (or finds it at 0).
  local ids = {d = periods.d.id, w = periods.w.id, m = periods.m.id}
  for i, k in ipairs(spend_records(tag, ids, kid)) do
    if redis.call('HINCRBY', k, 'reserved', estimate) == estimate then
      local period = periods[SPEND_KINDS[math.ceil(i / 2)]]
      redis.call('EXPIREAT', k, math.ceil(period['end']) + usage_ttl)
    end
  end
  redis.call('HSET', KEYS[5], 'reserved', estimate, 'counted', queued and 'queued' or 'miss',
    'spend_key', budget_key, 'key_spend_key', budget_key .. ':' .. kid,
    'spend_periods', ids.d .. ' ' .. ids.w .. ' ' .. ids.m)
  local budget = limit('budget_micro')
  local level = budget_alert(budget_key, budget)
  if level > 0 then
    local v = redis.call('HMGET', budget_key, 'reserved', 'settled')
    alert = {level, bp.id, (tonumber(v[1]) or 0) + (tonumber(v[2]) or 0), budget}
  end
  if queued then
    if ARGV[30] == '1' then  -- the dispatcher waits at this job until queue_body.lua stored it
      redis.call('HSET', KEYS[5], 'queued', '1', 'body_pending', '1')
    else
      redis.call('HSET', KEYS[5], 'body', ARGV[26], 'queued', '1')
    end
    redis.call('ZADD', KEYS[9], redis.call('INCR', KEYS[10]), ARGV[12])
    local pos = redis.call('ZRANK', KEYS[9], ARGV[12]) + 1
    return admitted('queued', ARGV[12], 0, pos, alert)
  end
  -- Every job of the team counts as running (so a limit set later sees it), until it is
  -- accepted upstream with the submit deadline as its expiry, then the job's lifetime.
  redis.call('ZADD', KEYS[8], deadline, ARGV[12])
end
return admitted('miss', ARGV[12], 0, 0, alert)
