-- uses: keys
-- Verifies a presented API key against its record in the team's shard (the shared cache scope
-- verifies keys with this before it reads the shared shard).
-- Reply: {1, team_id} or {0, reason}; reason: unknown_key | revoked_key | expired_key.
local key_record = KEYS[1]
local key_digest = ARGV[1]  -- SHA-256 of the presented key

local team, err = verify_key(key_record, key_digest)
if not team then return {0, err} end
return {1, team}
