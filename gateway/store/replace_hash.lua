-- KEYS[1] hash; ARGV field, value, field, value, ... (none: the hash is removed).
-- Replaces the whole hash at once, so no reader ever sees it empty or half written
-- (a team's limits or dedup policy).
redis.call('DEL', KEYS[1])
if #ARGV > 0 then
  redis.call('HSET', KEYS[1], unpack(ARGV))
end
return 1
