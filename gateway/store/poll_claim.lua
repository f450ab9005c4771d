-- Claims due jobs for this replica's poller: each claimed job's score becomes its lease
-- expiry, so a replica that dies mid-poll leaves the job due again when the lease lapses.
-- KEYS[1] due set; ARGV[1] lease seconds, ARGV[2] batch size. Returns claimed members.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), member)
end
return due
