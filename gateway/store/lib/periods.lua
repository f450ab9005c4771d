-- Period candidates come from the gateway as "kind,id,start,end;..." (it knows the time zone,
-- Redis knows the time): the candidate of each kind that contains now is the current period.
local function current_periods(spec, now)
  local out = {}
  for kind, id, s, e in string.gmatch(spec, '(%a),([^,;]+),([^,;]+),([^,;]+)') do
    if now >= tonumber(s) and now < tonumber(e) then
      out[kind] = {id = id, start = tonumber(s), ['end'] = tonumber(e)}
    end
  end
  return out
end
