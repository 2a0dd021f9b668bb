-- Argo CD health of a Gateway (Weft's GatewayClass runs the Weft proxy for it, docs/ingress.md):
-- Accepted=False → Degraded; conditions older than this generation → Progressing;
-- Programmed=True → Healthy, else Progressing (the proxy not serving it yet).
-- Lua 5.1, as Argo CD runs it (gopher-lua): `obj` is the live object.
local hs = { status = "Progressing", message = "Waiting for the Gateway's controller" }
local generation = obj.metadata.generation
local byType = {}
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if generation == nil or c.observedGeneration == nil or c.observedGeneration >= generation then
      byType[c.type] = c
    end
  end
end
local accepted, programmed = byType["Accepted"], byType["Programmed"]
if accepted ~= nil and accepted.status == "False" then
  hs.status = "Degraded"
  hs.message = "Accepted " .. (accepted.reason or "") .. ": " .. (accepted.message or "")
elseif programmed ~= nil and programmed.status == "True" then
  hs.status = "Healthy"
  hs.message = programmed.message or ""
elseif programmed ~= nil then
  hs.message = "Programmed " .. (programmed.reason or "") .. ": " .. (programmed.message or "")
end
return hs
