-- KEYS[1] the delivery's hash, KEYS[2] due deliveries; ARGV[1] delivery id, ARGV[2] due time,
-- ARGV[3] TTL of the hash, ARGV[4..] its fields and values.
-- Queues a webhook delivery at once: never a hash without its TTL or without its due entry.
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
redis.call('ZADD', KEYS[2], tonumber(ARGV[2]), ARGV[1])
return 1
