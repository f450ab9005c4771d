-- Removes a member unless its score was raised after the caller looked (someone re-marked it).
-- Reply: 1 removed, else 0.
local sorted_set = KEYS[1]
local member = ARGV[1]
local seen_score = tonumber(ARGV[2])  -- the score the caller saw

local score = redis.call('ZSCORE', sorted_set, member)
if score and tonumber(score) <= seen_score then
  return redis.call('ZREM', sorted_set, member)
end
return 0
