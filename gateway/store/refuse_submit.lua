-- A submit the gateway refuses for RunComfy (a model its catalog does not know): verify the key
-- and charge the submit rate, team-wide and per key, so that a flood of them stays bounded;
-- nothing else (no submit of the day, no usage row, no budget, no job).
-- KEYS[1] key record, KEYS[2] team limits.
-- ARGV[1] key digest, ARGV[2] team key prefix, ARGV[3] period candidates,
-- ARGV[4] key id without slot, ARGV[5] usage retention seconds.
-- Returns {0, reason}; {2, kind, scope, limit, retry after, rate-limit info (5), team}; or
-- {1, team}.
local team, err = verify_key(KEYS[1], ARGV[1])
if not team then return {0, err} end
local now = now_seconds()
local day = current_periods(ARGV[3], now)['d']
local gate = new_gate(read_limits(KEYS[2]), ARGV[4], ARGV[2], day, now)
local refusal = gate_rate(gate)
if refusal then
  return refusal_reply(gate, ARGV[2] .. 'usage:' .. day.id, tonumber(ARGV[5]), team,
    unpack(refusal))
end
commit_gate(gate)
return {1, team}
