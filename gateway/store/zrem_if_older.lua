-- Removes a member unless its score was raised after the caller looked (someone re-marked it).
-- KEYS[1] sorted set; ARGV[1] member, ARGV[2] the score the caller saw. Returns 1 if removed.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) <= tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
