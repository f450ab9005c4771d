-- KEYS[1] team record, KEYS[2] team key set, KEYS[3..] every key record of the team.
-- ARGV[1] the number of key records the caller saw.
-- Removes the team and all its keys in one atomic step, so no key outlives its team.
-- Returns 1 when deleted, 0 when there is no such team, -1 when keys changed meanwhile (retry).
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('SCARD', KEYS[2]) ~= tonumber(ARGV[1]) then return -1 end
for i = 3, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then return -1 end
end
redis.call('DEL', unpack(KEYS))
return 1
