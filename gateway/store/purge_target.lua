-- Removes every cached entry of one target and its index entries at once, so an entry cached
-- meanwhile is either purged or still indexed.
-- Reply: how many cached entries existed.
local target_index = KEYS[1]   -- cached identities of the target (cidx:<target>)
local cached_targets = KEYS[2] -- targets with cached identities (cidx)
local dedup_prefix = ARGV[1]   -- prefix of the shard's cached entries (<tag>:dedup:)
local target = ARGV[2]

local identities = redis.call('SMEMBERS', target_index)
local purged = 0
for i = 1, #identities, 500 do
  local batch = {}
  for j = i, math.min(i + 499, #identities) do
    batch[#batch + 1] = dedup_prefix .. identities[j]
  end
  purged = purged + redis.call('DEL', unpack(batch))
end
redis.call('DEL', target_index)
redis.call('SREM', cached_targets, target)
return purged
