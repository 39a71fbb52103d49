#!/usr/bin/env bash
# Build the images a local node needs, with buildah (no Docker engine), and write each as an
# archive `ctr -n k8s.io images import` takes:
#
#   pause.tar            localhost/pause:3.2                      the sandbox image, from Kubernetes' pause.c
#   shadow-base.tar      localhost/shadow-base:bookworm           debootstrap minbase + python3, python3-venv
#   shadow-operator.tar  docker.io/library/shadow-operator:<ver>  the project's Dockerfile on that base
#   recommender.tar      registry.example/recommender:{v1,v2,v2.1} examples/Dockerfile: the demo's model servers
#
# in ${SHADOW_CACHE_DIR:-~/.cache/shadow-operator}/images. Each image is rebuilt only when what it is
# built from changed: a hash of its inputs is kept beside its archive (<name>.inputs). buildah's
# own storage lives under the cache dir too (buildah/), apart from the system's.
#
#   hack/images.sh             build what changed
#   SHADOW_IMAGES_FORCE=1 hack/images.sh   rebuild everything
#
# Needs root (debootstrap, buildah's storage); installs buildah and debootstrap when missing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE_DIR=${SHADOW_CACHE_DIR:-$HOME/.cache/shadow-operator}
OUT_DIR=$CACHE_DIR/images
STORE_DIR=$CACHE_DIR/buildah
SRC_DIR=$CACHE_DIR/src
FORCE=${SHADOW_IMAGES_FORCE:-}

OPERATOR_VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/pyproject.toml" | head -n1)
PAUSE_IMAGE=localhost/pause:3.2
BASE_IMAGE=localhost/shadow-base:bookworm
OPERATOR_IMAGE=docker.io/library/shadow-operator:$OPERATOR_VERSION
DEMO_REPO=registry.example/recommender
DEMO_TAGS=(v1 v2 v2.1) # one image; the manifests' args choose the model version
BASE_SUITE=bookworm
BASE_PACKAGES=python3,python3-venv,ca-certificates

log() { printf '%s\n' "images: $*" >&2; }
die() { log "$*"; exit 1; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_tools() {
  "$ROOT/hack/debian-deps.sh" buildah:buildah debootstrap:debootstrap gcc:gcc :libc6-dev \
    /usr/share/keyrings/debian-archive-keyring.gpg:debian-archive-keyring
}

# buildah with a storage of its own under the cache dir: images persist between runs, and the
# system's storage (/var/lib/containers) is not touched. overlay when the kernel allows, else vfs.
# RUN steps use chroot isolation: no OCI runtime, so no cgroups (crun refuses hybrid cgroup
# hierarchies: "cgroups in hybrid mode not supported", seen here) and no netavark, which turns
# ip_forward on.
ISOLATION=${SHADOW_BUILDAH_ISOLATION:-chroot}
STORAGE_DRIVER=
bah() {
  buildah --root "$STORE_DIR/storage" --runroot "$STORE_DIR/run" --storage-driver "$STORAGE_DRIVER" "$@"
}
choose_storage_driver() {
  if [ -n "${SHADOW_BUILDAH_DRIVER:-}" ]; then STORAGE_DRIVER=$SHADOW_BUILDAH_DRIVER; return; fi
  if [ -d "$STORE_DIR/storage/vfs" ]; then STORAGE_DRIVER=vfs; return; fi
  STORAGE_DRIVER=overlay
  local probe
  if probe=$(bah from --quiet scratch 2>/dev/null) && bah mount "$probe" >/dev/null 2>&1; then
    bah rm "$probe" >/dev/null
  else
    log "overlay storage does not work here: using vfs"
    if [ -n "$probe" ]; then bah rm "$probe" >/dev/null 2>&1 || true; fi
    rm -rf "$STORE_DIR/storage" "$STORE_DIR/run"
    STORAGE_DRIVER=vfs
  fi
}

# Working containers and mounts of this run, removed on exit whatever happens.
CONTAINERS=()
cleanup() {
  local c
  for c in "${CONTAINERS[@]}"; do bah rm "$c" >/dev/null 2>&1 || true; done
  rm -rf "${TMP_DIR:-/nonexistent}"
}
trap cleanup EXIT
TMP_DIR=$(mktemp -d)

now() { printf '%s' "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

# --- inputs ------------------------------------------------------------------------------------

# sha256 over the paths and contents of the files under the given repository paths: tracked and
# untracked files git does not ignore (uncommitted edits count), every file outside a git checkout.
hash_tree() {
  (
    cd "$ROOT"
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
      git ls-files -z --cached --others --exclude-standard -- "$@"
    else
      find "$@" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0
    fi | sort -zu | while IFS= read -r -d '' f; do
      [ -f "$f" ] && printf '%s  %s\n' "$(sha256sum <"$f" | cut -d' ' -f1)" "$f"
    done
  ) | sha256sum | cut -d' ' -f1
}
hash_text() { printf '%s\n' "$@" | sha256sum | cut -d' ' -f1; }

# The host's CA bundle, as pip here is configured to trust (a TLS-intercepting proxy's CA may be in
# it): handed to the builds' pip as the secret "pip-ca".
pip_ca() {
  local ca=${PIP_CERT:-}
  [ -n "$ca" ] || ca=$(python3 -m pip config get global.cert 2>/dev/null || true)
  [ -n "$ca" ] || ca=/etc/ssl/certs/ca-certificates.crt
  [ -s "$ca" ] && printf '%s' "$ca"
}

# The Debian mirror this machine's apt uses, read from its sources (deb822 or one-line format).
apt_mirror() {
  local uri
  [ -n "${SHADOW_DEBIAN_MIRROR:-}" ] && { printf '%s' "$SHADOW_DEBIAN_MIRROR"; return; }
  uri=$(
    for f in /etc/apt/sources.list.d/*.sources; do [ -f "$f" ] && { cat "$f"; echo; }; done |
      awk -v suite="$BASE_SUITE" '
        function flush() {
          if (deb && uris != "") { if (has_suite) { print "1 " uris } else if (!security) { print "2 " uris } }
          deb = 0; uris = ""; has_suite = 0; security = 0
        }
        /^[[:space:]]*$/ { flush(); next }
        /^Types:/ { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
        /^URIs:/ { uris = $2 }
        /^Suites:/ { for (i = 2; i <= NF; i++) { if ($i == suite) has_suite = 1; if ($i ~ /-security$/) security = 1 } }
        END { flush() }'
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do [ -f "$f" ] && cat "$f"; done |
      sed -e 's/\[[^]]*\]//' | awk -v suite="$BASE_SUITE" '
        $1 == "deb" { if ($3 == suite) print "1 " $2; else if ($3 !~ /-security$/) print "2 " $2 }'
  )
  uri=$(printf '%s\n' "$uri" | grep -E '^[12] (https?|file)://' | sort -s -k1,1 | head -n1 | cut -d' ' -f2)
  [ -n "$uri" ] || die "no Debian mirror found in /etc/apt/sources.list{,.d} (set SHADOW_DEBIAN_MIRROR)"
  printf '%s' "$uri"
}

# Kubernetes' pause.c: from the source tree `hack/local-cluster.sh build` unpacks, else from the
# same Debian source package, downloaded (not unpacked, so that script still unpacks it itself).
find_pause_c() {
  local tree orig
  tree=$(find "$SRC_DIR" -maxdepth 1 -type d -name 'kubernetes-*' 2>/dev/null | sort | head -n1)
  if [ -n "$tree" ] && [ -f "$tree/build/pause/linux/pause.c" ]; then
    printf '%s' "$tree/build/pause/linux/pause.c"
    return
  fi
  local extracted=$OUT_DIR/pause-src/pause.c
  if [ ! -f "$extracted" ]; then
    mkdir -p "$SRC_DIR" "$OUT_DIR/pause-src"
    orig=$(find "$SRC_DIR" -maxdepth 1 -name 'kubernetes_*.orig.tar.*' | sort | head -n1)
    if [ -z "$orig" ]; then
      if ! grep -rqs '^Types: .*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
        log "enabling Debian source packages (deb-src)"
        sed -e 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources |
          as_root tee /etc/apt/sources.list.d/shadow-operator-deb-src.sources >/dev/null
        as_root apt-get update -qq
      fi
      log "downloading the kubernetes source package for pause.c"
      (cd "$SRC_DIR" && apt-get source --download-only -qq kubernetes >/dev/null)
      orig=$(find "$SRC_DIR" -maxdepth 1 -name 'kubernetes_*.orig.tar.*' | sort | head -n1)
      [ -n "$orig" ] || die "kubernetes source package not found under $SRC_DIR"
    fi
    tar -xf "$orig" -O --wildcards '*/build/pause/linux/pause.c' >"$extracted.tmp"
    mv "$extracted.tmp" "$extracted"
  fi
  printf '%s' "$extracted"
}

# --- recipes (each one's text is part of its image's input hash) --------------------------------

build_pause() {
  local src=$1 ctr
  gcc -static -O2 -Wall -Werror -DVERSION=v3.2-shadow-operator -o "$TMP_DIR/pause" "$src"
  strip "$TMP_DIR/pause"
  ctr=$(bah from --quiet scratch); CONTAINERS+=("$ctr")
  bah copy --chmod 0755 "$ctr" "$TMP_DIR/pause" /pause >/dev/null
  bah config --entrypoint '["/pause"]' \
    --label org.opencontainers.image.description="Kubernetes sandbox (pause) built from build/pause/linux/pause.c" "$ctr"
  bah commit --quiet --rm --format docker "$ctr" "$PAUSE_IMAGE" >/dev/null
}

build_base() {
  local mirror ctr mnt
  mirror=$(apt_mirror)
  ctr=$(bah from --quiet scratch); CONTAINERS+=("$ctr")
  mnt=$(bah mount "$ctr")
  log "  debootstrap --variant=minbase $BASE_SUITE (+$BASE_PACKAGES) from the host's apt mirror"
  debootstrap --variant=minbase --include="$BASE_PACKAGES" \
    --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
    "$BASE_SUITE" "$mnt" "$mirror" >"$TMP_DIR/debootstrap.log" 2>&1 ||
    { tail -n 30 "$TMP_DIR/debootstrap.log" >&2; die "debootstrap failed"; }
  chroot "$mnt" apt-get clean
  rm -rf "$mnt"/var/lib/apt/lists/* "$mnt"/var/cache/apt/*.bin "$mnt"/var/cache/debconf/*-old \
    "$mnt"/usr/share/man/* "$mnt"/usr/share/info/* "$mnt"/tmp/* "$mnt"/var/tmp/*
  find "$mnt/var/log" -type f -delete
  # Documentation and translations out (copyright files stay), now and for packages added later.
  find "$mnt/usr/share/doc" -type f ! -name copyright -delete
  find "$mnt/usr/share/doc" -depth -mindepth 1 -type d -empty -delete
  find "$mnt/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' 'path-exclude /usr/share/locale/*' \
    'path-include /usr/share/locale/locale.alias' >"$mnt/etc/dpkg/dpkg.cfg.d/shadow-operator-nodoc"
  # The host's: the runtime provides both.
  : >"$mnt/etc/resolv.conf"
  : >"$mnt/etc/hostname"
  bah umount "$ctr" >/dev/null
  bah config \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
    --cmd '["bash"]' \
    --label org.opencontainers.image.description="Debian $BASE_SUITE minbase with python3 and python3-venv" "$ctr"
  bah commit --quiet --rm --format docker "$ctr" "$BASE_IMAGE" >/dev/null
}

# An image a build starts from: in storage, or loaded from its archive (storage wiped, say).
need_image() { # name, image
  bah inspect --type image "$2" >/dev/null 2>&1 || bah pull --quiet "docker-archive:$OUT_DIR/$1.tar" >/dev/null
}

# Build arguments every Dockerfile build gets: the host network (pip reaches the index as the host
# does) and the host's CA bundle for pip, as a secret the Dockerfiles mount read-only.
build_args() {
  local ca
  BUILD_ARGS=(--format docker --pull=never --network host --layers=false --isolation "$ISOLATION")
  if ca=$(pip_ca); then BUILD_ARGS+=(--secret "id=pip-ca,src=$ca"); fi
}

build_operator() {
  need_image shadow-base "$BASE_IMAGE"
  build_args
  bah build --quiet "${BUILD_ARGS[@]}" --build-arg PYTHON_IMAGE="$BASE_IMAGE" \
    -f "$ROOT/Dockerfile" -t "$OPERATOR_IMAGE" "$ROOT" >"$TMP_DIR/operator.log" 2>&1 ||
    { tail -n 40 "$TMP_DIR/operator.log" >&2; die "operator image build failed"; }
}

build_demo() {
  local tag args=()
  need_image shadow-operator "$OPERATOR_IMAGE"
  build_args
  for tag in "${DEMO_TAGS[@]}"; do args+=(-t "$DEMO_REPO:$tag"); done
  bah build --quiet "${BUILD_ARGS[@]}" --build-arg OPERATOR_IMAGE="$OPERATOR_IMAGE" \
    -f "$ROOT/examples/Dockerfile" "${args[@]}" "$ROOT" >"$TMP_DIR/demo.log" 2>&1 ||
    { tail -n 40 "$TMP_DIR/demo.log" >&2; die "demo image build failed"; }
}

# --- verification ------------------------------------------------------------------------------

run_in() { # image, command...: run a command in a throwaway container as uid 65532
  local image=$1 ctr; shift
  ctr=$(bah from --quiet --pull=never "$image"); CONTAINERS+=("$ctr")
  bah run --isolation "$ISOLATION" --user 65532:65532 "$ctr" -- "$@"
  bah rm "$ctr" >/dev/null
}

verify_pause() {
  local ctr mnt
  ctr=$(bah from --quiet --pull=never "$PAUSE_IMAGE"); CONTAINERS+=("$ctr")
  mnt=$(bah mount "$ctr")
  "$mnt/pause" -v >/dev/null
  bah rm "$ctr" >/dev/null
}
verify_base() { run_in "$BASE_IMAGE" python3 -c 'import venv, ssl'; }
verify_operator() {
  run_in "$OPERATOR_IMAGE" shadowctl --version >/dev/null
  [ "$(run_in "$OPERATOR_IMAGE" python -c 'import getpass, pwd, os; print(getpass.getuser(), pwd.getpwuid(os.getuid()).pw_name)')" = "shadow-operator shadow-operator" ]
}
verify_demo() {
  run_in "$DEMO_REPO:${DEMO_TAGS[0]}" python -c 'import shadow_demo.serve, numpy'
  # The manifests give the whole command as args: the image must have no entrypoint of its own.
  bah inspect --type image "$DEMO_REPO:${DEMO_TAGS[0]}" |
    python3 -c 'import json, sys; assert not json.load(sys.stdin)["Docker"]["config"].get("Entrypoint")' ||
    die "the demo image has an entrypoint"
}

# --- archives ----------------------------------------------------------------------------------

# docker-archive with every given name in its manifest's RepoTags (ctr imports each of them).
write_archive() {
  local archive=$1 image=$2; shift 2
  rm -f "$archive.tmp"
  bah push --quiet "$image" "docker-archive:$archive.tmp:$image" >/dev/null
  if [ $# -gt 0 ]; then
    python3 - "$archive.tmp" "$image" "$@" <<'EOF'
import io, json, sys, tarfile

path, tags = sys.argv[1], list(dict.fromkeys(sys.argv[2:]))
with tarfile.open(path) as src, tarfile.open(path + ".tags", "w", format=tarfile.PAX_FORMAT) as dst:
    for member in src:
        data = src.extractfile(member) if member.isfile() else None
        if member.name == "manifest.json":
            manifest = json.load(data)
            manifest[0]["RepoTags"] = tags
            body = json.dumps(manifest).encode()
            member.size = len(body)
            data = io.BytesIO(body)
        dst.addfile(member, data)
EOF
    mv "$archive.tmp.tags" "$archive.tmp"
  fi
  mv "$archive.tmp" "$archive"
}

# name, inputs hash, image, extra tags...: build (recipe build_<name>) when the inputs changed or
# the archive is missing.
REPORT=()
image_step() {
  local name=$1 inputs=$2 image=$3 fn=$4; shift 4
  local archive=$OUT_DIR/$name.tar stamp=$OUT_DIR/$name.inputs t0 size
  t0=$(now)
  if [ -z "$FORCE" ] && [ -f "$archive" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$inputs" ]; then
    REPORT+=("$(printf '  %-16s skipped  %8s  %s' "$name" "$(since "$t0")" "${*:-$image} (inputs unchanged)")")
    log "$name: up to date"
    return
  fi
  log "$name: building $image"
  rm -f "$stamp"
  "build_$fn" "${BUILD_INPUT[@]}"
  "verify_$fn"
  write_archive "$archive" "$image" "$@"
  printf '%s\n' "$inputs" >"$stamp"
  size=$(du -h "$archive" | cut -f1)
  REPORT+=("$(printf '  %-16s rebuilt  %8s  %s (%s)' "$name" "$(since "$t0")" "${*:-$image}" "$size")")
  log "$name: built in $(since "$t0")"
}

main() {
  ensure_tools
  mkdir -p "$OUT_DIR" "$STORE_DIR"
  exec 9>"$STORE_DIR/lock"
  flock -n 9 || { log "another hack/images.sh is running: waiting"; flock 9; }
  choose_storage_driver
  local start tag pause_c pause_in base_in operator_in demo_in demo_tags=()
  start=$(now)

  pause_c=$(find_pause_c)
  pause_in=$(hash_text "$(sha256sum <"$pause_c")" "$(declare -f build_pause verify_pause)" "$PAUSE_IMAGE")
  base_in=$(hash_text "$(declare -f build_base verify_base)" "$BASE_IMAGE" "$BASE_SUITE" "$BASE_PACKAGES")
  operator_in=$(hash_text "$base_in" "$(hash_tree Dockerfile .dockerignore pyproject.toml README.md operator)" \
    "$(declare -f need_image build_args build_operator verify_operator)" "$OPERATOR_IMAGE")
  demo_in=$(hash_text "$operator_in" "$(hash_tree .dockerignore examples/Dockerfile examples/shadow_demo)" \
    "$(declare -f need_image build_args build_demo verify_demo)" "$DEMO_REPO" "${DEMO_TAGS[@]}")
  for tag in "${DEMO_TAGS[@]}"; do demo_tags+=("$DEMO_REPO:$tag"); done

  BUILD_INPUT=("$pause_c"); image_step pause "$pause_in" "$PAUSE_IMAGE" pause
  BUILD_INPUT=(); image_step shadow-base "$base_in" "$BASE_IMAGE" base
  image_step shadow-operator "$operator_in" "$OPERATOR_IMAGE" operator
  image_step recommender "$demo_in" "${demo_tags[0]}" demo "${demo_tags[@]}"

  # Leftovers of earlier builds (replaced tags): keep the storage from growing run after run.
  bah rmi --prune >/dev/null 2>&1 || true

  printf '\nimages (%s, storage %s, total %s):\n' "$OUT_DIR" "$STORAGE_DRIVER" "$(since "$start")"
  printf '%s\n' "${REPORT[@]}"
  printf '\nimport into a node'"'"'s containerd:\n'
  printf '  ctr -n k8s.io images import %s\n' "$OUT_DIR/pause.tar" "$OUT_DIR/shadow-operator.tar" "$OUT_DIR/recommender.tar"
}

main "$@"
