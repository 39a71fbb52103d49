#!/usr/bin/env bash
# Install the Debian packages whose command or file is missing: the one apt-get path of the
# Makefile, hack/images.sh and hack/local-cluster.sh.
#
#   hack/debian-deps.sh [--optional] [--update] WHAT:PACKAGE...
#
# WHAT is a command name (looked up on PATH), an absolute path (must exist), or empty (":pkg":
# installed when `dpkg -s pkg` says it is not). Runs apt-get as root, through sudo otherwise.
# --optional: without root or passwordless sudo, or when the install fails, say so and exit 0.
# --update: run apt-get update even when nothing is missing (a source list was just added).
set -euo pipefail

optional=0 update=0
while [ $# -gt 0 ]; do
  case $1 in
    --optional) optional=1; shift ;;
    --update) update=1; shift ;;
    *) break ;;
  esac
done

missing=()
for entry in "$@"; do
  what=${entry%%:*} package=${entry#*:}
  if [ -z "$what" ]; then
    dpkg -s "$package" >/dev/null 2>&1 && continue
  elif [ "${what#/}" != "$what" ]; then
    [ -e "$what" ] && continue
  else
    command -v "$what" >/dev/null && continue
  fi
  missing+=("$package")
done
[ ${#missing[@]} -gt 0 ] || [ "$update" = 1 ] || exit 0

give_up() {
  if [ "$optional" = 1 ]; then echo "not installed: ${missing[*]} ($1)" >&2; exit 0; fi
  echo "debian-deps: cannot install ${missing[*]}: $1" >&2
  exit 1
}
if [ "$(id -u)" = 0 ]; then sudo=()
elif sudo -n true 2>/dev/null; then sudo=(sudo)
else give_up "not root and no passwordless sudo"; fi

if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "installing ${missing[*]} (Debian packages)" >&2
fi
"${sudo[@]}" apt-get update -qq || give_up "apt-get update failed"
[ ${#missing[@]} -gt 0 ] || exit 0
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
  || give_up "apt-get install failed"
