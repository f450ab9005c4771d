-- KEYS[1] key record, KEYS[2] request record, KEYS[3] the team's queue;
-- ARGV[1] SHA-256 of the presented key, ARGV[2] job key prefix (same slot), ARGV[3] scope
-- 'team' or 'shared', ARGV[4] team (shared), ARGV[5] key id without slot, ARGV[6] polls per
-- second allowed per key (0: no limit), ARGV[7] poll burst, ARGV[8] team key prefix.
-- Verifies the key and reads the request and the job it follows, in one round trip. In the
-- shared scope the caller verified the key already, and a request of another team is unknown.
-- Returns {0, reason}, {3, seconds to wait} when polling too fast, {2, team_id} when the
-- request is unknown, or
-- {1, team_id, n, request field, value, ... (n items), job field, value, ...}.
local team = ARGV[4]
if ARGV[3] == 'team' then
  local err
  team, err = verify_key(KEYS[1], ARGV[1])
  if not team then return {0, err} end
  -- Polls have their own generous per-key rate, which only protects the gateway.
  local per_second = tonumber(ARGV[6])
  if per_second > 0 then
    local now = now_seconds()
    local key = ARGV[8] .. 'pgcra:' .. ARGV[5]
    local ok, new_tat, wait = gcra_peek(key, per_second * 60, tonumber(ARGV[7]), now)
    if not ok then return {3, tostring(wait)} end
    gcra_commit(key, per_second * 60, new_tat, now)
  end
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
  local state = nil
  local fields = redis.call('HGETALL', ARGV[2] .. job)
  for i = 1, #fields, 2 do
    if fields[i] ~= 'body' then
      out[#out + 1] = fields[i]
      out[#out + 1] = fields[i + 1]
    end
    if fields[i] == 'state' then state = fields[i + 1] end
  end
  if state == 'queued' then
    local rank = redis.call('ZRANK', KEYS[3], job)
    out[#out + 1] = 'queue_position'
    out[#out + 1] = tostring(rank and (rank + 1) or 1)
  end
end
return out
