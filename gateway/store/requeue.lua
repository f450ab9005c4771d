-- The account-wide cap is full: a job about to be sent goes back to the head of its team's
-- queue (it keeps its reservation) and leaves its team's running set.
-- Reply: 1 requeued, 0 the job had moved on.
local job_record = KEYS[1]
local running_jobs = KEYS[2]
local queued_jobs = KEYS[3]
local job_id = ARGV[1]
local body = ARGV[2]

if redis.call('HGET', job_record, 'state') ~= 'submitting' then return 0 end
redis.call('HSET', job_record, 'state', 'queued', 'body', body, 'queued', '1')
redis.call('ZREM', running_jobs, job_id)
local head = redis.call('ZRANGE', queued_jobs, 0, 0, 'WITHSCORES')
local score = 0
if #head > 0 then score = tonumber(head[2]) - 1 end
redis.call('ZADD', queued_jobs, score, job_id)
return 1
