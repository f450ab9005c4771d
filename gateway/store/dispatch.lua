-- Starts queued jobs of one team as its concurrency slots free up, on whichever replica runs
-- it. Slots whose expiry passed are released first (a replica died mid-submit, or a job
-- outlived its lifetime) and returned, so the caller can settle what they leave behind.
-- KEYS[1] team limits, KEYS[2] running jobs, KEYS[3] queued jobs.
-- ARGV[1] job key prefix (same slot), ARGV[2] submit deadline seconds, ARGV[3] most to start.
-- A job at the head whose body is still on its way (queue_body.lua) holds the queue, keeping
-- its order, until the submit deadline after its admission; past it, its admitting replica
-- is taken to have died and the job is returned as orphaned, for the caller to refund.
-- Returns {jobs to send now, expired job ids, jobs still queued, orphaned job ids}.
local now = now_seconds()
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
if #expired > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now) end
local max_concurrent = tonumber(redis.call('HGET', KEYS[1], 'max_concurrent'))
local busy = redis.call('ZCARD', KEYS[2])
local started = {}
local orphaned = {}
while (not max_concurrent or busy < max_concurrent) and #started < tonumber(ARGV[3]) do
  local head = redis.call('ZRANGE', KEYS[3], 0, 0)
  if #head == 0 then break end
  local jid = head[1]
  local jkey = ARGV[1] .. jid
  local job = redis.call('HMGET', jkey, 'state', 'body_pending', 'created_ts')
  if job[1] == 'queued' and job[2] == '1' then
    if now < (tonumber(job[3]) or 0) + tonumber(ARGV[2]) then break end
    orphaned[#orphaned + 1] = jid
  end
  redis.call('ZREM', KEYS[3], jid)
  if job[1] == 'queued' and job[2] ~= '1' then
    local deadline = now + tonumber(ARGV[2])
    redis.call('HSET', jkey, 'state', 'submitting', 'submit_deadline_ts', deadline)
    redis.call('ZADD', KEYS[2], deadline, jid)
    busy = busy + 1
    started[#started + 1] = jid
  end
end
return {started, expired, redis.call('ZCARD', KEYS[3]), orphaned}
