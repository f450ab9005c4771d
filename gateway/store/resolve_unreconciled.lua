-- An admin resolves a submit of unknown outcome: RunComfy charged it (its cost, or the
-- reservation) or did not (a refund). KEYS[1] unreconciled ledger.
-- ARGV[1] job id, ARGV[2] 'charged' or 'refunded', ARGV[3] cost in micro-dollars ('' = the
-- reservation), ARGV[4] usage retention seconds.
-- Returns {0} if the job is not in the ledger, else {1, reserved, settled}.
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return {0} end
local e = cjson.decode(raw)
local reserved = tonumber(e.reserved) or 0
local amount = 0
if ARGV[2] == 'charged' then amount = tonumber(ARGV[3]) or reserved end
local records = job_spend_records(e.spend_key, e.key_spend_key, e.spend_periods, e.key_id, 'm')
settle_spend(records, e.usage_key, tonumber(ARGV[4]), e.target, reserved, amount)
redis.call('HDEL', KEYS[1], ARGV[1])
return {1, reserved, amount}
