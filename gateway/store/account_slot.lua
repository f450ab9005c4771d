-- uses: clock
-- The account-wide cap on concurrent upstream jobs, shared by all teams and replicas.
-- An account slot lasts the given seconds (the submit deadline at first, the job's lifetime once
-- RunComfy accepted it), so a replica that dies mid-submit leaks a slot only until its deadline.
-- Reply: 1 if the member holds a slot afterwards, else 0.
local account_running = KEYS[1]  -- running jobs of the whole account ("<shard>|<job>" by expiry)
local op = ARGV[1]               -- 'acquire' | 'extend' | 'release'
local member = ARGV[2]
local cap = tonumber(ARGV[3])
local seconds = tonumber(ARGV[4])

local now = now_seconds()
if op == 'release' then
  redis.call('ZREM', account_running, member)
  return 0
end
if op == 'extend' then
  return redis.call('ZADD', account_running, 'XX', 'CH', now + seconds, member) >= 0 and 1 or 0
end
redis.call('ZREMRANGEBYSCORE', account_running, '-inf', now)
if not redis.call('ZSCORE', account_running, member)
    and redis.call('ZCARD', account_running) >= cap then
  return 0
end
redis.call('ZADD', account_running, now + seconds, member)
return 1
