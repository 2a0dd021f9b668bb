-- Argo CD health of a Weft resource (Mesh, TrafficSplit, AuthorizationPolicy), read as kstatus
-- reads it (docs/gitops.md): the operator has not observed this generation yet → Progressing;
-- Stalled=True (invalid, a Service missing, overridden by a route) → Degraded;
-- Reconciling=True (proxies still applying it) → Progressing; Ready=True → Healthy.
-- Lua 5.1, as Argo CD runs it (gopher-lua): `obj` is the live object.
local hs = { status = "Progressing", message = "Waiting for the Weft operator to report a status" }
local st = obj.status
if st == nil then
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and (st.observedGeneration == nil or st.observedGeneration < generation) then
  hs.message = "Waiting for the Weft operator to observe generation " .. tostring(generation)
  return hs
end
local byType = {}
if st.conditions ~= nil then
  for _, c in ipairs(st.conditions) do
    byType[c.type] = c
  end
end
local function said(c)
  return (c.reason or "") .. ": " .. (c.message or "")
end
local stalled, reconciling, ready = byType["Stalled"], byType["Reconciling"], byType["Ready"]
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = said(stalled)
elseif reconciling ~= nil and reconciling.status == "True" then
  hs.message = said(reconciling)
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or ""
elseif ready ~= nil then
  hs.message = said(ready)
end
return hs
