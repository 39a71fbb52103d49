#!/usr/bin/env bash
# A real Kubernetes control plane on loopback, built from Debian's `kubernetes`
# source package: etcd + kube-apiserver + kube-controller-manager. No kubelet, so
# Pods stay Pending; that is enough for an operator, whose job is API objects.
#
#   hack/local-cluster.sh build   build (once) and cache the binaries
#   hack/local-cluster.sh up      build if needed, start, write the kubeconfig
#   hack/local-cluster.sh down    stop what `up` started, by PID
#   hack/local-cluster.sh env     print `export KUBECONFIG=...`
set -euo pipefail

K8S_VERSION=1.20.2
CACHE_DIR=${SHADOW_CACHE_DIR:-$HOME/.cache/shadow-operator}
BIN_DIR=$CACHE_DIR/k8s-$K8S_VERSION
SRC_DIR=$CACHE_DIR/src
STATE_DIR=${SHADOW_CLUSTER_DIR:-$CACHE_DIR/cluster}
API_PORT=${SHADOW_API_PORT:-16443}
ETCD_PORT=${SHADOW_ETCD_PORT:-12379}
ETCD_PEER_PORT=${SHADOW_ETCD_PEER_PORT:-$((ETCD_PORT + 1))}
KUBECONFIG_PATH=$STATE_DIR/kubeconfig
BINARIES=(kube-apiserver kube-controller-manager kubectl kube-scheduler kubelet kube-proxy)

log() { printf '[local-cluster] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

have_binaries() {
  for b in "${BINARIES[@]}"; do [ -x "$BIN_DIR/$b" ] || return 1; done
}

install_build_deps() {
  local missing=()
  command -v go >/dev/null || missing+=(golang-go)
  command -v rsync >/dev/null || missing+=(rsync)
  command -v jq >/dev/null || missing+=(jq)
  command -v dpkg-source >/dev/null || missing+=(dpkg-dev)
  [ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ] || missing+=(golang-github-modern-go-reflect2-dev)
  if ! grep -rqs '^Types: .*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
    log "enabling Debian source packages (deb-src)"
    sed -e 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
      | as_root tee /etc/apt/sources.list.d/shadow-operator-deb-src.sources >/dev/null
    missing+=(__update__)
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing build dependencies: ${missing[*]/__update__/}"
    as_root apt-get update -qq
    local pkgs=("${missing[@]/__update__/}")
    # shellcheck disable=SC2068
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${pkgs[@]} >/dev/null
  fi
}

install_runtime_deps() {
  command -v etcd >/dev/null || {
    log "installing etcd-server"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
  }
}

build() {
  if have_binaries; then log "binaries cached in $BIN_DIR"; return; fi
  install_build_deps
  mkdir -p "$SRC_DIR"
  local tree
  tree=$(find "$SRC_DIR" -maxdepth 1 -type d -name "kubernetes-$K8S_VERSION*" | head -n1)
  if [ -z "$tree" ]; then
    log "fetching Debian's kubernetes source package"
    (cd "$SRC_DIR" && apt-get source -qq kubernetes >/dev/null)
    tree=$(find "$SRC_DIR" -maxdepth 1 -type d -name "kubernetes-*" | head -n1)
  fi
  [ -n "$tree" ] || { log "kubernetes source not found under $SRC_DIR"; exit 1; }
  log "replacing vendored reflect2 1.0.1 with Debian's (1.0.1 crashes the API server under Go >= 1.18)"
  rsync -a --delete --exclude='*_test.go' /usr/share/gocode/src/github.com/modern-go/reflect2/ \
    "$tree/vendor/github.com/modern-go/reflect2/"
  local gopath=$SRC_DIR/gopath
  mkdir -p "$gopath/src/k8s.io"
  ln -sfn "$tree" "$gopath/src/k8s.io/kubernetes"
  log "building ${BINARIES[*]} (about 8 minutes on 2 cores, once)"
  for b in "${BINARIES[@]}"; do
    (cd "$gopath/src/k8s.io/kubernetes" && \
      GOPATH=$gopath CGO_ENABLED=0 GOFLAGS=-mod=vendor make WHAT=cmd/$b >&2)
  done
  mkdir -p "$BIN_DIR"
  for b in "${BINARIES[@]}"; do
    cp "$(find "$tree/_output" -type f -name "$b" -perm -u+x | head -n1)" "$BIN_DIR/$b"
  done
  log "binaries cached in $BIN_DIR"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { log "timed out waiting for $what"; return 1; }
    sleep 0.5
  done
}

running() { [ -f "$STATE_DIR/$1.pid" ] && kill -0 "$(cat "$STATE_DIR/$1.pid")" 2>/dev/null; }

start() {  # start NAME COMMAND...
  local name=$1; shift
  if running "$name"; then log "$name already running"; return; fi
  "$@" >"$STATE_DIR/$name.log" 2>&1 &
  echo $! >"$STATE_DIR/$name.pid"
}

write_pki() {
  local pki=$STATE_DIR/pki
  [ -f "$pki/sa.key" ] && return
  mkdir -p "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=shadow-local-ca" \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
    -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n' >"$pki/san.ext"
  openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 3650 -extfile "$pki/san.ext" -out "$pki/apiserver.crt" 2>/dev/null
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  local admin_token controller_token
  admin_token=$(openssl rand -hex 16)
  controller_token=$(openssl rand -hex 16)
  # token,user,uid,"groups": the admin is in system:masters; the controller manager
  # gets its own identity so RBAC applies to it as in a real cluster.
  {
    printf '%s,admin,admin,"system:masters"\n' "$admin_token"
    printf '%s,system:kube-controller-manager,kcm\n' "$controller_token"
  } >"$pki/tokens.csv"
  echo "$admin_token" >"$pki/admin.token"
  echo "$controller_token" >"$pki/controller.token"
}

write_kubeconfig() {  # write_kubeconfig PATH USER TOKEN
  cat >"$1" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $STATE_DIR/pki/ca.crt
users:
- name: $2
  user: {token: $3}
contexts:
- name: local
  context: {cluster: local, user: $2, namespace: default}
current-context: local
KUBECONFIG
}

up() {
  build
  install_runtime_deps
  mkdir -p "$STATE_DIR"
  write_pki
  local pki=$STATE_DIR/pki
  start etcd etcd --name local --data-dir "$STATE_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "local=http://127.0.0.1:$ETCD_PEER_PORT"
  wait_for 60 etcd curl -fsS "http://127.0.0.1:$ETCD_PORT/health"
  start kube-apiserver "$BIN_DIR/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" --token-auth-file "$pki/tokens.csv" \
    --authorization-mode RBAC --anonymous-auth=false \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc \
    --service-cluster-ip-range 10.96.0.0/16 --allow-privileged=true \
    --enable-admission-plugins NamespaceLifecycle,ServiceAccount \
    --disable-admission-plugins StorageObjectInUseProtection,PersistentVolumeClaimResize \
    --audit-log-path "$STATE_DIR/audit.log" --audit-policy-file "$(write_audit_policy)" \
    --audit-log-maxsize 200 --audit-log-maxbackup 1
  write_kubeconfig "$KUBECONFIG_PATH" admin "$(cat "$pki/admin.token")"
  write_kubeconfig "$STATE_DIR/controller-manager.kubeconfig" system:kube-controller-manager "$(cat "$pki/controller.token")"
  wait_for 90 kube-apiserver "$BIN_DIR/kubectl" --kubeconfig "$KUBECONFIG_PATH" get --raw /readyz
  # Only the controllers an operator's tests need: garbage collection (owner references)
  # and service-account tokens. The deployment controller stays off so tests can mark
  # a Deployment available by patching its status, as envtest-based tests do.
  start kube-controller-manager "$BIN_DIR/kube-controller-manager" \
    --kubeconfig "$STATE_DIR/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 0 --port 0 --leader-elect=false \
    --use-service-account-credentials=true \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --controllers garbagecollector,namespace,serviceaccount,serviceaccount-token
  wait_for 60 "default service account" "$BIN_DIR/kubectl" --kubeconfig "$KUBECONFIG_PATH" get serviceaccount default
  log "control plane up: export KUBECONFIG=$KUBECONFIG_PATH"
}

write_audit_policy() {
  # Every request but the control plane's own: the tests and the operator benchmark
  # count requests per user (writes must be zero when idle; the operator's calls must
  # fit its ClusterRole).
  local policy=$STATE_DIR/audit-policy.yaml
  cat >"$policy" <<'POLICY'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  users: [system:kube-controller-manager, system:apiserver]
- level: None
  userGroups: ["system:serviceaccounts:kube-system"]
- level: None
  nonResourceURLs: ["/healthz*", "/readyz*", "/livez*", "/version"]
- level: Metadata
POLICY
  echo "$policy"
}

down() {
  for name in kube-controller-manager kube-apiserver etcd; do
    if running "$name"; then
      local pid; pid=$(cat "$STATE_DIR/$name.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      log "stopped $name ($pid)"
    fi
    rm -f "$STATE_DIR/$name.pid"
  done
  # Each `up` starts from an empty store, so tests never see a previous run's objects.
  rm -rf "$STATE_DIR/etcd" "$STATE_DIR/audit.log"*
}

case "${1:-}" in
  build) build ;;
  up) up ;;
  down) down ;;
  env) echo "export KUBECONFIG=$KUBECONFIG_PATH" ;;
  *) echo "usage: $0 build|up|down|env" >&2; exit 2 ;;
esac
