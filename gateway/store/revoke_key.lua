-- KEYS[1] key record; ARGV[1] revocation time.
-- Marks the key revoked (keeping the first revocation time) and returns the record, or {} if absent.
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
redis.call('HSETNX', KEYS[1], 'revoked_at', ARGV[1])
return redis.call('HGETALL', KEYS[1])
