-- The states a job never leaves.
local TERMINAL = {succeeded = true, failed = true, cancelled = true, rejected = true, unknown = true}
