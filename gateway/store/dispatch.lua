-- uses: clock
-- Starts queued jobs of one team as its concurrency slots free up, on whichever replica runs
-- it. Slots whose expiry passed are released first (a replica died mid-submit, or a job
-- outlived its lifetime) and returned, so the caller can settle what they leave behind.
-- A job at the head whose body is still on its way (queue_body.lua) holds the queue, keeping
-- its order, until the submit deadline after its admission; past it, its admitting replica
-- is taken to have died and the job is returned as orphaned, for the caller to refund.
-- Reply: {job ids to send now, expired job ids, number of jobs still queued, orphaned job ids}.
local team_limits = KEYS[1]
local running_jobs = KEYS[2]
local queued_jobs = KEYS[3]
local job_prefix = ARGV[1]                -- same shard
local submit_deadline = tonumber(ARGV[2]) -- seconds
local most = tonumber(ARGV[3])            -- most jobs to start

local now = now_seconds()
local expired = redis.call('ZRANGEBYSCORE', running_jobs, '-inf', now)
if #expired > 0 then redis.call('ZREMRANGEBYSCORE', running_jobs, '-inf', now) end
local max_concurrent = tonumber(redis.call('HGET', team_limits, 'max_concurrent'))
local busy = redis.call('ZCARD', running_jobs)
local started = {}
local orphaned = {}
while (not max_concurrent or busy < max_concurrent) and #started < most do
  local head = redis.call('ZRANGE', queued_jobs, 0, 0)
  if #head == 0 then break end
  local jid = head[1]
  local jkey = job_prefix .. jid
  local job = redis.call('HMGET', jkey, 'state', 'body_pending', 'created_ts')
  if job[1] == 'queued' and job[2] == '1' then
    if now < (tonumber(job[3]) or 0) + submit_deadline then break end
    orphaned[#orphaned + 1] = jid
  end
  redis.call('ZREM', queued_jobs, jid)
  if job[1] == 'queued' and job[2] ~= '1' then
    local deadline = now + submit_deadline
    redis.call('HSET', jkey, 'state', 'submitting', 'submit_deadline_ts', deadline)
    redis.call('ZADD', running_jobs, deadline, jid)
    busy = busy + 1
    started[#started + 1] = jid
  end
end
return {started, expired, redis.call('ZCARD', queued_jobs), orphaned}
