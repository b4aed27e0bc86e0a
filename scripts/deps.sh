#!/usr/bin/env bash
# Fairway test/dev dependencies. Idempotent: installs only what is missing.
#
#   OS packages (apt-get, only if the binary is missing):
#     redis-server              -> Redis for queue/integration tests
#     chromium, chromium-driver -> headless browser for UI tests
#                                  (skip with FAIRWAY_DEPS_SKIP_CHROMIUM=1)
#   Project-local tools in .tools/ (gitignored):
#     .tools/bin/versitygw      -> S3-compatible server (Apache-2.0), pinned,
#                                  built with `go install` from the Go module proxy
#   Then scripts/image-tools.sh (skopeo, umoci, crane) and scripts/contract-tools.sh
#   (schemathesis in .tools/venv, the OCI conformance suite).
#
# Usage: bash scripts/deps.sh
# Env:   FAIRWAY_DEPS_SKIP_CHROMIUM=1  do not install chromium
#        FAIRWAY_DEPS_SKIP_APT=1       do not touch OS packages at all
#        FAIRWAY_DEPS_FORCE=1          rebuild versitygw even if up to date
# See docs/s3-server.md.
set -euo pipefail

VERSITYGW_MODULE="github.com/versity/versitygw"
VERSITYGW_VERSION="v1.8.0"          # pinned; bump deliberately (see docs/s3-server.md)
GO_MIN_MINOR=25                     # versitygw v1.8.0's go.mod says go 1.25.0

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"

log()  { printf '[deps] %s\n' "$*"; }
die()  { printf '\n[deps] ERROR: %s\n\n' "$*" >&2; exit 1; }
trap 'rc=$?; if [ $rc -ne 0 ]; then printf "[deps] FAILED (exit %s); last command: %s\n" "$rc" "$BASH_COMMAND" >&2; fi' EXIT

started=$(date +%s)

# ---------------------------------------------------------------- OS packages
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
fi

apt_pkgs=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/bin/$1" ] || [ -x "/usr/sbin/$1" ]; }

if [ "${FAIRWAY_DEPS_SKIP_APT:-0}" != "1" ]; then
  if have redis-server; then
    log "redis-server: present ($(redis-server --version | head -n1))"
  else
    apt_pkgs+=(redis-server)
  fi
  if [ "${FAIRWAY_DEPS_SKIP_CHROMIUM:-0}" = "1" ]; then
    log "chromium: skipped (FAIRWAY_DEPS_SKIP_CHROMIUM=1)"
  else
    if have chromium; then log "chromium: present"; else apt_pkgs+=(chromium fonts-liberation); fi
    if have chromedriver; then log "chromedriver: present"; else apt_pkgs+=(chromium-driver); fi
  fi
fi

if [ "${#apt_pkgs[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install manually: ${apt_pkgs[*]}"
  if [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then
    die "need root (or sudo) to apt-get install: ${apt_pkgs[*]}"
  fi
  # Keep Debian's postinst from starting a system-wide redis-server on :6379;
  # tests start their own instances on random ports.
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  log "apt-get update"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q \
    || die "apt-get update failed"
  log "apt-get install ${apt_pkgs[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${apt_pkgs[@]}" \
    || { [ $created_policy -eq 1 ] && $SUDO rm -f /usr/sbin/policy-rc.d; die "apt-get install failed: ${apt_pkgs[*]}"; }
  if [ $created_policy -eq 1 ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
  have redis-server || die "redis-server still missing after apt-get install"
  log "OS packages installed"
fi

# ---------------------------------------------------------------- versitygw
STAMP="$TOOLS/versitygw.version"
if [ "${FAIRWAY_DEPS_FORCE:-0}" != "1" ] && [ -x "$BIN/versitygw" ] && [ -f "$STAMP" ] \
   && [ "$(cat "$STAMP")" = "$VERSITYGW_VERSION" ]; then
  log "versitygw $VERSITYGW_VERSION: present ($BIN/versitygw)"
else
  command -v go >/dev/null 2>&1 || die "go not found in PATH (need Go >= 1.$GO_MIN_MINOR to build versitygw)"
  gover="$(go env GOVERSION)"             # e.g. go1.26.8
  minor="$(printf '%s' "$gover" | sed -E 's/^go1\.([0-9]+).*/\1/')"
  if ! [ "$minor" -ge "$GO_MIN_MINOR" ] 2>/dev/null; then
    log "warning: $gover < go1.$GO_MIN_MINOR; the go command will try to fetch a newer toolchain"
  fi
  log "building versitygw $VERSITYGW_VERSION with $gover (go install; ~1-2 min on a cold cache)"
  mkdir -p "$BIN"
  tmpbin="$(mktemp -d "$TOOLS/.gobin.XXXXXX")"
  # CGO off: the posix backend is pure Go; cgo is only for optional RDMA bits.
  if ! CGO_ENABLED=0 GOBIN="$tmpbin" GOFLAGS="-mod=mod -buildvcs=false" \
       go install -trimpath \
         -ldflags "-s -w -X=main.Version=$VERSITYGW_VERSION -X=main.Build=go-install -X=main.BuildTime=none" \
         "$VERSITYGW_MODULE/cmd/versitygw@$VERSITYGW_VERSION"; then
    rm -rf "$tmpbin"
    die "go install $VERSITYGW_MODULE/cmd/versitygw@$VERSITYGW_VERSION failed (is the Go module proxy reachable?)"
  fi
  mv -f "$tmpbin/versitygw" "$BIN/versitygw"
  rm -rf "$tmpbin"
  printf '%s\n' "$VERSITYGW_VERSION" > "$STAMP"
  log "versitygw installed: $BIN/versitygw"
fi
"$BIN/versitygw" --version | sed 's/^/[deps]   /'

log "done in $(( $(date +%s) - started ))s"
bash "$ROOT/scripts/image-tools.sh"   # skopeo, umoci, crane for the image tests (docs/images.md)
bash "$ROOT/scripts/contract-tools.sh"   # schemathesis, the OCI conformance suite for the contract tests
