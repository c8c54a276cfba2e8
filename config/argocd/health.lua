-- Argo CD health of a multicomms Company or Channel, from its Ready condition (and a Channel's
-- WorkersReady: AWS in sync but its processors not all ready yet is Progressing).
-- Installed into argocd-cm by argocd/argocd-cm-health.yaml (keep the two in sync: a test does).
local hs = {}
if obj.status ~= nil and obj.status.conditions ~= nil then
  if obj.status.observedGeneration ~= nil and obj.metadata.generation ~= nil
      and obj.status.observedGeneration < obj.metadata.generation then
    hs.status = "Progressing"
    hs.message = "waiting for the operator to reconcile generation " .. obj.metadata.generation
    return hs
  end
  local workers = nil
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == "WorkersReady" and condition.status ~= "True" then
      workers = condition
    end
  end
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == "Ready" and condition.status == "True" and workers ~= nil then
      hs.status = "Progressing"
      hs.message = "WorkersReady " .. workers.reason .. ": " .. workers.message
      return hs
    end
    if condition.type == "Ready" then
      if condition.status == "True" then
        hs.status = "Healthy"
      elseif condition.reason == "AwsError" or condition.reason == "Blocked" or condition.reason == "InUse" then
        hs.status = "Progressing"
      else
        hs.status = "Degraded"
      end
      hs.message = condition.reason .. ": " .. condition.message
      return hs
    end
  end
end
hs.status = "Progressing"
hs.message = "waiting for the operator"
return hs
