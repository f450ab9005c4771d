-- KEYS[1] key record, KEYS[2] team policy hash; ARGV[1] key digest, ARGV[2] key id,
-- ARGV[3] target, ARGV[4] default policy. The team-slot half of a shared-scope admission.
-- Returns {0, reason} or {1, team, policy}.
local team, err = verify_key(KEYS[1], ARGV[1])
if not team then return {0, err} end
return {1, team, resolve_policy(KEYS[2], ARGV[2], ARGV[3], ARGV[4])}
