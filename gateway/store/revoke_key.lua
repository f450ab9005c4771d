-- Marks an API key revoked, keeping the first revocation time.
-- Reply: the key's record as a flat field/value list, or {} if there is no such key.
local key_record = KEYS[1]
local revoked_at = ARGV[1]

if redis.call('EXISTS', key_record) == 0 then return {} end
redis.call('HSETNX', key_record, 'revoked_at', revoked_at)
return redis.call('HGETALL', key_record)
