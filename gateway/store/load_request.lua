-- KEYS[1] key record, KEYS[2] request record; ARGV[1] SHA-256 of the presented key,
-- ARGV[2] job key prefix (same slot), ARGV[3] scope 'team' or 'shared', ARGV[4] team (shared).
-- Verifies the key and reads the request and the job it follows, in one round trip. In the
-- shared scope the caller verified the key already, and a request of another team is unknown.
-- Returns {0, reason}, {2, team_id} when the request is unknown, or
-- {1, team_id, n, request field, value, ... (n items), job field, value, ...}.
local team = ARGV[4]
if ARGV[3] == 'team' then
  local err
  team, err = verify_key(KEYS[1], ARGV[1])
  if not team then return {0, err} end
end
local rec = redis.call('HGETALL', KEYS[2])
if #rec == 0 then return {2, team} end
if redis.call('HGET', KEYS[2], 'team') ~= team then return {2, team} end
local out = {1, team, #rec}
local job = nil
for i = 1, #rec, 2 do
  out[#out + 1] = rec[i]
  out[#out + 1] = rec[i + 1]
  if rec[i] == 'job' then job = rec[i + 1] end
end
if job then
  for _, v in ipairs(redis.call('HGETALL', ARGV[2] .. job)) do out[#out + 1] = v end
end
return out
