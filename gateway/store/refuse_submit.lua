-- uses: clock, keys, periods, limits, gate
-- A submit the gateway refuses for RunComfy (a model its catalog does not know): verify the key
-- and charge the submit rate, team-wide and per key, so that a flood of them stays bounded;
-- nothing else (no submit of the day, no usage row, no budget, no job).
-- Reply: {0, reason} a refused key; {2, kind, scope, limit, retry after, rate-limit name, quota,
-- window, remaining, reset, team} over the rate; or {1, team}.
local key_record = KEYS[1]
local team_limits = KEYS[2]
local key_digest = ARGV[1]
local team_prefix = ARGV[2]      -- '<ns>:v1:{t:<shard>}:'
local period_spec = ARGV[3]      -- period candidates (current_periods)
local kid = ARGV[4]              -- key id without its shard
local usage_retention = tonumber(ARGV[5])

local team, err = verify_key(key_record, key_digest)
if not team then return {0, err} end
local now = now_seconds()
local day = current_periods(period_spec, now)['d']
local gate = new_gate(read_limits(team_limits), kid, team_prefix, day, now)
local refusal = gate_rate(gate)
if refusal then
  return refusal_reply(gate, team_prefix .. 'usage:' .. day.id, usage_retention, team,
    unpack(refusal))
end
commit_gate(gate)
return {1, team}
