#!/usr/bin/env bash
# The build sandbox's OS parts (docs/SECURITY.md). Idempotent: installs only what is missing.
#   bubblewrap (bwrap)  the namespace sandbox every go command and built binary runs in
#   socat               bridges the module relay into the sandbox's own network namespace
#   setpriv             (util-linux, always on Debian) drops root to the build user
#   prlimit             (util-linux) sets the sandbox's file-size limit, and memory/task limits
#                       where no cgroup can be made (docs/SECURITY.md "Kernel limits")
#   user fairway-build  the unprivileged build identity, when run as root
#                       (name from FAIRWAY_BUILD_USER; a uid:gid value is used as it is)
# Usage: bash scripts/sandbox.sh      Env: FAIRWAY_DEPS_SKIP_APT=1 to leave OS packages alone
set -euo pipefail
log() { printf '[sandbox] %s\n' "$*"; }
die() { printf '\n[sandbox] ERROR: %s\n\n' "$*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

pkgs=()
command -v bwrap >/dev/null 2>&1 || pkgs+=(bubblewrap)
command -v socat >/dev/null 2>&1 || pkgs+=(socat)
command -v prlimit >/dev/null 2>&1 || pkgs+=(util-linux)
if [ "${#pkgs[@]}" -gt 0 ]; then
  [ "${FAIRWAY_DEPS_SKIP_APT:-0}" = "1" ] && die "missing ${pkgs[*]} and FAIRWAY_DEPS_SKIP_APT=1: install them, or start Fairway with --sandbox none (unsafe)"
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install ${pkgs[*]} with your package manager"
  if [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then die "need root (or sudo) to install ${pkgs[*]}"; fi
  log "apt-get install ${pkgs[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null || die "apt-get update failed"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}" || die "apt-get install ${pkgs[*]} failed"
fi
log "bwrap: $(bwrap --version), socat: $(socat -V 2>/dev/null | sed -n 's/^socat version \([^ ]*\).*/\1/p')"

user="${FAIRWAY_BUILD_USER:-fairway-build}"
if [ "$(id -u)" -eq 0 ]; then
  command -v setpriv >/dev/null 2>&1 || die "setpriv not found (package util-linux)"
  case "$user" in
    *:*) log "build identity: $user (numeric, not created)" ;;
    *)
      if id -u "$user" >/dev/null 2>&1; then
        log "build user: $user (uid $(id -u "$user")) present"
      else
        useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$user" \
          || die "useradd $user failed"
        log "build user: $user created (uid $(id -u "$user"))"
      fi ;;
  esac
else
  log "not root: builds run as $(id -un) inside a user namespace (no build user needed)"
fi
