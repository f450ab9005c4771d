-- The account-wide cap on concurrent upstream jobs, shared by all teams and replicas.
-- KEYS[1] running jobs of the whole account ("<slot>|<job>" by expiry).
-- ARGV[1] 'acquire' | 'extend' | 'release', ARGV[2] member, ARGV[3] cap, ARGV[4] seconds the
-- slot lasts (the submit deadline at first, the job's lifetime once RunComfy accepted it), so
-- a replica that dies mid-submit leaks a slot only until its deadline.
-- Returns 1 if the member holds a slot afterwards, else 0.
local now = now_seconds()
if ARGV[1] == 'release' then
  redis.call('ZREM', KEYS[1], ARGV[2])
  return 0
end
if ARGV[1] == 'extend' then
  return redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[4]), ARGV[2]) >= 0 and 1 or 0
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[2])
    and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[2])
return 1
