-- uses: terminal
-- A caller cancels its gateway id. Followers of a queued job detach; the last one out must
-- cancel upstream ('last'; a queued job is cancelled without asking RunComfy).
-- Reply: {verdict} or {verdict, state}; verdict: already | gone | terminal (with the state) |
-- running | submitting | detached | last (with the state).
local job_record = KEYS[1]
local request_record = KEYS[2]

if redis.call('HGET', request_record, 'detached') == '1' then return {'already'} end
local j = redis.call('HMGET', job_record, 'state', 'upstream_status')
if not j[1] then return {'gone'} end
if TERMINAL[j[1]] then return {'terminal', j[1]} end
if j[1] == 'submitting' then return {'submitting'} end
if j[2] == 'in_progress' then return {'running'} end
redis.call('HSET', request_record, 'detached', '1')
if redis.call('HINCRBY', job_record, 'attached', -1) <= 0 then return {'last', j[1]} end
return {'detached'}
