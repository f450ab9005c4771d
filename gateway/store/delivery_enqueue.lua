-- Queues a webhook delivery at once: never a hash without its TTL or without its due entry.
-- Reply: 1.
local delivery_record = KEYS[1]
local due_deliveries = KEYS[2]
local delivery_id = ARGV[1]
local due_at = tonumber(ARGV[2])
local record_ttl = tonumber(ARGV[3])
local fields = {unpack(ARGV, 4)}  -- the delivery's field, value pairs

redis.call('HSET', delivery_record, unpack(fields))
redis.call('EXPIRE', delivery_record, record_ttl)
redis.call('ZADD', due_deliveries, due_at, delivery_id)
return 1
