#!/usr/bin/env bash
# A real Kubernetes 1.20.2 built from Debian's `kubernetes` source package.
#
# Default mode: a control plane on loopback (etcd + kube-apiserver +
# kube-controller-manager), no kubelet, so Pods stay Pending; that is enough for an
# operator, whose job is API objects, and the tests rely on the deployment
# controller being off.
#
# Node mode (`up --node` or SHADOW_NODE=1): the same control plane plus a real
# single node that runs Pods: containerd + runc + CNI bridge, kubelet, kube-proxy
# (iptables), kube-scheduler, all default controllers, and dnsmasq for Service DNS.
# Nothing of it may reach beyond this machine: Pods get no default route, there is
# no masquerading of ours, global ip_forward is never touched, and a FORWARD guard
# drops anything crossing between the bridge and any other interface. `down`
# restores iptables and every sysctl the node may change. See hack/node/.
#
#   hack/local-cluster.sh build          build (once) and cache the binaries
#   hack/local-cluster.sh up [--node]    build if needed, start, write the kubeconfig
#   hack/local-cluster.sh down           stop what `up` started, by PID, and undo it
#   hack/local-cluster.sh load-images [TAR...]
#                                        (re)import image archives into the running node
#                                        (default: every $SHADOW_IMAGES_DIR/*.tar)
#   hack/local-cluster.sh env            print `export KUBECONFIG=...`
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
SERVICE_CIDR=${SHADOW_SERVICE_CIDR:-10.96.0.0/16}
BINARIES=(kube-apiserver kube-controller-manager kubectl kube-scheduler kubelet kube-proxy)
HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# Node mode (see the header). Everything of the node lives under $NODE_DIR; what
# `down` needs to undo it (saved sysctls, iptables chains that existed before,
# the values below as used) is under $NODE_DIR/saved, written before anything changes.
NODE_MODE=${SHADOW_NODE:-0}
NODE_DIR=$STATE_DIR/node
SAVED_DIR=$NODE_DIR/saved
BRIDGE=${SHADOW_BRIDGE:-shadowbr0}
POD_CIDR=${SHADOW_POD_CIDR:-10.244.0.0/24}
NODE_NAME=${SHADOW_NODE_NAME:-$(hostname | tr '[:upper:]' '[:lower:]')}
# Ports: the kubelet serves on the bridge address (for the API server), everything else
# on 127.0.0.1. The next four are used through render (hack/node/*.yaml).
# shellcheck disable=SC2034
KUBELET_PORT=${SHADOW_KUBELET_PORT:-10250}
# shellcheck disable=SC2034
KUBELET_HEALTHZ_PORT=${SHADOW_KUBELET_HEALTHZ_PORT:-10248}
# shellcheck disable=SC2034
KUBE_PROXY_HEALTHZ_PORT=${SHADOW_KUBE_PROXY_HEALTHZ_PORT:-10256}
# shellcheck disable=SC2034
KUBE_PROXY_METRICS_PORT=${SHADOW_KUBE_PROXY_METRICS_PORT:-10249}
SCHEDULER_PORT=${SHADOW_SCHEDULER_PORT:-10259}
IMAGES_DIR=${SHADOW_IMAGES_DIR:-$CACHE_DIR/images}
# One node-mode cluster per machine: they would share iptables, cgroups and /var/log/pods.
NODE_LOCK=${SHADOW_NODE_LOCK:-$HOME/.cache/shadow-operator/node.lock}
CONTAINERD_SOCK=$NODE_DIR/containerd/containerd.sock
# containerd's content and snapshots stay across `down` (only its runtime state goes), so
# image archives are imported again only when they change; see import_images.
CONTAINERD_ROOT=$NODE_DIR/containerd/root
CONTAINERD_STATE=$NODE_DIR/containerd/state
IMPORTED_LIST=$NODE_DIR/containerd/imported.list
GUARD_CHAIN=SHADOW-NODE-GUARD
# Every sysctl the node (kubelet, kube-proxy, the CNI plugins) or this script may
# change; saved at `up` before anything starts and written back by `down`.
NODE_SYSCTLS=(
  kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes
  net.ipv4.ip_forward net.ipv4.conf.all.forwarding net.ipv4.conf.default.forwarding
  net.ipv4.conf.all.route_localnet net.ipv4.conf.default.route_localnet
  net.ipv6.conf.all.forwarding net.ipv6.conf.default.forwarding
  net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
  net.bridge.bridge-nf-call-arptables
  net.netfilter.nf_conntrack_max net.netfilter.nf_conntrack_tcp_timeout_established
  net.netfilter.nf_conntrack_tcp_timeout_close_wait
)

log() { printf '[local-cluster] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

have_binaries() {
  for b in "${BINARIES[@]}"; do [ -x "$BIN_DIR/$b" ] || return 1; done
}

install_build_deps() {
  local update=()
  if ! grep -rqs '^Types: .*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
    log "enabling Debian source packages (deb-src)"
    sed -e 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
      | as_root tee /etc/apt/sources.list.d/shadow-operator-deb-src.sources >/dev/null
    update=(--update)
  fi
  "$HACK_DIR/debian-deps.sh" "${update[@]}" go:golang-go rsync:rsync jq:jq dpkg-source:dpkg-dev \
    /usr/share/gocode/src/github.com/modern-go/reflect2:golang-github-modern-go-reflect2-dev
}

install_runtime_deps() {
  local node=()
  if [ "$NODE_MODE" = 1 ]; then
    # command-or-file:debian-package, for everything node mode runs.
    node=(containerd:containerd runc:runc ctr:containerd /usr/lib/cni/bridge:containernetworking-plugins
      conntrack:conntrack iptables:iptables ip6tables:iptables dnsmasq:dnsmasq-base ip:iproute2
      sysctl:procps flock:util-linux findmnt:util-linux python3:python3 openssl:openssl curl:curl)
    # With the nf_tables backend, `down` deletes the iptables tables it created (nft).
    if iptables -V 2>/dev/null | grep -q nf_tables; then node+=(nft:nftables); fi
  fi
  "$HACK_DIR/debian-deps.sh" etcd:etcd-server "${node[@]}"
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
      GOPATH=$gopath CGO_ENABLED=0 GOFLAGS=-mod=vendor make WHAT="cmd/$b" >&2)
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

running() { [ -f "$STATE_DIR/$1.pid" ] && alive "$(cat "$STATE_DIR/$1.pid")"; }

# A process that exited but is not reaped yet (daemons outlive `up` and are reaped by
# PID 1, which may take a while) counts as gone.
alive() { kill -0 "$1" 2>/dev/null && [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" != Z ]; }

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

write_node_pki() {
  # What node mode adds to write_pki's: identities for the node's components, a
  # client certificate for API server -> kubelet (logs, exec), and an API server
  # certificate that is also valid on the bridge address and the `kubernetes` ClusterIP.
  local pki=$STATE_DIR/pki name user groups
  # name|user|groups (user names and groups contain colons)
  for entry in "kubelet|system:node:$NODE_NAME|system:nodes" "kube-proxy|system:kube-proxy|" \
      "scheduler|system:kube-scheduler|"; do
    IFS='|' read -r name user groups <<<"$entry"
    # The kubelet token is per node name: a new name means a new token.
    if [ ! -f "$pki/$name.token" ] || ! grep -q "^$(cat "$pki/$name.token"),$user," "$pki/tokens.csv"; then
      openssl rand -hex 16 >"$pki/$name.token"
      grep -vF ",$user," "$pki/tokens.csv" >"$pki/tokens.csv.new" || true
      mv "$pki/tokens.csv.new" "$pki/tokens.csv"
      if [ -n "$groups" ]; then
        printf '%s,%s,%s,"%s"\n' "$(cat "$pki/$name.token")" "$user" "$name" "$groups" >>"$pki/tokens.csv"
      else
        printf '%s,%s,%s\n' "$(cat "$pki/$name.token")" "$user" "$name" >>"$pki/tokens.csv"
      fi
    fi
  done
  if [ ! -f "$pki/kubelet-client.crt" ]; then
    openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" \
      -keyout "$pki/kubelet-client.key" -out "$pki/kubelet-client.csr" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >"$pki/kubelet-client.ext"
    openssl x509 -req -in "$pki/kubelet-client.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
      -CAcreateserial -days 3650 -extfile "$pki/kubelet-client.ext" -out "$pki/kubelet-client.crt" 2>/dev/null
  fi
  write_apiserver_cert "IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc,IP:$BRIDGE_IP,IP:$FIRST_SERVICE_IP,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc.cluster.local"
}

write_apiserver_cert() {  # write_apiserver_cert SANS: reissue when the SANs differ
  local pki=$STATE_DIR/pki
  [ "$(cat "$pki/san.ext" 2>/dev/null)" = "subjectAltName=$1" ] && return
  printf 'subjectAltName=%s\n' "$1" >"$pki/san.ext"
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
    -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" 2>/dev/null
  openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 3650 -extfile "$pki/san.ext" -out "$pki/apiserver.crt" 2>/dev/null
}

write_kubeconfig() {  # write_kubeconfig PATH USER TOKEN
  cat >"$1" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://$API_HOST:$API_PORT
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
  local mode=control-plane; [ "$NODE_MODE" = 1 ] && mode=node
  if running kube-apiserver && [ "$(cat "$STATE_DIR/mode" 2>/dev/null || echo control-plane)" != "$mode" ]; then
    die "a $(cat "$STATE_DIR/mode" 2>/dev/null || echo control-plane) cluster is running in $STATE_DIR; run '$0 down' first"
  fi
  API_HOST=127.0.0.1
  if [ "$NODE_MODE" = 1 ]; then
    node_vars
    API_HOST=$BRIDGE_IP
    if running node-lock; then
      log "node-mode cluster already up in $STATE_DIR"
      wait_node_ready
      return
    fi
    node_prepare  # lock, saved host state, bridge, routes and the FORWARD guard: before any component
  fi
  echo "$mode" >"$STATE_DIR/mode"
  write_pki
  [ "$NODE_MODE" = 1 ] && write_node_pki
  local pki=$STATE_DIR/pki
  start etcd etcd --name local --data-dir "$STATE_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "local=http://127.0.0.1:$ETCD_PEER_PORT"
  wait_for 60 etcd curl -fsS "http://127.0.0.1:$ETCD_PORT/health"
  # shellcheck disable=SC2054 # commas belong to the flag values
  local mode_args=(--bind-address 127.0.0.1 --advertise-address 127.0.0.1
    --authorization-mode RBAC --enable-admission-plugins NamespaceLifecycle,ServiceAccount)
  if [ "$NODE_MODE" = 1 ]; then
    # On the bridge address, so the `kubernetes` Service's endpoint is reachable from
    # Pods (and nowhere but this machine). Node authorizer + NodeRestriction confine
    # the kubelet to its own node; the client certificate lets logs/exec reach it.
    # shellcheck disable=SC2054
    mode_args=(--bind-address "$BRIDGE_IP" --advertise-address "$BRIDGE_IP"
      --authorization-mode Node,RBAC --enable-admission-plugins NamespaceLifecycle,ServiceAccount,NodeRestriction
      --kubelet-client-certificate "$pki/kubelet-client.crt" --kubelet-client-key "$pki/kubelet-client.key"
      --kubelet-preferred-address-types InternalIP)
  fi
  start kube-apiserver "$BIN_DIR/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    "${mode_args[@]}" --secure-port "$API_PORT" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" --token-auth-file "$pki/tokens.csv" \
    --anonymous-auth=false \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc \
    --service-cluster-ip-range "$SERVICE_CIDR" --allow-privileged=true \
    --disable-admission-plugins StorageObjectInUseProtection,PersistentVolumeClaimResize \
    --audit-log-path "$STATE_DIR/audit.log" --audit-policy-file "$(write_audit_policy)" \
    --audit-log-maxsize 200 --audit-log-maxbackup 1
  write_kubeconfig "$KUBECONFIG_PATH" admin "$(cat "$pki/admin.token")"
  write_kubeconfig "$STATE_DIR/controller-manager.kubeconfig" system:kube-controller-manager "$(cat "$pki/controller.token")"
  wait_for 90 kube-apiserver "$BIN_DIR/kubectl" --kubeconfig "$KUBECONFIG_PATH" get --raw /readyz
  # Only the controllers an operator's tests need: garbage collection (owner references)
  # and service-account tokens. The deployment controller stays off so tests can mark
  # a Deployment available by patching its status, as envtest-based tests do.
  # Node mode runs them all (Deployments, ReplicaSets, Jobs, CronJobs, endpoints, node
  # lifecycle...) and gives the node the whole Pod range as its podCIDR.
  # shellcheck disable=SC2054
  local controllers=(--controllers garbagecollector,namespace,serviceaccount,serviceaccount-token)
  [ "$NODE_MODE" = 1 ] && controllers=(--controllers '*' --allocate-node-cidrs --cluster-cidr "$POD_CIDR"
    --node-cidr-mask-size "$POD_PREFIX" --service-cluster-ip-range "$SERVICE_CIDR" --node-monitor-period 2s)
  start kube-controller-manager "$BIN_DIR/kube-controller-manager" \
    --kubeconfig "$STATE_DIR/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 0 --port 0 --leader-elect=false \
    --use-service-account-credentials=true \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    "${controllers[@]}"
  if [ "$NODE_MODE" = 1 ]; then
    # The node starts while the controllers come up (all of them take ~15 s to create
    # the default ServiceAccount); node_start waits for both.
    node_start
    trap - EXIT
    log "node-mode cluster up (node $NODE_NAME Ready after $((SECONDS - NODE_T0))s): export KUBECONFIG=$KUBECONFIG_PATH; settings in $STATE_DIR/node.env"
  else
    wait_for 60 "default service account" "$BIN_DIR/kubectl" --kubeconfig "$KUBECONFIG_PATH" get serviceaccount default
    log "control plane up: export KUBECONFIG=$KUBECONFIG_PATH"
  fi
}

write_audit_policy() {
  # Every request but the control plane's own: the tests and the operator benchmark
  # count requests per user (writes must be zero when idle; the operator's calls must
  # fit its ClusterRole). In node mode the node's components are control plane too.
  local policy=$STATE_DIR/audit-policy.yaml node_rules=
  [ "$NODE_MODE" = 1 ] && node_rules='- level: None
  users: [system:kube-proxy, system:kube-scheduler]
- level: None
  userGroups: ["system:nodes"]
'
  cat >"$policy" <<POLICY
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
${node_rules}- level: Metadata
POLICY
  echo "$policy"
}

stop_process() {  # stop_process NAME: TERM, up to 5 s, then KILL; by the PID `start` recorded
  local name=$1
  if running "$name"; then
    local pid; pid=$(cat "$STATE_DIR/$name.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
    alive "$pid" && kill -9 "$pid" 2>/dev/null
    log "stopped $name ($pid)"
  fi
  rm -f "$STATE_DIR/$name.pid"
}

down() {
  local node=0
  if [ -f "$SAVED_DIR/params" ]; then
    node=1
    # The values as used by `up`, whatever the environment says now.
    # shellcheck source=/dev/null
    . "$SAVED_DIR/params"
    # The kubelet first, so it restarts nothing while the Pods are removed.
    for name in kubelet kube-proxy kube-scheduler dns-updater dnsmasq; do stop_process "$name"; done
    remove_pods
    stop_process containerd
    kill_leftover_shims
    unmount_node
  fi
  for name in kube-controller-manager kube-apiserver etcd; do stop_process "$name"; done
  # Each `up` starts from an empty store, so tests never see a previous run's objects.
  rm -rf "$STATE_DIR/etcd" "$STATE_DIR/audit.log"*
  if [ "$node" = 1 ]; then
    restore_host
    stop_process node-lock
  fi
  rm -f "$STATE_DIR/mode"
}

# ---------------------------------------------------------------------------
# Node mode
# ---------------------------------------------------------------------------

node_vars() {
  # Addresses derived from the CIDRs: the bridge (gateway, DNS, API server) takes the
  # Pod range's first address, the `kubernetes` Service the Service range's first.
  local out
  out=$(python3 - "$POD_CIDR" "$SERVICE_CIDR" <<'PY'
import ipaddress, sys
try:
    pod = ipaddress.IPv4Network(sys.argv[1])
    svc = ipaddress.IPv4Network(sys.argv[2])
except ValueError as exc:
    sys.exit(f"bad CIDR: {exc}")
if pod.overlaps(svc):
    sys.exit(f"SHADOW_POD_CIDR {pod} overlaps SHADOW_SERVICE_CIDR {svc}")
if not (pod.is_private and svc.is_private):
    sys.exit("SHADOW_POD_CIDR and SHADOW_SERVICE_CIDR must be private ranges")
print(f"BRIDGE_IP={next(pod.hosts())} POD_PREFIX={pod.prefixlen} FIRST_SERVICE_IP={svc.network_address + 1}")
PY
  ) || die "invalid SHADOW_POD_CIDR/SHADOW_SERVICE_CIDR"
  eval "$out"
  CLUSTER_DNS=$BRIDGE_IP
  API_SERVER=https://$BRIDGE_IP:$API_PORT
}

acquire_node_lock() {
  # flock is tied to the open file, so the lock is handed to a tiny holder process
  # that lives until `down`; a second `up --node` anywhere fails here at once.
  mkdir -p "$(dirname "$NODE_LOCK")"
  exec 9>>"$NODE_LOCK"
  if ! flock -n 9; then
    exec 9>&-
    die "another node-mode cluster is running ($(cat "$NODE_LOCK" 2>/dev/null)); stop it first with SHADOW_CLUSTER_DIR=<its state dir> $0 down"
  fi
  printf 'state dir %s, since %s\n' "$STATE_DIR" "$(date -Is)" >"$NODE_LOCK"
  sleep infinity >/dev/null 2>&1 &
  echo $! >"$STATE_DIR/node-lock.pid"
  exec 9>&-
}

node_up_failed() {
  log "up --node failed; undoing it (component logs stay in $STATE_DIR/*.log)"
  down || true
}

node_prepare() {
  NODE_T0=$SECONDS
  acquire_node_lock
  if [ -d "$SAVED_DIR" ]; then
    stop_process node-lock
    die "$NODE_DIR holds an unfinished node run; run '$0 down' first"
  fi
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    stop_process node-lock
    die "network interface $BRIDGE already exists; choose another SHADOW_BRIDGE"
  fi
  local clash
  clash=$(ip -4 route show table all | python3 -c '
import ipaddress, sys
mine = [ipaddress.IPv4Network(a) for a in sys.argv[1:]]
for line in sys.stdin:
    dst = line.split()[0] if line.split()[0] not in ("local", "broadcast", "unicast", "multicast") else line.split()[1]
    if dst == "default":
        continue
    try:
        net = ipaddress.IPv4Network(dst, strict=False)
    except ValueError:
        continue
    if any(net.overlaps(m) for m in mine) and not net.is_loopback:
        print(line.strip())
' "$POD_CIDR" "$SERVICE_CIDR")
  if [ -n "$clash" ]; then
    stop_process node-lock
    die "SHADOW_POD_CIDR $POD_CIDR or SHADOW_SERVICE_CIDR $SERVICE_CIDR overlaps this machine's routes: $clash"
  fi
  # From here on a failure undoes everything done so far.
  trap node_up_failed EXIT
  mkdir -p "$SAVED_DIR"
  save_host_state
  cat >"$SAVED_DIR/params" <<PARAMS
BRIDGE=$BRIDGE
BRIDGE_IP=$BRIDGE_IP
POD_CIDR=$POD_CIDR
POD_PREFIX=$POD_PREFIX
SERVICE_CIDR=$SERVICE_CIDR
NODE_NAME=$NODE_NAME
CONTAINERD_SOCK=$CONTAINERD_SOCK
PARAMS
  setup_network
}

save_host_state() {
  local s=$SAVED_DIR
  # kube-proxy's ClusterIP DNAT between two Pods on the same bridge needs bridged
  # replies to pass iptables (conntrack un-DNATs them): br_netfilter.
  if [ ! -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then
    modprobe br_netfilter && touch "$s/loaded-br_netfilter"
  fi
  local key value
  : >"$s/sysctls"
  for key in "${NODE_SYSCTLS[@]}"; do
    value=$(sysctl -n "$key" 2>/dev/null) && printf '%s=%s\n' "$key" "$value" >>"$s/sysctls"
  done
  # Which iptables chains exist now: `down` removes only KUBE-*/CNI-*/guard chains that
  # were not there before, plus the rules jumping to them.
  local fam table
  : >"$s/chains"
  for fam in iptables ip6tables; do
    for table in filter nat mangle raw; do
      "$fam-save" -t "$table" 2>/dev/null | sed -n "s/^:\([^ ]*\) .*/$fam $table \1/p" >>"$s/chains" || true
    done
  done
  nft list tables >"$s/nft-tables" 2>/dev/null || true
  { iptables-save; ip6tables-save; } 2>/dev/null | grep -v '^#' >"$s/iptables-save" || true
  # Host paths the kubelet/containerd/CNI create on first use: removed by `down` only
  # if they did not exist before.
  local path
  : >"$s/paths"
  for path in /var/log/pods /var/log/containers /var/lib/cni /var/run/netns /run/containerd \
      /var/lib/kubelet /sys/fs/cgroup/*/kubepods; do
    [ -e "$path" ] && echo "$path" >>"$s/paths"
  done
  for path in /var/log/pods /var/log/containers; do
    [ -d "$path" ] && find "$path" -mindepth 1 -maxdepth 1 >>"$s/paths"
  done
  true
}

setup_network() {
  # The bridge with its gateway address, a host route for the Service range through
  # it (without it an early request to a ClusterIP, before kube-proxy's DNAT exists,
  # would follow the default route off the machine) and the FORWARD guard, all before
  # any component starts.
  ip link add name "$BRIDGE" type bridge
  [ -e "/proc/sys/net/ipv6/conf/$BRIDGE/disable_ipv6" ] && sysctl -qw "net/ipv6/conf/$BRIDGE/disable_ipv6=1"
  ip addr add "$BRIDGE_IP/$POD_PREFIX" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  ip route add "$SERVICE_CIDR" dev "$BRIDGE" src "$BRIDGE_IP"
  # Guard: nothing crosses between the bridge and any other interface. In filter it
  # is FORWARD's first rule; kube-proxy later prepends its own KUBE-FORWARD (which
  # ACCEPTs marked packets), so the same guard also sits in mangle FORWARD, which
  # runs before filter and which nothing else here touches.
  local table
  for table in mangle filter; do
    iptables -w -t "$table" -N "$GUARD_CHAIN"
    iptables -w -t "$table" -A "$GUARD_CHAIN" -i "$BRIDGE" ! -o "$BRIDGE" -j DROP
    iptables -w -t "$table" -A "$GUARD_CHAIN" ! -i "$BRIDGE" -o "$BRIDGE" -j DROP
    iptables -w -t "$table" -A "$GUARD_CHAIN" ! -i "$BRIDGE" -d "$POD_CIDR" -j DROP
    iptables -w -t "$table" -A "$GUARD_CHAIN" ! -i "$BRIDGE" -d "$SERVICE_CIDR" -j DROP
    iptables -w -t "$table" -I FORWARD 1 -j "$GUARD_CHAIN"
  done
  # Routing between Pods (Pod -> ClusterIP -> Pod) only: forwarding on the bridge alone,
  # never the global net.ipv4.ip_forward.
  sysctl -qw "net/ipv4/conf/$BRIDGE/forwarding=1"
  sysctl -qw net.bridge.bridge-nf-call-iptables=1
}

render() {  # render TEMPLATE OUT: replace @VAR@ with the shell variable's value
  local sed_args=() var
  for var in BRIDGE BRIDGE_IP POD_CIDR SERVICE_CIDR NODE_NAME NODE_DIR STATE_DIR PKI_DIR \
      CONTAINERD_ROOT CONTAINERD_STATE CONTAINERD_SOCK CNI_CONF_DIR CNI_IPAM_DIR \
      KUBELET_PORT KUBELET_HEALTHZ_PORT KUBE_PROXY_HEALTHZ_PORT KUBE_PROXY_METRICS_PORT; do
    sed_args+=(-e "s|@$var@|${!var}|g")
  done
  sed "${sed_args[@]}" "$1" >"$2"
  if grep -q '@[A-Z_]*@' "$2"; then die "unrendered placeholder in $2"; fi
}

ctr_node() { ctr -a "$CONTAINERD_SOCK" -n k8s.io "$@"; }

import_images() {  # import_images [--force] TAR...
  # Skips an archive whose path, size and mtime match its last import (the images are
  # still in containerd's store); --force (load-images) imports regardless.
  local force=0 tar stamp
  [ "${1:-}" = --force ] && { force=1; shift; }
  touch "$IMPORTED_LIST"
  for tar in "$@"; do
    tar=$(realpath "$tar")
    stamp="$(stat -c '%s %Y' "$tar") $tar"
    if [ "$force" = 0 ] && grep -qxF "$stamp" "$IMPORTED_LIST"; then
      log "image archive $tar: unchanged since it was imported"
      continue
    fi
    log "importing image archive $tar"
    ctr_node images import "$tar" >/dev/null
    { grep -vF " $tar" "$IMPORTED_LIST" || true; echo "$stamp"; } >"$IMPORTED_LIST.new"
    mv "$IMPORTED_LIST.new" "$IMPORTED_LIST"
  done
}

load_images() {
  if ! running containerd || [ ! -S "$CONTAINERD_SOCK" ]; then
    die "no node running in $STATE_DIR (start one with: $0 up --node)"
  fi
  local tars=("$@")
  if [ ${#tars[@]} -eq 0 ]; then
    shopt -s nullglob
    tars=("$IMAGES_DIR"/*.tar)
    shopt -u nullglob
  fi
  [ ${#tars[@]} -gt 0 ] || { log "no image archives in $IMAGES_DIR"; return; }
  import_images --force "${tars[@]}"
}

kubectl_node() { "$BIN_DIR/kubectl" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

node_ready() {
  # Ready, and the node lifecycle controller has lifted the not-ready taints.
  [ "$(kubectl_node get node "$NODE_NAME" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}/{.spec.taints}' 2>/dev/null)" = "True/" ]
}

default_token_ready() {
  # Pods need the default ServiceAccount's token secret before they can be admitted.
  [ -n "$(kubectl_node get serviceaccount default -o jsonpath='{.secrets[0].name}' 2>/dev/null)" ]
}

wait_node_ready() {
  wait_for 120 "node $NODE_NAME Ready" node_ready
  wait_for 60 "default service account token" default_token_ready
}

node_start() {
  local pki=$STATE_DIR/pki
  # shellcheck disable=SC2034 # used by render
  PKI_DIR=$pki
  CNI_CONF_DIR=$NODE_DIR/cni/net.d
  CNI_IPAM_DIR=$NODE_DIR/cni/ipam
  mkdir -p "$CONTAINERD_ROOT" "$CONTAINERD_STATE" "$CNI_CONF_DIR" "$CNI_IPAM_DIR" "$NODE_DIR/dns" "$NODE_DIR/kubelet"
  render "$HACK_DIR/node/containerd.toml" "$NODE_DIR/containerd.toml"
  render "$HACK_DIR/node/cni.conflist" "$CNI_CONF_DIR/10-shadow-pods.conflist"
  render "$HACK_DIR/node/kubelet.yaml" "$NODE_DIR/kubelet.yaml"
  render "$HACK_DIR/node/kube-proxy.yaml" "$NODE_DIR/kube-proxy.yaml"
  # Pods with dnsPolicy Default get this, not the host's (off-machine) resolvers.
  printf 'nameserver %s\n' "$BRIDGE_IP" >"$NODE_DIR/resolv.conf"
  write_kubeconfig "$STATE_DIR/kubelet.kubeconfig" "system:node:$NODE_NAME" "$(cat "$pki/kubelet.token")"
  write_kubeconfig "$STATE_DIR/kube-proxy.kubeconfig" system:kube-proxy "$(cat "$pki/kube-proxy.token")"
  write_kubeconfig "$STATE_DIR/scheduler.kubeconfig" system:kube-scheduler "$(cat "$pki/scheduler.token")"

  start kube-scheduler "$BIN_DIR/kube-scheduler" --kubeconfig "$STATE_DIR/scheduler.kubeconfig" \
    --authentication-kubeconfig "$STATE_DIR/scheduler.kubeconfig" \
    --authorization-kubeconfig "$STATE_DIR/scheduler.kubeconfig" \
    --leader-elect=false --port 0 --bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT"

  # Images are imported, never pulled: a proxy address where nothing listens makes any
  # pull attempt fail at once, without even a DNS lookup of the registry leaving the
  # machine (Go's proxy support hands the name to the proxy).
  start containerd env HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 \
    http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 NO_PROXY= no_proxy= \
    containerd --config "$NODE_DIR/containerd.toml"
  wait_for 30 containerd ctr_node version

  # Service DNS: dnsmasq on the bridge address only, authoritative for cluster.local,
  # no upstream at all (other names get NXDOMAIN, not REFUSED, so resolvers fail fast
  # and cleanly); the updater follows a Service watch into its hosts file.
  : >"$NODE_DIR/dns/hosts"
  start dnsmasq dnsmasq --keep-in-foreground --conf-file=/dev/null --user=root --pid-file= \
    --bind-interfaces --listen-address="$BRIDGE_IP" --except-interface=lo --port=53 \
    --no-resolv --no-hosts --no-poll --local=/cluster.local/ --address=/#/ --domain-needed --bogus-priv \
    --addn-hosts="$NODE_DIR/dns/hosts" --log-facility=-
  # It reads Services with kube-proxy's identity (system:node-proxier may list/watch them).
  start dns-updater python3 "$HACK_DIR/node/dns-updater.py" --server "$API_SERVER" \
    --ca "$pki/ca.crt" --token-file "$pki/kube-proxy.token" \
    --hosts-file "$NODE_DIR/dns/hosts" --dnsmasq-pid-file "$STATE_DIR/dnsmasq.pid"

  start kube-proxy "$BIN_DIR/kube-proxy" --config "$NODE_DIR/kube-proxy.yaml"
  # --containerd is cAdvisor's: pointed at this node's socket, it does not spend 5 s at
  # every start failing to reach a system containerd.
  start kubelet env AWS_EC2_METADATA_DISABLED=true "$BIN_DIR/kubelet" \
    --config "$NODE_DIR/kubelet.yaml" --kubeconfig "$STATE_DIR/kubelet.kubeconfig" \
    --container-runtime=remote --container-runtime-endpoint "unix://$CONTAINERD_SOCK" \
    --root-dir "$NODE_DIR/kubelet" --cert-dir "$NODE_DIR/kubelet/pki" \
    --node-ip "$BRIDGE_IP" --hostname-override "$NODE_NAME" \
    --containerd "$CONTAINERD_SOCK"
  # Images go in while the kubelet registers; `up` returns only once they are there.
  shopt -s nullglob
  local tars=("$IMAGES_DIR"/*.tar)
  shopt -u nullglob
  [ ${#tars[@]} -eq 0 ] || import_images "${tars[@]}"
  ctr_node images ls -q | grep -qx 'localhost/pause:3.2' \
    || log "WARNING: localhost/pause:3.2 is not imported; no Pod can start until it is ($0 load-images FILE.tar)"
  wait_node_ready
  cat >"$STATE_DIR/node.env" <<NODEENV
BRIDGE=$BRIDGE
BRIDGE_IP=$BRIDGE_IP
POD_CIDR=$POD_CIDR
SERVICE_CIDR=$SERVICE_CIDR
CLUSTER_DNS=$CLUSTER_DNS
NODE_NAME=$NODE_NAME
CONTAINERD_SOCK=$CONTAINERD_SOCK
API_SERVER=$API_SERVER
KUBECONFIG=$KUBECONFIG_PATH
NODEENV
}

remove_pods() {
  # No crictl on Debian 12: remove every container of the CRI namespace with ctr,
  # noting the Pod network namespaces (bind mounts under /var/run/netns) first.
  running containerd && [ -S "$CONTAINERD_SOCK" ] || return 0
  local id
  for id in $(ctr_node containers ls -q 2>/dev/null); do
    echo "$id" >>"$NODE_DIR/container-ids"
    ctr_node containers info "$id" 2>/dev/null | python3 -c '
import json, sys
spec = json.load(sys.stdin).get("Spec") or {}
for ns in (spec.get("linux") or {}).get("namespaces") or []:
    if ns.get("type") == "network" and ns.get("path"):
        print(ns["path"])' >>"$NODE_DIR/netns" || true
  done
  for id in $(ctr_node tasks ls -q 2>/dev/null); do
    ctr_node tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true
  done
  for id in $(ctr_node tasks ls -q 2>/dev/null); do
    ctr_node tasks delete -f "$id" >/dev/null 2>&1 || true
  done
  for id in $(ctr_node containers ls -q 2>/dev/null); do
    ctr_node containers delete "$id" >/dev/null 2>&1 || true
  done
}

kill_leftover_shims() {
  # Shims outlive containerd; any still serving this node's socket is ours.
  local proc pid
  for proc in /proc/[0-9]*; do
    pid=${proc#/proc/}
    if { tr '\0' ' ' <"$proc/cmdline"; } 2>/dev/null | grep -q "containerd-shim.* -address $CONTAINERD_SOCK"; then
      kill -9 "$pid" 2>/dev/null && log "killed leftover shim $pid"
    fi
  done
  true
}

unmount_node() {
  # Pod network namespaces, then everything mounted under the node dir (container
  # rootfs, shm, secret and token volumes), deepest first.
  local path
  if [ -f "$NODE_DIR/netns" ]; then
    sort -u "$NODE_DIR/netns" | while read -r path; do
      case $path in /var/run/netns/* | /run/netns/*) ;; *) continue ;; esac
      umount "$path" 2>/dev/null || umount -l "$path" 2>/dev/null || true
      rm -f "$path"
    done
    rm -f "$NODE_DIR/netns"
  fi
  # (The kubelet keeps its device-plugin socket in /var/lib/kubelet whatever --root-dir says.)
  findmnt -rn -o TARGET | awk -v p="$NODE_DIR/" -v k=/var/lib/kubelet/ 'index($0, p) == 1 || index($0, k) == 1' \
      | sort -r | while read -r path; do
    umount "$path" 2>/dev/null || umount -l "$path" 2>/dev/null || log "could not unmount $path"
  done
  true
}

restore_host() {
  local s=$SAVED_DIR path
  # Any veth still attached (a Pod whose netns could not go), then the bridge with its
  # address and the Service route.
  for path in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip link del "$path" 2>/dev/null || true
  done
  ip route del "$SERVICE_CIDR" dev "$BRIDGE" 2>/dev/null || true
  ip link del "$BRIDGE" 2>/dev/null || true
  conntrack -D -s "$POD_CIDR" >/dev/null 2>&1 || true
  conntrack -D -d "$POD_CIDR" >/dev/null 2>&1 || true
  conntrack -D -d "$SERVICE_CIDR" >/dev/null 2>&1 || true
  # Only now (nothing can be forwarded any more) the iptables chains go, the guard last.
  remove_iptables
  local line
  while IFS= read -r line; do
    [ -n "$line" ] && { sysctl -qw "$line" || log "could not restore sysctl $line"; }
  done <"$s/sysctls"
  [ -f "$s/loaded-br_netfilter" ] && { modprobe -r br_netfilter 2>/dev/null || true; }
  # kubelet's cgroups (kubepods in every hierarchy), once no task is left in them.
  for path in /sys/fs/cgroup/*/kubepods; do
    [ -d "$path" ] || continue
    grep -qxF "$path" "$s/paths" && continue
    find "$path" -depth -type d -exec rmdir {} \; 2>/dev/null || log "could not remove cgroup $path"
  done
  # Pod logs and the CNI result cache of this node's Pods; directories that did not
  # exist before `up` go entirely.
  for path in /var/log/containers/* /var/log/pods/*; do
    [ -e "$path" ] || [ -L "$path" ] || continue
    grep -qxF "$path" "$s/paths" || rm -rf "$path"
  done
  # libcni's result cache (/var/lib/cni/results/<network>-<sandbox id>-<ifname>) for this
  # node's sandboxes: the Pod network and containerd's loopback network.
  if [ -f "$NODE_DIR/container-ids" ] && [ -d /var/lib/cni/results ]; then
    while read -r path; do
      rm -f /var/lib/cni/results/shadow-pods-"$path"-* /var/lib/cni/results/cni-loopback-"$path"-*
    done <"$NODE_DIR/container-ids"
  fi
  if [ -d /var/lib/kubelet ] && ! grep -qxF /var/lib/kubelet "$s/paths" \
      && ! findmnt -rn -o TARGET | grep -q '^/var/lib/kubelet/'; then
    rm -rf /var/lib/kubelet
  fi
  for path in /var/log/pods /var/log/containers /var/lib/cni/results /var/lib/cni /var/run/netns /run/containerd/s /run/containerd; do
    if [ -d "$path" ] && ! grep -qxF "$path" "$s/paths"; then rmdir "$path" 2>/dev/null || true; fi
  done
  # The kubeconfigs name the bridge address: once the bridge is gone a client using them
  # would follow the default route off the machine, so they go too.
  rm -f "$KUBECONFIG_PATH" "$STATE_DIR"/{controller-manager,kubelet,kube-proxy,scheduler}.kubeconfig
  rm -rf "$NODE_DIR/kubelet" "$NODE_DIR/containerd/state" "$NODE_DIR/cni" "$NODE_DIR/dns" \
    "$NODE_DIR/container-ids" "$STATE_DIR/node.env" "$SAVED_DIR"
  log "node removed: bridge $BRIDGE, route, iptables chains and sysctls restored"
}

remove_iptables() {
  # Remove the chains this node created (KUBE-* of kubelet and kube-proxy, CNI-* of the
  # portmap plugin, the guard) that did not exist before `up`, and the rules elsewhere
  # that jump to them; one iptables-restore per table so quoting survives. Tables the
  # node brought into existence (nf_tables backend) are deleted when left empty.
  local fam table dump script
  for fam in iptables ip6tables; do
    command -v "$fam-save" >/dev/null || continue
    for table in filter nat mangle raw; do
      dump=$("$fam-save" -t "$table" 2>/dev/null) || continue
      [ -n "$dump" ] || continue
      script=$(printf '%s\n' "$dump" | python3 -c '
import re, sys
fam, table, saved = sys.argv[1:4]
before = set()
with open(saved) as f:
    for line in f:
        parts = line.split()
        if len(parts) == 3 and parts[0] == fam and parts[1] == table:
            before.add(parts[2])
dump = sys.stdin.read().splitlines()
chains = [l[1:].split()[0] for l in dump if l.startswith(":")]
ours = [c for c in chains if re.match(r"(KUBE-|CNI-|SHADOW-NODE-)", c) and c not in before]
if not ours:
    sys.exit(0)
out = [f"*{table}"]
for l in dump:
    if not l.startswith("-A "):
        continue
    chain = l.split()[1]
    m = re.search(r" -[jg] (\S+)", l)
    if chain not in ours and m and m.group(1) in ours:
        out.append("-D " + l[3:])
out += [f"-F {c}" for c in ours] + [f"-X {c}" for c in ours] + ["COMMIT"]
print("\n".join(out))' "$fam" "$table" "$SAVED_DIR/chains")
      [ -n "$script" ] || continue
      printf '%s\n' "$script" | "$fam-restore" -w --noflush || log "$fam-restore failed for table $table"
    done
    if "$fam" -V 2>/dev/null | grep -q nf_tables && command -v nft >/dev/null; then
      local family=ip; [ "$fam" = ip6tables ] && family=ip6
      for table in filter nat mangle raw; do
        grep -qx "table $family $table" "$SAVED_DIR/nft-tables" 2>/dev/null && continue
        nft list table "$family" "$table" >/dev/null 2>&1 || continue
        # Empty means: no rule and no chain other than the built-in ones.
        dump=$("$fam-save" -t "$table" 2>/dev/null)
        if ! printf '%s\n' "$dump" | grep -q '^-A ' \
            && ! printf '%s\n' "$dump" | grep '^:' | grep -qv '^:\(PREROUTING\|INPUT\|FORWARD\|OUTPUT\|POSTROUTING\) '; then
          nft delete table "$family" "$table" 2>/dev/null || true
        fi
      done
    fi
  done
}

cmd=${1:-}
[ $# -gt 0 ] && shift
if [ "$cmd" = up ]; then
  for arg in "$@"; do
    case $arg in
      --node) NODE_MODE=1 ;;
      *) echo "usage: $0 up [--node]" >&2; exit 2 ;;
    esac
  done
fi
case "$cmd" in
  build) build ;;
  up) up ;;
  down) down ;;
  load-images) load_images "$@" ;;
  env) echo "export KUBECONFIG=$KUBECONFIG_PATH" ;;
  *) echo "usage: $0 build|up [--node]|down|load-images [TAR...]|env" >&2; exit 2 ;;
esac
