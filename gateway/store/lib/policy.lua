-- The most restrictive of the team's default, the key's and the model's dedup policy.
local function resolve_policy(policy_key, kid, target, default)
  local rank = {off = 0, inflight = 1, seeded = 2, cache = 3}
  local p = redis.call('HMGET', policy_key, 'default', 'key:' .. kid, 'model:' .. target)
  local policy = default
  if p[1] and rank[p[1]] then policy = p[1] end
  for i = 2, 3 do
    if p[i] and rank[p[i]] and rank[p[i]] < rank[policy] then policy = p[i] end
  end
  return policy
end
