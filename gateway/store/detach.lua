-- A caller cancels its gateway id. KEYS[1] job record, KEYS[2] request record.
-- Followers of a queued job detach; the last one out must cancel upstream ('last').
-- Returns {'already'}, {'gone'}, {'terminal', state}, {'running'}, {'submitting'},
-- {'detached'} or {'last', state} (a queued job is cancelled without asking RunComfy).
if redis.call('HGET', KEYS[2], 'detached') == '1' then return {'already'} end
local j = redis.call('HMGET', KEYS[1], 'state', 'upstream_status')
if not j[1] then return {'gone'} end
if TERMINAL[j[1]] then return {'terminal', j[1]} end
if j[1] == 'submitting' then return {'submitting'} end
if j[2] == 'in_progress' then return {'running'} end
redis.call('HSET', KEYS[2], 'detached', '1')
if redis.call('HINCRBY', KEYS[1], 'attached', -1) <= 0 then return {'last', j[1]} end
return {'detached'}
