-- Argo CD health check for shadow.mlops.dev/ShadowDeployment.
--
-- This file is the single source: argocd-cm-patch.yaml embeds it verbatim, and a unit test
-- (tests/unit/test_argocd_health.py) fails when the two differ. Argo CD runs it with
-- gopher-lua (Lua 5.1), so only the subset shared with Lua 5.4 is used.
--
--   status missing, or observedGeneration behind metadata.generation -> Progressing
--   Pending, Deploying, Shadowing                                  -> Progressing
--   Passed, Promoted                                               -> Healthy
--   Failed, Inconclusive, Error                                    -> Degraded (a human must look)
--   anything else                                                  -> Unknown
hs = {}

local function nonempty(value)
  return type(value) == "string" and value ~= ""
end

-- The first argument that is a non-empty string.
local function first(...)
  for i = 1, select("#", ...) do
    local value = select(i, ...)
    if nonempty(value) then
      return value
    end
  end
  return nil
end

local function condition(status, wanted)
  if type(status.conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if type(c) == "table" and c.type == wanted then
      return c
    end
  end
  return nil
end

local function ready_message(status, fallback)
  local ready = condition(status, "Ready") or {}
  return first(ready.message, fallback)
end

local function verdict(status)
  if type(status.verdict) == "table" then
    return status.verdict
  end
  return {}
end

local status = obj.status
local generation = obj.metadata and obj.metadata.generation
if type(status) ~= "table"
  or (generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation)) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator"
  return hs
end

local phase = status.phase
if phase == "Pending" or phase == "Deploying" or phase == "Shadowing" then
  hs.status = "Progressing"
  local fallback = phase
  if phase == "Shadowing" and type(status.coverage) == "table" and nonempty(status.coverage.summary) then
    fallback = "Shadowing: " .. status.coverage.summary
  end
  hs.message = ready_message(status, fallback)
elseif phase == "Passed" then
  hs.status = "Healthy"
  hs.message = first(verdict(status).message, "The candidate passed every check")
elseif phase == "Promoted" then
  -- The candidate now serves as the primary; the mirror is gone.
  hs.status = "Healthy"
  hs.message = ready_message(status, "The candidate was promoted to primary")
elseif phase == "Inconclusive" then
  -- The business cycle completed without enough evidence for a verdict: a human must look.
  local v = verdict(status)
  hs.status = "Degraded"
  hs.message = first(v.message, v.reason, "Inconclusive: not enough evidence for a verdict")
elseif phase == "Failed" then
  local v = verdict(status)
  hs.status = "Degraded"
  if nonempty(v.reason) and nonempty(v.message) then
    hs.message = v.reason .. ": " .. v.message
  else
    hs.message = first(v.reason, v.message, "The candidate failed its checks")
  end
elseif phase == "Error" then
  hs.status = "Degraded"
  hs.message = ready_message(status, "The operator reported an error")
elseif phase == nil then
  hs.status = "Unknown"
  hs.message = "The operator has not reported a phase"
else
  hs.status = "Unknown"
  hs.message = "Unknown phase: " .. tostring(phase)
end
return hs
