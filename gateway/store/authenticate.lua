-- KEYS[1] key record; ARGV[1] SHA-256 of the presented key.
-- Returns {1, team_id} or {0, reason}.
local team, err = verify_key(KEYS[1], ARGV[1])
if not team then return {0, err} end
return {1, team}
