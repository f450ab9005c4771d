-- Admission of a submit, in the team's slot, all or nothing:
-- verify the key, resolve the dedup policy, then hit a completed result, follow (coalesce onto)
-- a job in flight, or claim a new job. Job records are addressed by id under ARGV[11] (same slot).
-- KEYS[1] key record, KEYS[2] new request record, KEYS[3] team policy hash,
-- KEYS[4] cached result of the request's identity, KEYS[5] the new job's record,
-- KEYS[6] job in flight of the request's identity.
-- ARGV: 1 key digest, 2 key id, 3 api, 4 target, 5 identity hash, 6 lookup allowed (1/0),
-- 7 store allowed (1/0), 8 max age seconds (-1: any), 9 job lifetime seconds,
-- 10 request ttl, 11 job key prefix, 12 new job id, 13 created_at, 14 default policy,
-- 15 new request id, 16 submit deadline seconds, 17 api version, 18 webhook URL ('' none),
-- 19 webhook intermediate status (1/0), 20 scope: 'team' or 'shared', 21 team (shared).
-- In the shared scope every key lives in the shared slot: the caller verified the key and
-- resolved the policy (ARGV[14]) in the team's slot first, and KEYS[1] and KEYS[3] are unused.
-- Returns {0, reason} or {1, team, outcome, job id, policy[, cost of the cached job]};
-- outcome: hit | coalesced | miss.
local team, policy
if ARGV[20] == 'team' then
  local err
  team, err = verify_key(KEYS[1], ARGV[1])
  if not team then return {0, err} end
  policy = resolve_policy(KEYS[3], ARGV[2], ARGV[4], ARGV[14])
else
  team, policy = ARGV[21], ARGV[14]
end
local now = now_seconds()

local function record(job, role)
  redis.call('HSET', KEYS[2], 'team', team, 'key_id', ARGV[2], 'api', ARGV[3],
    'target', ARGV[4], 'job', job, 'role', role, 'created_at', ARGV[13], 'version', ARGV[17])
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[10]))
  if ARGV[18] ~= '' then
    redis.call('HSET', KEYS[2], 'webhook', ARGV[18], 'webhook_intermediate', ARGV[19])
    local hooks = ARGV[11] .. job .. ':hooks'
    redis.call('SADD', hooks, ARGV[15])
    redis.call('EXPIRE', hooks, tonumber(ARGV[10]))
  end
end

if policy ~= 'off' and ARGV[6] == '1' then
  local jid = redis.call('GET', KEYS[6])
  if jid then
    local jkey = ARGV[11] .. jid
    local j = redis.call('HMGET', jkey, 'state', 'expires_ts', 'submit_deadline_ts')
    if (j[1] == 'active' and now < tonumber(j[2]))
        or (j[1] == 'submitting' and now < tonumber(j[3])) then
      redis.call('HINCRBY', jkey, 'attached', 1)
      record(jid, 'follower')
      return {1, team, 'coalesced', jid, policy}
    end
  end
  if policy == 'cache' then
    jid = redis.call('GET', KEYS[4])
    if jid then
      local j = redis.call('HMGET', ARGV[11] .. jid, 'state', 'finished_ts', 'cost')
      local max_age = tonumber(ARGV[8])
      if j[1] == 'succeeded' and (max_age < 0 or now - tonumber(j[2]) <= max_age) then
        record(jid, 'hit')
        return {1, team, 'hit', jid, policy, j[3] or '0'}
      end
    end
  end
end

local register = policy ~= 'off' and ARGV[7] == '1'
local store = (policy == 'cache' and ARGV[7] == '1') and '1' or '0'
redis.call('HSET', KEYS[5], 'state', 'submitting', 'team', team, 'owner', ARGV[15],
  'api', ARGV[3], 'target', ARGV[4], 'version', ARGV[17], 'hash', ARGV[5],
  'created_at', ARGV[13], 'created_ts', now, 'expires_ts', now + tonumber(ARGV[9]),
  'submit_deadline_ts', now + tonumber(ARGV[16]), 'attached', 1, 'store', store)
redis.call('EXPIRE', KEYS[5], tonumber(ARGV[9]))
if register then
  redis.call('SET', KEYS[6], ARGV[12], 'EX', tonumber(ARGV[9]))
end
record(ARGV[12], 'owner')
return {1, team, 'miss', ARGV[12], policy}
