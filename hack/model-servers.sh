#!/usr/bin/env bash
# A virtual environment with real model servers, apart from the project's own (.venv): MLServer with
# mlserver-sklearn, KServe's Python model server and MLflow's scoring server pin many dependencies
# (pydantic, fastapi, protobuf, numpy...) that would fight the project's. tests/integration/
# test_model_servers.py runs them as plain processes on loopback, behind the real builtin router.
#
#   hack/model-servers.sh          create or reuse the venv; prints its path as the last line
#   MODEL_SERVERS_FORCE=1 hack/model-servers.sh   recreate it
#
# Lives in ${SHADOW_CACHE_DIR:-~/.cache/shadow-operator}/model-servers-venv and is reused while the
# pins below are unchanged (a hash of them is kept in the venv). Installs with uv (itself from PyPI):
# the direct pins are exact, and `--exclude-newer` freezes every transitive dependency to what PyPI
# had on that date, so a resolution today is the resolution next year.
#
# Exit status 75 (EX_TEMPFAIL): PyPI cannot be reached and no usable venv exists; the tests skip.
# Any other failure is an error. Needs Python >= 3.11 ($PYTHON, default python3).
set -euo pipefail

CACHE_DIR=${SHADOW_CACHE_DIR:-$HOME/.cache/shadow-operator}
VENV=${MODEL_SERVERS_VENV:-$CACHE_DIR/model-servers-venv}
PYTHON=${PYTHON:-python3}
FORCE=${MODEL_SERVERS_FORCE:-}

UV_VERSION=0.9.5
EXCLUDE_NEWER=2026-01-01T00:00:00Z
# Resolved together on Python 3.11: kserve 0.17+ needs fastapi >= 0.116, which MLServer 1.7 forbids.
PINS=(
  mlserver==1.7.1
  mlserver-sklearn==1.7.1
  kserve==0.16.0
  mlflow==2.22.2
  scikit-learn==1.6.1
)

log() { printf '%s\n' "model-servers: $*" >&2; }

pypi_reachable() {
  "$PYTHON" - <<'EOF'
import sys, urllib.request
try:
    urllib.request.urlopen("https://pypi.org/simple/uv/", timeout=10).close()
except Exception as exc:  # noqa: BLE001
    print(f"model-servers: PyPI unreachable: {exc}", file=sys.stderr)
    sys.exit(1)
EOF
}

# Each server in a process of its own: MLServer and KServe both register the V2 protocol's
# protobuf messages (inference.*), so one process cannot import both.
importable() {
  "$VENV/bin/python" -c 'import mlserver, mlserver_sklearn, sklearn' \
    && "$VENV/bin/python" -c 'import kserve' && "$VENV/bin/python" -c 'import mlflow.pyfunc.scoring_server'
}

stamp=$(printf '%s\n' "$UV_VERSION" "$EXCLUDE_NEWER" "${PINS[@]}" | sha256sum | cut -d' ' -f1)
mkdir -p "$(dirname "$VENV")"
# One installer at a time (parallel test runs, two checkouts sharing the cache).
exec 9>"$VENV.lock"
flock 9

if [ -z "$FORCE" ] && [ -f "$VENV/.installed" ] && [ "$(cat "$VENV/.installed")" = "$stamp" ] \
  && [ -x "$VENV/bin/python" ]; then
  log "up to date: $VENV"
  printf '%s\n' "$VENV"
  exit 0
fi

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { log "$PYTHON is missing or older than 3.11"; exit 1; }
if ! pypi_reachable; then
  log "cannot create $VENV without PyPI"
  exit 75
fi

started=$(date +%s)
log "creating $VENV (${PINS[*]})"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
# --isolated: the machine's pip configuration (extra indexes, constraints) is not this venv's business.
"$VENV/bin/python" -m pip install --isolated -q --disable-pip-version-check "uv==$UV_VERSION"
"$VENV/bin/uv" pip install --python "$VENV/bin/python" --exclude-newer "$EXCLUDE_NEWER" \
  --index-url https://pypi.org/simple --quiet "${PINS[@]}"
importable
printf '%s\n' "$stamp" >"$VENV/.installed"
log "installed in $(($(date +%s) - started)) s"
printf '%s\n' "$VENV"
