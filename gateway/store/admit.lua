-- uses: clock, keys, policy, periods, limits, gate, usage, spend, budget
-- Admission of a submit, in the team's shard, all or nothing: verify the key, resolve the dedup
-- policy, check the team's access list and limits, then hit a completed result, follow
-- (coalesce onto) a job in flight, or claim a new job (sent now, or queued behind the team's
-- concurrency limit). Every check and its charge happen here, against Redis's clock, so N
-- replicas can never admit more than the limits allow.
-- In the shared scope every key lives in the shared shard: the caller verified the key and
-- resolved the policy (default_policy) and charged the outcome-free limits (access, rate,
-- daily) in the team's shard first (team_policy.lua); key_record, policy_hash and the quota
-- keys are unused there, and budgets and concurrency limits, which follow a job's life in the
-- team's shard, do not apply.
-- Reply: {0, reason} a refused key; {2, kind, scope, limit, retry after, rate-limit name,
-- quota, window, remaining, reset, team} a refused limit; or {1, team, outcome, job id,
-- policy, saved micro, queue position, rate-limit name, quota, window, remaining, reset,
-- alert level, budget period, committed micro, budget micro}; outcome: hit | coalesced |
-- miss | queued.
local key_record = KEYS[1]
local request_record = KEYS[2]     -- the new request's
local policy_hash = KEYS[3]        -- the team's dedup policy
local cached_result = KEYS[4]      -- cached result of the request's identity
local job_record = KEYS[5]         -- the new job's
local inflight_job = KEYS[6]       -- job in flight of the request's identity
local team_limits = KEYS[7]
local running_jobs = KEYS[8]
local queued_jobs = KEYS[9]
local queue_seq = KEYS[10]
local key_digest = ARGV[1]
local key_id = ARGV[2]
local api = ARGV[3]
local target = ARGV[4]
local identity = ARGV[5]                     -- identity hash of the request
local allow_lookup = ARGV[6] == '1'
local allow_store = ARGV[7] == '1'
local max_age = tonumber(ARGV[8])            -- seconds; -1: any
local job_lifetime = tonumber(ARGV[9])       -- seconds
local request_ttl = tonumber(ARGV[10])       -- seconds
local job_prefix = ARGV[11]                  -- same shard
local job_id = ARGV[12]                      -- the new job's
local created_at = ARGV[13]
local default_policy = ARGV[14]
local request_id = ARGV[15]                  -- the new request's
local submit_deadline = tonumber(ARGV[16])   -- seconds
local version = ARGV[17]                     -- api version
local webhook = ARGV[18]                     -- URL, '' none
local webhook_intermediate = ARGV[19]        -- '1' or '0', stored as is
local scope = ARGV[20]                       -- 'team' or 'shared'
local shared_team = ARGV[21]                 -- the team (shared scope)
local team_prefix = ARGV[22]                 -- '<ns>:v1:{t:<shard>}:'
local period_spec = ARGV[23]                 -- period candidates (current_periods)
local estimate_micro = tonumber(ARGV[24]) or 0
local rate_micro = ARGV[25]                  -- micro per second, 0 if none; stored as is
local body = ARGV[26]                        -- raw body ('' when pending)
local default_queue_depth = tonumber(ARGV[27])
local usage_retention = tonumber(ARGV[28])   -- seconds
local kid = ARGV[29]                         -- key id without its shard
local body_pending = ARGV[30] == '1'         -- over the inline size and not sent: the caller
                                             -- stores it if the job is queued
local pinned = ARGV[31] == '1'               -- the request pins its seeds: under 'seeded' only
                                             -- such a request hits or stores a result, and it
                                             -- hits only a result whose request pinned them

local team, policy
local quotas = scope == 'team'
if quotas then
  local err
  team, err = verify_key(key_record, key_digest)
  if not team then return {0, err} end
  policy = resolve_policy(policy_hash, key_id, target, default_policy)
else
  team, policy = shared_team, default_policy
end
local now = now_seconds()
local tag = team_prefix
local periods = current_periods(period_spec, now)
local day = periods['d']
local usage_key = tag .. 'usage:' .. day.id
local usage_ttl = usage_retention

local L = quotas and read_limits(team_limits) or {}
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
  if not quotas then return end  -- the shared scope charged the team's shard already
  commit_gate(gate)
  usage_add(usage_key, usage_ttl, {'requests', 1, 'key:' .. kid .. ':requests', 1, outcome, 1,
    'm:' .. target .. ':requests', 1, 'm:' .. target .. ':' .. outcome, 1})
end

local function record(job, role)
  redis.call('HSET', request_record, 'team', team, 'key_id', key_id, 'api', api,
    'target', target, 'job', job, 'role', role, 'created_at', created_at, 'version', version)
  redis.call('EXPIRE', request_record, request_ttl)
  if webhook ~= '' then
    redis.call('HSET', request_record, 'webhook', webhook, 'webhook_intermediate',
      webhook_intermediate)
    local hooks = job_prefix .. job .. ':hooks'
    redis.call('SADD', hooks, request_id)
    redis.call('EXPIRE', hooks, request_ttl)
  end
end

local function admitted(outcome, jid, saved, queue_pos, alert)
  alert = alert or {0, '', 0, 0}
  local rl = gate.rl
  return {1, team, outcome, jid, policy, tostring(saved), queue_pos,
          rl[1], rl[2], rl[3], rl[4], tostring(rl[5]), alert[1], alert[2], alert[3], alert[4]}
end

-- 'seeded' is 'cache' for a request that pins its seeds and 'inflight' for any other.
local caches = policy == 'cache' or (policy == 'seeded' and pinned)
if policy ~= 'off' and allow_lookup then
  local jid = redis.call('GET', inflight_job)
  if jid then
    local jkey = job_prefix .. jid
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
    jid = redis.call('GET', cached_result)
    if jid then
      local j = redis.call('HMGET', job_prefix .. jid, 'state', 'finished_ts', 'settled', 'pinned')
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
local estimate = estimate_micro
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
    local busy = redis.call('ZCOUNT', running_jobs, '(' .. now, '+inf')
    local waiting = redis.call('ZCARD', queued_jobs)
    if busy >= max_concurrent or waiting > 0 then
      local depth = limit('max_queue') or default_queue_depth
      if waiting >= depth then return refuse('queue_full', 'team', depth, 0) end
      queued = true
    end
  end
end

charge_submit(queued and 'queued' or 'miss')
local register = policy ~= 'off' and allow_store
local store = (caches and allow_store) and '1' or '0'
local deadline = now + submit_deadline
redis.call('HSET', job_record, 'state', queued and 'queued' or 'submitting', 'team', team,
  'owner', request_id, 'key_id', kid, 'api', api, 'target', target, 'version', version,
  'hash', identity, 'created_at', created_at, 'created_ts', now,
  'expires_ts', now + job_lifetime, 'submit_deadline_ts', deadline, 'attached', 1,
  'store', store, 'pinned', pinned and '1' or '0', 'estimate', estimate,
  'rate_micro', rate_micro, 'usage_key', usage_key)
redis.call('EXPIRE', job_record, job_lifetime)
if register then
  redis.call('SET', inflight_job, job_id, 'EX', job_lifetime)
end
record(job_id, 'owner')

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
  redis.call('HSET', job_record, 'reserved', estimate, 'counted', queued and 'queued' or 'miss',
    'spend_key', budget_key, 'key_spend_key', budget_key .. ':' .. kid,
    'spend_periods', ids.d .. ' ' .. ids.w .. ' ' .. ids.m)
  local budget = limit('budget_micro')
  local level = budget_alert(budget_key, budget)
  if level > 0 then
    local v = redis.call('HMGET', budget_key, 'reserved', 'settled')
    alert = {level, bp.id, (tonumber(v[1]) or 0) + (tonumber(v[2]) or 0), budget}
  end
  if queued then
    if body_pending then  -- the dispatcher waits at this job until queue_body.lua stored it
      redis.call('HSET', job_record, 'queued', '1', 'body_pending', '1')
    else
      redis.call('HSET', job_record, 'body', body, 'queued', '1')
    end
    redis.call('ZADD', queued_jobs, redis.call('INCR', queue_seq), job_id)
    local pos = redis.call('ZRANK', queued_jobs, job_id) + 1
    return admitted('queued', job_id, 0, pos, alert)
  end
  -- Every job of the team counts as running (so a limit set later sees it), until it is
  -- accepted upstream with the submit deadline as its expiry, then the job's lifetime.
  redis.call('ZADD', running_jobs, deadline, job_id)
end
return admitted('miss', job_id, 0, 0, alert)
