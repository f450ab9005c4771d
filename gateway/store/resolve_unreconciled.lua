-- uses: spend
-- An admin resolves a submit of unknown outcome: RunComfy charged it (its cost, or the
-- reservation) or did not (a refund).
-- Reply: {0} the job is not in the ledger, else {1, reserved micro, settled micro}.
local unreconciled = KEYS[1]              -- job id -> JSON of its reservation
local job_id = ARGV[1]
local resolution = ARGV[2]                -- 'charged' or 'refunded'
local cost_micro = tonumber(ARGV[3])      -- nil ('') charges the reservation
local usage_retention = tonumber(ARGV[4])

local raw = redis.call('HGET', unreconciled, job_id)
if not raw then return {0} end
local e = cjson.decode(raw)
local reserved = tonumber(e.reserved) or 0
local amount = 0
if resolution == 'charged' then amount = cost_micro or reserved end
local records = job_spend_records(e.spend_key, e.key_spend_key, e.spend_periods, e.key_id, 'm')
settle_spend(records, e.usage_key, usage_retention, e.target, reserved, amount)
redis.call('HDEL', unreconciled, job_id)
return {1, reserved, amount}
