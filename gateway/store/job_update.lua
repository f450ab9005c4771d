-- Moves a job forward; terminal states are final (a late poll never undoes a cancel). The end
-- of a job settles its money in the same step: the reservation made at admission becomes the
-- actual cost (0 when RunComfy confirmed a cancel, a refusal or a free failure), or, when the
-- outcome is unknown, stays reserved in the team's unreconciled ledger for an admin to resolve.
-- A job RunComfy refused (rejected: no job was created) also takes back the usage its owner
-- and its followers counted, so refused input uses no daily limit and leaves no usage row.
-- KEYS[1] job record, KEYS[2] cached result of its identity, KEYS[3] cache index of its
-- target, KEYS[4] cache index of targets, KEYS[5] job in flight of its identity,
-- KEYS[6] team's running jobs, KEYS[7] team's queue, KEYS[8] unreconciled ledger,
-- KEYS[9] team limits.
-- ARGV[1] job id, ARGV[2] new state, ARGV[3] record ttl after the end, ARGV[4] cache ttl,
-- ARGV[5] target, ARGV[6] identity hash, ARGV[7] settled cost in micro-dollars ('' none),
-- ARGV[8] required current state ('' any), ARGV[9] usage retention seconds,
-- ARGV[10] required number of requests attached ('' any), ARGV[11..] field, value pairs.
-- Returns {previous state ('gone' if the job expired), alert level, the team's spend record of
-- the budget period the job was admitted in, committed micro, budget micro}; nothing changes
-- unless the previous state was ARGV[8] ({'followed'} when the job has more requests attached
-- than ARGV[10]).
local cur = redis.call('HMGET', KEYS[1], 'state', 'store', 'reserved', 'spend_key',
  'key_spend_key', 'usage_key', 'expires_ts', 'owner', 'created_at', 'api', 'attached',
  'counted', 'key_id', 'estimate', 'spend_periods')
if not cur[1] then return {'gone'} end
if TERMINAL[cur[1]] then return {cur[1]} end
if ARGV[8] ~= '' and cur[1] ~= ARGV[8] then return {cur[1]} end
if ARGV[10] ~= '' and tonumber(cur[11] or '0') ~= tonumber(ARGV[10]) then return {'followed'} end
local new = ARGV[2]
local fields = {'state', new}
for i = 11, #ARGV do fields[#fields + 1] = ARGV[i] end
local now = now_seconds()
if TERMINAL[new] then
  fields[#fields + 1] = 'finished_ts'
  fields[#fields + 1] = now
end
redis.call('HSET', KEYS[1], unpack(fields))
if new ~= 'queued' and new ~= 'submitting' then redis.call('HDEL', KEYS[1], 'body') end
if new == 'active' and cur[1] ~= 'active' then
  -- Accepted upstream: its concurrency slot now lasts as long as the job may.
  redis.call('ZADD', KEYS[6], 'XX', tonumber(cur[7]), ARGV[1])
end
if not TERMINAL[new] then return {cur[1]} end

redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
redis.call('ZREM', KEYS[6], ARGV[1])
redis.call('ZREM', KEYS[7], ARGV[1])
if redis.call('GET', KEYS[5]) == ARGV[1] then redis.call('DEL', KEYS[5]) end
if new == 'succeeded' and cur[2] == '1' then
  local ttl = tonumber(ARGV[4])
  redis.call('SET', KEYS[2], ARGV[1], 'EX', ttl)
  redis.call('SADD', KEYS[3], ARGV[6])
  redis.call('EXPIRE', KEYS[3], ttl)
  redis.call('SADD', KEYS[4], ARGV[5])
  redis.call('EXPIRE', KEYS[4], ttl)
end

local reserved = tonumber(cur[3]) or 0
if new == 'unknown' then
  if cur[4] then
    redis.call('HSET', KEYS[8], ARGV[1], cjson.encode({
      reserved = reserved, spend_key = cur[4], key_spend_key = cur[5] or '',
      spend_periods = cur[15] or '', key_id = cur[13] or '', usage_key = cur[6] or '',
      target = ARGV[5], request_id = cur[8] or '', created_at = cur[9] or '',
      api = cur[10] or '', since = now}))
    redis.call('HSET', KEYS[1], 'unreconciled', '1')
  end
  return {cur[1]}
end
if new == 'rejected' and cur[12] and cur[6] then
  local ttl, estimate = tonumber(ARGV[9]), tonumber(cur[14]) or 0
  usage_uncount(cur[6], ttl, cur[13], ARGV[5], cur[12], 1, 0)
  local tag = string.match(cur[6], '^(.*)usage:[^:]+$')
  local flat = redis.call('HGETALL', KEYS[1])
  for i = 1, #flat, 2 do
    local day, kid = string.match(flat[i], '^fw:([^:]+):(.+)$')
    if day then
      local n = tonumber(flat[i + 1])
      usage_uncount(tag .. 'usage:' .. day, ttl, kid, ARGV[5], 'coalesced', n, estimate * n)
    end
  end
end
local amount = tonumber(ARGV[7]) or 0
redis.call('HSET', KEYS[1], 'settled', amount)
if not cur[4] then return {cur[1]} end
local limits = redis.call('HMGET', KEYS[9], 'budget_micro', 'budget_period')
local records, budget_key = job_spend_records(cur[4], cur[5], cur[15], cur[13], limits[2] or 'm')
settle_spend(records, cur[6], tonumber(ARGV[9]), ARGV[5], reserved, amount)
local budget = tonumber(limits[1])
local level = budget_alert(budget_key, budget)
if level > 0 then
  local v = redis.call('HMGET', budget_key, 'reserved', 'settled')
  return {cur[1], level, budget_key, (tonumber(v[1]) or 0) + (tonumber(v[2]) or 0), budget}
end
return {cur[1]}
