#!/usr/bin/env bash
# Tools that check Fairway's API against its contracts, for the contract tests. Idempotent:
# installs only what is missing or out of date; fails loudly when something cannot be installed.
#
#   .tools/venv               -> a Python virtual environment with schemathesis, every package
#                                pinned in scripts/contract-requirements.txt (PyPI)
#   .tools/sbom-venv          -> a Python virtual environment with the SPDX validator (pyspdxtools) and
#                                the CycloneDX one (cyclonedx-python-lib),
#                                every package pinned in scripts/sbom-requirements.txt (PyPI); a venv
#                                of its own, so that adding it never rebuilds schemathesis's
#   .tools/bin/oci-conformance -> the OCI distribution-spec conformance suite, pinned, built with
#                                `go install` from the Go module proxy
#
# Usage: bash scripts/contract-tools.sh
# Env:   FAIRWAY_DEPS_FORCE=1   reinstall even if up to date
set -euo pipefail

CONFORMANCE_MODULE="github.com/opencontainers/distribution-spec/conformance"
CONFORMANCE_VERSION="v0.0.0-20260831232431-97274622c111"   # pinned; bump deliberately

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"
VENV="$TOOLS/venv"
REQS="$ROOT/scripts/contract-requirements.txt"

log()  { printf '[contract-tools] %s\n' "$*"; }
die()  { printf '\n[contract-tools] ERROR: %s\n\n' "$*" >&2; exit 1; }
mkdir -p "$BIN"

# ---------------------------------------------------------------- schemathesis
want="$(sha256sum "$REQS" | cut -d' ' -f1)"
if [ "${FAIRWAY_DEPS_FORCE:-0}" != "1" ] && [ -x "$VENV/bin/schemathesis" ] && [ "$(cat "$VENV/.requirements-sha256" 2>/dev/null)" = "$want" ]; then
  log "schemathesis: present ($("$VENV/bin/schemathesis" --version))"
else
  command -v python3 >/dev/null 2>&1 || die "python3 not found (needed for schemathesis; apt-get install python3 python3-venv)"
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1 && [ "${FAIRWAY_DEPS_SKIP_APT:-0}" != "1" ]; then
      log "apt-get install python3-venv"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-venv || die "apt-get install python3-venv failed"
    else
      die "python3 cannot make virtual environments: install python3-venv"
    fi
  fi
  log "installing schemathesis into $VENV (pinned: scripts/contract-requirements.txt)"
  rm -rf "$VENV"
  python3 -m venv "$VENV" || die "python3 -m venv $VENV failed"
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-input -r "$REQS" || die "pip install -r $REQS failed (is PyPI reachable?)"
  printf '%s\n' "$want" > "$VENV/.requirements-sha256"
  log "schemathesis installed: $("$VENV/bin/schemathesis" --version)"
fi

# ---------------------------------------------------------------- SPDX validator
SBOM_VENV="$TOOLS/sbom-venv"
SBOM_REQS="$ROOT/scripts/sbom-requirements.txt"
want="$(sha256sum "$SBOM_REQS" | cut -d' ' -f1)"
if [ "${FAIRWAY_DEPS_FORCE:-0}" != "1" ] && [ -x "$SBOM_VENV/bin/pyspdxtools" ] && [ "$(cat "$SBOM_VENV/.requirements-sha256" 2>/dev/null)" = "$want" ]; then
  log "pyspdxtools: present"
else
  log "installing pyspdxtools into $SBOM_VENV (pinned: scripts/sbom-requirements.txt)"
  rm -rf "$SBOM_VENV"
  python3 -m venv "$SBOM_VENV" || die "python3 -m venv $SBOM_VENV failed"
  "$SBOM_VENV/bin/pip" install -q --disable-pip-version-check --no-input -r "$SBOM_REQS" || die "pip install -r $SBOM_REQS failed (is PyPI reachable?)"
  "$SBOM_VENV/bin/pyspdxtools" --help >/dev/null || die "pyspdxtools does not run after its install"
  "$SBOM_VENV/bin/python" -c 'import cyclonedx.validation.json' || die "cyclonedx-python-lib's JSON validator does not load after its install"
  printf '%s\n' "$want" > "$SBOM_VENV/.requirements-sha256"
  log "pyspdxtools installed: spdx-tools $("$SBOM_VENV/bin/pip" show spdx-tools | sed -n 's/^Version: //p')"
fi

# ---------------------------------------------------------------- OCI conformance suite
# shellcheck source=scripts/go-tool.sh
. "$ROOT/scripts/go-tool.sh"
go_tool oci-conformance "$CONFORMANCE_MODULE" "$CONFORMANCE_VERSION" conformance
