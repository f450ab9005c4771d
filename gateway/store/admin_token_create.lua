-- KEYS[1] the new token's record, KEYS[2] set of token ids, KEYS[3] active name -> token id.
-- ARGV: 1 token id, 2 digest, 3 name, 4 role, 5 public prefix, 6 created_at, 7 created_by.
-- Names are unique among active tokens, so an audit record's actor names one live credential.
-- Returns 1, or 0 when an active token has the name, -1 when the id is taken (draw another).
if redis.call('HEXISTS', KEYS[3], ARGV[3]) == 1 then return 0 end
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
redis.call('HSET', KEYS[1], 'hash', ARGV[2], 'name', ARGV[3], 'role', ARGV[4],
  'prefix', ARGV[5], 'created_at', ARGV[6], 'created_by', ARGV[7])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[1])
return 1
