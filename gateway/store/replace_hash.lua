-- Replaces a whole hash at once, so no reader ever sees it empty or half written (a team's
-- limits or dedup policy).
-- Reply: 1.
local hash_key = KEYS[1]
local fields = {unpack(ARGV, 1)}  -- field, value, ... (none: the hash is removed)

redis.call('DEL', hash_key)
if #fields > 0 then
  redis.call('HSET', hash_key, unpack(fields))
end
return 1
