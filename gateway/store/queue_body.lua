-- Stores the body of a queued job whose admission did not carry it (over the inline size: a body
-- goes to Redis only when its job waits in the queue), which lets the dispatcher start it.
-- Reply: 1 stored, 0 the job is no longer waiting for its body.
local job_record = KEYS[1]
local body = ARGV[1]

if redis.call('HGET', job_record, 'body_pending') ~= '1' then return 0 end
if redis.call('HGET', job_record, 'state') ~= 'queued' then return 0 end
redis.call('HSET', job_record, 'body', body)
redis.call('HDEL', job_record, 'body_pending')
return 1
