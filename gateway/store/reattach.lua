-- RunComfy refused the cancel of the last follower: it follows the job again.
-- Reply: 1 reattached, 0 the request was not detached.
local job_record = KEYS[1]
local request_record = KEYS[2]

if redis.call('HGET', request_record, 'detached') ~= '1' then return 0 end
redis.call('HDEL', request_record, 'detached')
redis.call('HINCRBY', job_record, 'attached', 1)
return 1
