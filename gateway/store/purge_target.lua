-- KEYS[1] cached identities of one target (cidx:<target>), KEYS[2] targets with cached ones (cidx).
-- ARGV[1] prefix of the slot's cached entries (<tag>:dedup:), ARGV[2] the target.
-- Removes every cached entry of the target and its index entries at once, so an entry cached
-- meanwhile is either purged or still indexed. Returns how many cached entries existed.
local identities = redis.call('SMEMBERS', KEYS[1])
local purged = 0
for i = 1, #identities, 500 do
  local batch = {}
  for j = i, math.min(i + 499, #identities) do
    batch[#batch + 1] = ARGV[1] .. identities[j]
  end
  purged = purged + redis.call('DEL', unpack(batch))
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
return purged
