-- The team-slot half of a shared-scope admission: verify the key, check and charge the limits
-- that hold whatever the outcome (access, submit rate, submits per day), resolve the policy.
-- KEYS[1] key record, KEYS[2] team policy hash, KEYS[3] team limits.
-- ARGV[1] key digest, ARGV[2] key id, ARGV[3] target, ARGV[4] default policy, ARGV[5] api,
-- ARGV[6] team key prefix, ARGV[7] period candidates, ARGV[8] key id without slot,
-- ARGV[9] usage retention seconds.
-- Returns {0, reason}; {2, kind, scope, limit, retry after, rate-limit info (5), team}; or
-- {1, team, policy, rate-limit info (5)}.
local team, err = verify_key(KEYS[1], ARGV[1])
if not team then return {0, err} end
local now = now_seconds()
local day = current_periods(ARGV[7], now)['d']
local usage_key = ARGV[6] .. 'usage:' .. day.id
local ttl = tonumber(ARGV[9])
local gate = new_gate(read_limits(KEYS[3]), ARGV[8], ARGV[6], day, now)
local refusal = gate_check(gate, ARGV[5], ARGV[3])
if refusal then return refusal_reply(gate, usage_key, ttl, team, unpack(refusal)) end
local rl = gate.rl
commit_gate(gate)
usage_add(usage_key, ttl, {'requests', 1, 'key:' .. ARGV[8] .. ':requests', 1,
  'm:' .. ARGV[3] .. ':requests', 1})
return {1, team, resolve_policy(KEYS[2], ARGV[2], ARGV[3], ARGV[4]),
        rl[1], rl[2], rl[3], rl[4], tostring(rl[5])}
