-- Claims due members (jobs for the poller, deliveries for the webhook worker): each claimed
-- member's score becomes its lease expiry, so a replica that dies mid-work leaves it due again
-- when the lease lapses. Scores use Redis's clock (never shifted, unlike now_seconds()).
-- Reply: the claimed members.
local due_set = KEYS[1]
local lease_seconds = tonumber(ARGV[1])
local batch_size = tonumber(ARGV[2])

local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local due = redis.call('ZRANGEBYSCORE', due_set, '-inf', now, 'LIMIT', 0, batch_size)
for _, member in ipairs(due) do
  redis.call('ZADD', due_set, now + lease_seconds, member)
end
return due
