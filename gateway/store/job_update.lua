-- Moves a job forward; terminal states are final (a late poll never undoes a cancel).
-- KEYS[1] job record, KEYS[2] cached result of its identity, KEYS[3] cache index of its
-- target, KEYS[4] cache index of targets, KEYS[5] job in flight of its identity. ARGV[1] job id, ARGV[2] new state, ARGV[3] record ttl
-- after the end, ARGV[4] cache ttl, ARGV[5] target, ARGV[6] identity hash,
-- ARGV[7..] field, value pairs. Returns the previous state ('gone' if the job expired).
local cur = redis.call('HMGET', KEYS[1], 'state', 'store')
if not cur[1] then return 'gone' end
if TERMINAL[cur[1]] then return cur[1] end
local fields = {'state', ARGV[2]}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
local now = now_seconds()
if TERMINAL[ARGV[2]] then
  fields[#fields + 1] = 'finished_ts'
  fields[#fields + 1] = now
end
redis.call('HSET', KEYS[1], unpack(fields))
if TERMINAL[ARGV[2]] then
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
  if redis.call('GET', KEYS[5]) == ARGV[1] then redis.call('DEL', KEYS[5]) end
  if ARGV[2] == 'succeeded' and cur[2] == '1' then
    local ttl = tonumber(ARGV[4])
    redis.call('SET', KEYS[2], ARGV[1], 'EX', ttl)
    redis.call('SADD', KEYS[3], ARGV[6])
    redis.call('EXPIRE', KEYS[3], ttl)
    redis.call('SADD', KEYS[4], ARGV[5])
    redis.call('EXPIRE', KEYS[4], ttl)
  end
end
return cur[1]
