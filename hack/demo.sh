#!/usr/bin/env bash
# The operator on the local control plane, from a person's point of view:
# apply the samples, watch `kubectl get shadowdeployments`, read conditions and Events,
# delete one and see the primary's Service restored. Nothing runs Pods here, so the demo
# plays the kubelet's part by marking Deployments available (as envtest-based tests do).
# Stops everything it started; KEEP=1 leaves the operator and the control plane running.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE_DIR=${SHADOW_CACHE_DIR:-$HOME/.cache/shadow-operator}
STATE_DIR=${SHADOW_CLUSTER_DIR:-$CACHE_DIR/cluster}
export KUBECONFIG=$STATE_DIR/kubeconfig
kubectl() { "$CACHE_DIR/k8s-1.20.2/kubectl" "$@"; }
NS=demo
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
OPERATOR_PID=

cleanup() {
  [ -n "$OPERATOR_PID" ] && kill "$OPERATOR_PID" 2>/dev/null && wait "$OPERATOR_PID" 2>/dev/null || true
  if [ "${KEEP:-0}" != 1 ]; then
    kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
    hack/local-cluster.sh down
  fi
}
trap cleanup EXIT

mark_available() {  # what a kubelet and the deployment controller would report
  local name=$1 server token body
  server=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')
  token=$(cat "$STATE_DIR/pki/admin.token")
  body=$(kubectl -n "$NS" get deployment "$name" -o json | python3 -c '
import json, sys
d = json.load(sys.stdin); r = d["spec"].get("replicas", 1)
print(json.dumps({"status": {"observedGeneration": d["metadata"]["generation"], "replicas": r,
      "updatedReplicas": r, "readyReplicas": r, "availableReplicas": r}}))')
  curl -fsS --cacert "$STATE_DIR/pki/ca.crt" -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/merge-patch+json' -X PATCH -d "$body" \
    "$server/apis/apps/v1/namespaces/$NS/deployments/$name/status" >/dev/null
}

wait_phase() {  # wait_phase NAME PHASE
  for _ in $(seq 1 120); do
    [ "$(kubectl -n "$NS" get shadowdeployment "$1" -o jsonpath='{.status.phase}')" = "$2" ] && return
    sleep 0.5
  done
  echo "timed out waiting for $1 to reach $2" >&2; return 1
}

step "Operator identity: ServiceAccount shadow-system/shadow-operator with the generated ClusterRole"
kubectl apply -f manifests/namespace.yaml -k manifests/rbac 2>/dev/null || {
  kubectl apply -f manifests/namespace.yaml; kubectl apply -k manifests/rbac; }
for _ in $(seq 1 60); do
  SECRET=$(kubectl -n shadow-system get serviceaccount shadow-operator -o jsonpath='{.secrets[0].name}' 2>/dev/null) && [ -n "$SECRET" ] && break
  sleep 0.5
done
TOKEN=$(kubectl -n shadow-system get secret "$SECRET" -o jsonpath='{.data.token}' | base64 -d)
sed "s/token: .*/token: $TOKEN}/" "$KUBECONFIG" >"$STATE_DIR/operator.kubeconfig"

step "Starting the operator (log: $STATE_DIR/operator.log)"
KUBECONFIG=$STATE_DIR/operator.kubeconfig SHADOW_RESYNC_SECONDS=5 .venv/bin/shadowctl run >"$STATE_DIR/operator.log" 2>&1 &
OPERATOR_PID=$!

step "kubectl apply -f manifests/samples/ (one per router mode, and one with an existing primary)"
kubectl create namespace "$NS" >/dev/null 2>&1 || true
for sample in manifests/samples/istio.yaml manifests/samples/builtin.yaml manifests/samples/existing-primary.yaml; do
  kubectl -n "$NS" apply -f "$sample"
done
wait_phase recommender Deploying
wait_phase recommender-builtin Deploying
wait_phase recommender-ref Deploying
kubectl -n "$NS" get shadowdeployments

step "What the operator created (validated by the API server, Istio's CRDs included)"
kubectl -n "$NS" get deployments,services,virtualservices,destinationrules,cronjobs,configmaps -l app.kubernetes.io/managed-by=shadow-operator

step "The Pods come up (played here by marking the Deployments available)"
for d in recommender-primary recommender-candidate recommender-builtin-primary recommender-builtin-candidate \
         recommender-builtin-router recommender-v1 recommender-ref-candidate; do
  mark_available "$d"
done
wait_phase recommender Shadowing
wait_phase recommender-builtin Shadowing
wait_phase recommender-ref Shadowing
kubectl -n "$NS" get shadowdeployments

step "kubectl describe shadowdeployment recommender-ref (conditions and Events)"
kubectl -n "$NS" describe shadowdeployment recommender-ref | sed -n '/^Status:/,$p'

step "A mistake only the operator can see: a JSON path it cannot evaluate"
kubectl -n "$NS" patch shadowdeployment recommender --type json \
  -p '[{"op": "replace", "path": "/spec/recording/features/1", "value": "$.features[*].last_seen_days"}]'
wait_phase recommender Error
kubectl -n "$NS" get shadowdeployment recommender -o jsonpath='{range .status.conditions[?(@.type=="Ready")]}Ready={.status} reason={.reason}{"\n"}message={.message}{"\n"}{end}'
kubectl -n "$NS" patch shadowdeployment recommender --type json \
  -p '[{"op": "replace", "path": "/spec/recording/features/1", "value": "$.features.last_seen_days"}]'
wait_phase recommender Shadowing
echo "fixed the spec: phase is Shadowing again"

step "Deleting recommender-ref: the primary's Deployment and Service are exactly as before"
kubectl -n "$NS" delete shadowdeployment recommender-ref
kubectl -n "$NS" get deployment recommender-v1 -o jsonpath='recommender-v1 owners: {.metadata.ownerReferences}{"\n"}'
kubectl -n "$NS" get service recommender-v1 -o jsonpath='recommender-v1 selector: {.spec.selector}{"\n"}'
kubectl -n "$NS" get shadowdeployments
