-- Stores the body of a queued job whose admission did not carry it (over the inline size: a body
-- goes to Redis only when its job waits in the queue), which lets the dispatcher start it.
-- KEYS[1] job record. ARGV[1] body.
-- Returns 1 if stored, 0 if the job is no longer waiting for its body.
if redis.call('HGET', KEYS[1], 'body_pending') ~= '1' then return 0 end
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return 0 end
redis.call('HSET', KEYS[1], 'body', ARGV[1])
redis.call('HDEL', KEYS[1], 'body_pending')
return 1
