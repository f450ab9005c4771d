-- uses: clock, terminal, usage, spend, budget
-- Moves a job forward; terminal states are final (a late poll never undoes a cancel). The end
-- of a job settles its money in the same step: the reservation made at admission becomes the
-- actual cost (0 when RunComfy confirmed a cancel, a refusal or a free failure), or, when the
-- outcome is unknown, stays reserved in the team's unreconciled ledger for an admin to resolve.
-- A job RunComfy refused (rejected: no job was created) also takes back the usage its owner
-- and its followers counted, so refused input uses no daily limit and leaves no usage row.
-- Nothing changes unless the previous state was expect_state, nor when the job has another
-- number of requests attached than expect_attached.
-- Reply: {previous state ('gone' if the job expired; 'followed' when expect_attached did not
-- hold)}, or, when the end crossed a budget alert, {previous state, alert level, the team's
-- spend record of the budget period, committed micro, budget micro}.
local job_record = KEYS[1]
local cached_result = KEYS[2]      -- cached result of its identity
local target_index = KEYS[3]       -- cache index of its target
local cached_targets = KEYS[4]     -- cache index of targets
local inflight_job = KEYS[5]       -- job in flight of its identity
local running_jobs = KEYS[6]       -- the team's
local queued_jobs = KEYS[7]        -- the team's
local unreconciled = KEYS[8]       -- the team's ledger of unknown outcomes
local team_limits = KEYS[9]
local job_id = ARGV[1]
local new_state = ARGV[2]
local record_ttl = tonumber(ARGV[3])   -- after the end
local cache_ttl = tonumber(ARGV[4])
local target = ARGV[5]
local identity = ARGV[6]
local settled_micro = tonumber(ARGV[7]) or 0  -- '' none
local expect_state = ARGV[8]                  -- '' any
local usage_retention = tonumber(ARGV[9])
local expect_attached = ARGV[10]              -- '' any
local fields = {unpack(ARGV, 11)}             -- field, value pairs to set

local cur = redis.call('HMGET', job_record, 'state', 'store', 'reserved', 'spend_key',
  'key_spend_key', 'usage_key', 'expires_ts', 'owner', 'created_at', 'api', 'attached',
  'counted', 'key_id', 'estimate', 'spend_periods')
if not cur[1] then return {'gone'} end
if TERMINAL[cur[1]] then return {cur[1]} end
if expect_state ~= '' and cur[1] ~= expect_state then return {cur[1]} end
if expect_attached ~= '' and tonumber(cur[11] or '0') ~= tonumber(expect_attached) then
  return {'followed'}
end
local new = new_state
local update = {'state', new}
for _, item in ipairs(fields) do update[#update + 1] = item end
local now = now_seconds()
if TERMINAL[new] then
  update[#update + 1] = 'finished_ts'
  update[#update + 1] = now
end
redis.call('HSET', job_record, unpack(update))
if new ~= 'queued' and new ~= 'submitting' then redis.call('HDEL', job_record, 'body') end
if new == 'active' and cur[1] ~= 'active' then
  -- Accepted upstream: its concurrency slot now lasts as long as the job may.
  redis.call('ZADD', running_jobs, 'XX', tonumber(cur[7]), job_id)
end
if not TERMINAL[new] then return {cur[1]} end

redis.call('EXPIRE', job_record, record_ttl)
redis.call('ZREM', running_jobs, job_id)
redis.call('ZREM', queued_jobs, job_id)
if redis.call('GET', inflight_job) == job_id then redis.call('DEL', inflight_job) end
if new == 'succeeded' and cur[2] == '1' then
  redis.call('SET', cached_result, job_id, 'EX', cache_ttl)
  redis.call('SADD', target_index, identity)
  redis.call('EXPIRE', target_index, cache_ttl)
  redis.call('SADD', cached_targets, target)
  redis.call('EXPIRE', cached_targets, cache_ttl)
end

local reserved = tonumber(cur[3]) or 0
if new == 'unknown' then
  if cur[4] then
    redis.call('HSET', unreconciled, job_id, cjson.encode({
      reserved = reserved, spend_key = cur[4], key_spend_key = cur[5] or '',
      spend_periods = cur[15] or '', key_id = cur[13] or '', usage_key = cur[6] or '',
      target = target, request_id = cur[8] or '', created_at = cur[9] or '',
      api = cur[10] or '', since = now}))
    redis.call('HSET', job_record, 'unreconciled', '1')
  end
  return {cur[1]}
end
if new == 'rejected' and cur[12] and cur[6] then
  local ttl, estimate = usage_retention, tonumber(cur[14]) or 0
  usage_uncount(cur[6], ttl, cur[13], target, cur[12], 1, 0)
  local tag = string.match(cur[6], '^(.*)usage:[^:]+$')
  local flat = redis.call('HGETALL', job_record)
  for i = 1, #flat, 2 do
    local day, kid = string.match(flat[i], '^fw:([^:]+):(.+)$')
    if day then
      local n = tonumber(flat[i + 1])
      usage_uncount(tag .. 'usage:' .. day, ttl, kid, target, 'coalesced', n, estimate * n)
    end
  end
end
local amount = settled_micro
redis.call('HSET', job_record, 'settled', amount)
if not cur[4] then return {cur[1]} end
local limits = redis.call('HMGET', team_limits, 'budget_micro', 'budget_period')
local records, budget_key = job_spend_records(cur[4], cur[5], cur[15], cur[13], limits[2] or 'm')
settle_spend(records, cur[6], usage_retention, target, reserved, amount)
local budget = tonumber(limits[1])
local level = budget_alert(budget_key, budget)
if level > 0 then
  local v = redis.call('HMGET', budget_key, 'reserved', 'settled')
  return {cur[1], level, budget_key, (tonumber(v[1]) or 0) + (tonumber(v[2]) or 0), budget}
end
return {cur[1]}
