-- Argo CD health of a Gateway API route (HTTPRoute, GRPCRoute) that Weft programs, from its
-- status.parents[] (one entry per parent and controller, Weft's under weft.dev/mesh or
-- weft.dev/gateway): a parent that refused it (Accepted=False) or a backend not found
-- (ResolvedRefs=False) → Degraded; no parent has reported on this generation yet → Progressing;
-- else Healthy. Lua 5.1, as Argo CD runs it (gopher-lua): `obj` is the live object.
local hs = { status = "Progressing", message = "Waiting for a controller to accept the route" }
local generation = obj.metadata.generation
local parents = {}
if obj.status ~= nil and obj.status.parents ~= nil then
  parents = obj.status.parents
end
local current = 0
for _, p in ipairs(parents) do
  local stale = false
  local bad = nil
  if p.conditions ~= nil then
    for _, c in ipairs(p.conditions) do
      if generation ~= nil and c.observedGeneration ~= nil and c.observedGeneration < generation then
        stale = true
      elseif (c.type == "Accepted" or c.type == "ResolvedRefs") and c.status == "False" and bad == nil then
        bad = c
      end
    end
  end
  local ref = p.parentRef or {}
  local who = (ref.kind or "Gateway") .. " " .. (ref.name or "?") .. " (" .. (p.controllerName or "?") .. ")"
  if bad ~= nil and not stale then
    hs.status = "Degraded"
    hs.message = who .. ": " .. bad.type .. " " .. (bad.reason or "") .. ": " .. (bad.message or "")
    return hs
  end
  if not stale then
    current = current + 1
  end
end
if current > 0 and current == #parents then
  hs.status = "Healthy"
  hs.message = "Accepted by " .. tostring(current) .. " parent(s)"
elseif #parents > 0 then
  hs.message = "Waiting for every parent to observe generation " .. tostring(generation)
end
return hs
