-- uses: clock, keys, policy, periods, limits, gate, usage
-- The team-shard half of a shared-scope admission: verify the key, check and charge the limits
-- that hold whatever the outcome (access, submit rate, submits per day), resolve the policy.
-- Reply: {0, reason} a refused key; {2, kind, scope, limit, retry after, rate-limit name, quota,
-- window, remaining, reset, team} a refused limit; or {1, team, policy, rate-limit name, quota,
-- window, remaining, reset}.
local key_record = KEYS[1]
local policy_hash = KEYS[2]     -- the team's dedup policy
local team_limits = KEYS[3]
local key_digest = ARGV[1]
local key_id = ARGV[2]
local target = ARGV[3]
local default_policy = ARGV[4]
local api = ARGV[5]
local team_prefix = ARGV[6]     -- '<ns>:v1:{t:<shard>}:'
local period_spec = ARGV[7]     -- period candidates (current_periods)
local kid = ARGV[8]             -- key id without its shard
local usage_retention = tonumber(ARGV[9])

local team, err = verify_key(key_record, key_digest)
if not team then return {0, err} end
local now = now_seconds()
local day = current_periods(period_spec, now)['d']
local usage_key = team_prefix .. 'usage:' .. day.id
local gate = new_gate(read_limits(team_limits), kid, team_prefix, day, now)
local refusal = gate_check(gate, api, target)
if refusal then
  return refusal_reply(gate, usage_key, usage_retention, team, unpack(refusal))
end
local rl = gate.rl
commit_gate(gate)
usage_add(usage_key, usage_retention, {'requests', 1, 'key:' .. kid .. ':requests', 1,
  'm:' .. target .. ':requests', 1})
return {1, team, resolve_policy(policy_hash, key_id, target, default_policy),
        rl[1], rl[2], rl[3], rl[4], tostring(rl[5])}
