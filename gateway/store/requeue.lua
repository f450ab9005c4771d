-- The account-wide cap is full: a job about to be sent goes back to the head of its team's
-- queue (it keeps its reservation) and leaves its team's running set.
-- KEYS[1] job record, KEYS[2] running jobs, KEYS[3] queued jobs; ARGV[1] job id, ARGV[2] body.
-- Returns 1 if requeued, 0 if the job had moved on.
if redis.call('HGET', KEYS[1], 'state') ~= 'submitting' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'queued', 'body', ARGV[2], 'queued', '1')
redis.call('ZREM', KEYS[2], ARGV[1])
local head = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
local score = 0
if #head > 0 then score = tonumber(head[2]) - 1 end
redis.call('ZADD', KEYS[3], score, ARGV[1])
return 1
