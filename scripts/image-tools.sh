#!/usr/bin/env bash
# Tools that read OCI images, for the image tests (test/integration/image-layout.test.ts).
# Idempotent: installs only what is missing; fails loudly when something cannot be installed.
#
#   OS packages (apt-get, only if the binary is missing):
#     skopeo                    -> inspects/copies OCI image layouts (oci:<dir>:<tag>)
#     umoci                     -> unpacks an OCI image layout into a runtime bundle (--rootless)
#   Project-local tools in .tools/ (gitignored):
#     .tools/bin/crane          -> go-containerregistry's crane, pinned, `go install` from the
#                                  Go module proxy (validate, registry serve, push/pull)
#     .tools/bin/cosign         -> sigstore's cosign, pinned, `go install` from the Go module proxy
#                                  (verify, verify-attestation, verify-blob-attestation; docs/provenance.md)
#     .tools/bin/cosign3        -> cosign v3, pinned, the same way: it reads signatures and attestations
#                                  as Sigstore bundles through the OCI referrers API (docs/provenance.md)
#
# Usage: bash scripts/image-tools.sh
# Env:   FAIRWAY_DEPS_SKIP_APT=1   do not touch OS packages (skopeo/umoci must then be present)
#        FAIRWAY_DEPS_FORCE=1      rebuild crane even if up to date
# See docs/images.md.
set -euo pipefail

CRANE_MODULE="github.com/google/go-containerregistry"
CRANE_VERSION="v0.22.1"             # pinned; bump deliberately (see docs/images.md)
COSIGN_MODULE="github.com/sigstore/cosign/v2"
COSIGN_VERSION="v2.6.1"             # pinned; bump deliberately (see docs/provenance.md); ~4 min to build cold
COSIGN3_MODULE="github.com/sigstore/cosign/v3"
COSIGN3_VERSION="v3.1.3"            # pinned; bump deliberately (docs/provenance.md); v3.1.4 needs Go 1.27

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"

log()  { printf '[image-tools] %s\n' "$*"; }
die()  { printf '\n[image-tools] ERROR: %s\n\n' "$*" >&2; exit 1; }
trap 'rc=$?; if [ $rc -ne 0 ]; then printf "[image-tools] FAILED (exit %s); last command: %s\n" "$rc" "$BASH_COMMAND" >&2; fi' EXIT

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/bin/$1" ] || [ -x "/usr/sbin/$1" ]; }

# ---------------------------------------------------------------- skopeo, umoci (OS packages)
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

apt_pkgs=()
for tool in skopeo umoci; do
  if have "$tool"; then log "$tool: present"; else apt_pkgs+=("$tool"); fi
done

if [ "${#apt_pkgs[@]}" -gt 0 ]; then
  [ "${FAIRWAY_DEPS_SKIP_APT:-0}" != "1" ] || die "missing ${apt_pkgs[*]} and FAIRWAY_DEPS_SKIP_APT=1; install them yourself"
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install manually: ${apt_pkgs[*]}"
  if [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then
    die "need root (or sudo) to apt-get install: ${apt_pkgs[*]}"
  fi
  log "apt-get update"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q || die "apt-get update failed"
  log "apt-get install ${apt_pkgs[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${apt_pkgs[@]}" \
    || die "apt-get install failed: ${apt_pkgs[*]}"
  for tool in "${apt_pkgs[@]}"; do have "$tool" || die "$tool still missing after apt-get install"; done
  log "OS packages installed"
fi
skopeo --version | sed 's/^/[image-tools]   /'
umoci --version | sed 's/^/[image-tools]   /'

# ---------------------------------------------------------------- crane, cosign
# go_tool (scripts/go-tool.sh): `go install`s a pinned Go tool into .tools/bin, once per version.
# shellcheck source=scripts/go-tool.sh
. "$ROOT/scripts/go-tool.sh"

go_tool crane "$CRANE_MODULE/cmd/crane" "$CRANE_VERSION"
"$BIN/crane" version | sed 's/^/[image-tools]   crane /'
go_tool cosign "$COSIGN_MODULE/cmd/cosign" "$COSIGN_VERSION"
"$BIN/cosign" version 2>&1 | grep -E '^GitVersion' | sed 's/^/[image-tools]   cosign /'
go_tool cosign3 "$COSIGN3_MODULE/cmd/cosign" "$COSIGN3_VERSION" cosign
"$BIN/cosign3" version 2>&1 | grep -E '^GitVersion' | sed 's/^/[image-tools]   cosign3 /'
