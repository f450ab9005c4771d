-- RunComfy refused the cancel of the last follower: it follows the job again.
-- KEYS[1] job record, KEYS[2] request record.
if redis.call('HGET', KEYS[2], 'detached') ~= '1' then return 0 end
redis.call('HDEL', KEYS[2], 'detached')
redis.call('HINCRBY', KEYS[1], 'attached', 1)
return 1
