-- uses: clock, keys, gcra
-- Verifies the key and reads the request and the job it follows, in one round trip. In the
-- shared scope the caller verified the key already, and a request of another team is unknown.
-- Polls have their own generous per-key rate, which only protects the gateway.
-- Reply: {0, reason} a refused key; {3, seconds to wait} when polling too fast; {2, team_id}
-- when the request is unknown; or {1, team_id, n, request field, value, ... (n items), job
-- field, value, ... (but its request body and the omitted field), and 'queue_position', its
-- position while the job is queued}.
local key_record = KEYS[1]
local request_record = KEYS[2]
local queued_jobs = KEYS[3]           -- the team's queue
local key_digest = ARGV[1]            -- SHA-256 of the presented key
local job_prefix = ARGV[2]            -- same shard
local scope = ARGV[3]                 -- 'team' or 'shared'
local shared_team = ARGV[4]           -- the team (shared scope)
local kid = ARGV[5]                   -- key id without its shard
local poll_rate = tonumber(ARGV[6])   -- polls per second allowed per key (0: no limit)
local poll_burst = tonumber(ARGV[7])
local team_prefix = ARGV[8]           -- '<ns>:v1:{t:<shard>}:'
local omitted = ARGV[9]               -- a job field the answer does not use ('' for none)

local team = shared_team
if scope == 'team' then
  local err
  team, err = verify_key(key_record, key_digest)
  if not team then return {0, err} end
  if poll_rate > 0 then
    local now = now_seconds()
    local key = team_prefix .. 'pgcra:' .. kid
    local ok, new_tat, wait = gcra_peek(key, poll_rate * 60, poll_burst, now)
    if not ok then return {3, tostring(wait)} end
    gcra_commit(key, poll_rate * 60, new_tat, now)
  end
end
local rec = redis.call('HGETALL', request_record)
if #rec == 0 then return {2, team} end
if redis.call('HGET', request_record, 'team') ~= team then return {2, team} end
local out = {1, team, #rec}
local job = nil
for i = 1, #rec, 2 do
  out[#out + 1] = rec[i]
  out[#out + 1] = rec[i + 1]
  if rec[i] == 'job' then job = rec[i + 1] end
end
if job then
  local state = nil
  local fields = redis.call('HGETALL', job_prefix .. job)
  for i = 1, #fields, 2 do
    if fields[i] ~= 'body' and fields[i] ~= omitted then
      out[#out + 1] = fields[i]
      out[#out + 1] = fields[i + 1]
    end
    if fields[i] == 'state' then state = fields[i + 1] end
  end
  if state == 'queued' then
    local rank = redis.call('ZRANK', queued_jobs, job)
    out[#out + 1] = 'queue_position'
    out[#out + 1] = tostring(rank and (rank + 1) or 1)
  end
end
return out
