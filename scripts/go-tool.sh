# Sourced by scripts/image-tools.sh and scripts/contract-tools.sh (which define log, die, TOOLS and
# BIN): one pinned Go tool into $BIN, built with `go install` from the Go module proxy, skipped
# when $BIN/NAME already is that version (a stamp $TOOLS/NAME.version beside it).
#   go_tool NAME PACKAGE VERSION [BUILT]   BUILT: the binary go install makes (default NAME)
# Env: FAIRWAY_DEPS_FORCE=1 rebuilds it anyway.
go_tool() {
  local name="$1" pkg="$2" version="$3" built="${4:-$1}" stamp="$TOOLS/$1.version" tmpbin
  if [ "${FAIRWAY_DEPS_FORCE:-0}" != "1" ] && [ -x "$BIN/$name" ] && [ -f "$stamp" ] \
     && [ "$(cat "$stamp")" = "$version" ]; then
    log "$name $version: present ($BIN/$name)"
    return
  fi
  command -v go >/dev/null 2>&1 || die "go not found in PATH (needed to build $name)"
  log "building $name $version with $(go env GOVERSION) (go install; up to a few minutes on a cold cache)"
  mkdir -p "$BIN"
  tmpbin="$(mktemp -d "$TOOLS/.gobin.XXXXXX")"
  if ! CGO_ENABLED=0 GOBIN="$tmpbin" GOFLAGS="-mod=mod -buildvcs=false" go install -trimpath "$pkg@$version"; then
    rm -rf "$tmpbin"
    die "go install $pkg@$version failed (is the Go module proxy reachable?)"
  fi
  mv -f "$tmpbin/$built" "$BIN/$name"
  rm -rf "$tmpbin"
  printf '%s\n' "$version" > "$stamp"
  log "$name installed: $BIN/$name"
}
