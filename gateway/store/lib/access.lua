-- An access list is a JSON array of ids; an entry ending in '*' matches a prefix.
local function listed(list_json, target)
  local ok, list = pcall(cjson.decode, list_json)
  if not ok or type(list) ~= 'table' then return false end
  for _, p in ipairs(list) do
    if type(p) == 'string' then
      if p == '*' or p == target then return true end
      local n = #p
      if n > 1 and string.sub(p, n) == '*' and string.sub(target, 1, n - 1) == string.sub(p, 1, n - 1) then
        return true
      end
    end
  end
  return false
end
