#!/usr/bin/env bash
# tools/toolchain.sh — the offline Pulumi toolchain of homelab-data (ADR 0004, tools/README.md).
#
# Provides, at the versions package.json pins, the binaries `pulumi preview/up/destroy` need:
#   pulumi                          the CLI                       (= @pulumi/pulumi)
#   pulumi-language-nodejs          the Node.js language host     (= @pulumi/pulumi)
#   pulumi-resource-pulumi-nodejs   dynamic-provider shim         (= @pulumi/pulumi)
#   pulumi-resource-command         the command provider          (= @pulumi/command)
# in ${HOMELAB_TOOLCHAIN_CACHE:-~/.cache/homelab-data/toolchain}/v<pulumi version>/bin.
#
# Each binary comes from the first source that works:
#   1. already installed at the pinned version (pulumi on $PATH; the command plugin in $PULUMI_HOME/plugins),
#   2. the official release archive (tried with a short timeout; unreachable without internet),
#   3. built with Go from tools/pulumi-toolchain (modules come through the Go module proxy).
#
# Usage:
#   bash tools/toolchain.sh            ensure the toolchain, print its bin dir on stdout (logs go to stderr)
#   eval "$(bash tools/toolchain.sh --env)"
#                                      ensure it, then put it on PATH for this shell (+ offline settings)
#   bash tools/toolchain.sh --check    exit 0 if the toolchain is complete, 1 if not (never builds)
#   bash tools/toolchain.sh --bin-dir  print where the bin dir is (never builds)
#   bash tools/toolchain.sh --versions print the pinned versions
#   bash tools/toolchain.sh --repin    move tools/pulumi-toolchain/go.mod to package.json's @pulumi/pulumi
# Sourcing it (`source tools/toolchain.sh`) only defines the toolchain_* functions.
#
# Environment:
#   HOMELAB_TOOLCHAIN_CACHE   cache root (default ${XDG_CACHE_HOME:-~/.cache}/homelab-data/toolchain)
#   HOMELAB_PULUMI_VERSION    use this CLI version instead of package.json's (escape hatch; warns)
#   HOMELAB_TOOLCHAIN_OFFLINE=1  skip the release download attempt
#   HOMELAB_TOOLCHAIN_FROM_SOURCE=1  skip steps 1 and 2: always use the Go build

TOOLCHAIN_SCRIPT_VERSION=1

_tc_repo_root() { (cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd); }
_tc_log() { printf 'toolchain: %s\n' "$*" >&2; }
_tc_now() { date +%s.%N; }
_tc_since() { awk -v a="$1" -v b="$(_tc_now)" 'BEGIN { printf "%.1fs", b - a }'; }

_tc_strip() { local v="${1#v}"; v="${v#^}"; v="${v#~}"; v="${v#=}"; v="${v#v}"; printf '%s' "$v"; }

# toolchain_versions: sets TC_PULUMI_VERSION and TC_COMMAND_VERSION (no leading v) from package.json.
toolchain_versions() {
  local root pj
  root="$(_tc_repo_root)"
  pj="$(cd "$root" && node -p "const d=require('./package.json').dependencies||{}; (d['@pulumi/pulumi']||'')+' '+(d['@pulumi/command']||'')")" || {
    _tc_log "cannot read the pins from $root/package.json (is node installed?)"
    return 1
  }
  TC_PULUMI_VERSION="$(_tc_strip "${pj%% *}")"
  TC_COMMAND_VERSION="$(_tc_strip "${pj##* }")"
  if [ -n "${HOMELAB_PULUMI_VERSION:-}" ] && [ "$(_tc_strip "$HOMELAB_PULUMI_VERSION")" != "$TC_PULUMI_VERSION" ]; then
    _tc_log "WARNING: HOMELAB_PULUMI_VERSION=$HOMELAB_PULUMI_VERSION overrides package.json's @pulumi/pulumi $TC_PULUMI_VERSION"
    TC_PULUMI_VERSION="$(_tc_strip "$HOMELAB_PULUMI_VERSION")"
  fi
  if [ -z "$TC_PULUMI_VERSION" ] || [ -z "$TC_COMMAND_VERSION" ]; then
    _tc_log "package.json must pin both @pulumi/pulumi and @pulumi/command"
    return 1
  fi
}

toolchain_cache_root() { printf '%s' "${HOMELAB_TOOLCHAIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/homelab-data/toolchain}"; }

# toolchain_bin_dir: the bin dir for the pinned version (after toolchain_versions).
toolchain_bin_dir() { printf '%s/v%s/bin' "$(toolchain_cache_root)" "$TC_PULUMI_VERSION"; }

_tc_go() {
  if command -v go >/dev/null 2>&1; then command -v go
  elif [ -x /usr/local/go/bin/go ]; then printf '%s' /usr/local/go/bin/go
  else return 1; fi
}

# Fingerprint of everything a Go-built binary depends on (go.mod, go.sum, Go, the pins and, for our
# own commands, their sources): a change rebuilds that binary.
_tc_fingerprint() { # [cmd dir name]
  local root mod go
  root="$(_tc_repo_root)"; mod="$root/tools/pulumi-toolchain"
  go="$(_tc_go 2>/dev/null)" || go=none
  {
    printf '%s\n' "script=$TOOLCHAIN_SCRIPT_VERSION pulumi=$TC_PULUMI_VERSION command=$TC_COMMAND_VERSION"
    [ "$go" = none ] || "$go" env GOVERSION GOOS GOARCH
    cat "$mod/go.mod" "$mod/go.sum"
    if [ -n "${1:-}" ]; then find "$mod/cmd/$1" -type f -name '*.go' ! -name '*_test.go' | LC_ALL=C sort | xargs cat; fi
  } | sha256sum | cut -c1-16
}

# _tc_fingerprints: sets TC_FP_<binary> for the binaries built from Go.
_tc_fingerprints() {
  TC_FP_pulumi="go-$(_tc_fingerprint)"
  TC_FP_lang="go-$(_tc_fingerprint pulumi-language-nodejs)"
  TC_FP_command="go-$(_tc_fingerprint pulumi-resource-command)"
  TC_FP_dynamic="go-$(printf '%s' "$TOOLCHAIN_SCRIPT_VERSION $TC_PULUMI_VERSION" | sha256sum | cut -c1-16)"
}

# _tc_have name: the binary is in the bin dir, from any source, for the current pins and sources.
_tc_have() {
  local fp
  case "$1" in
    pulumi) fp="$TC_FP_pulumi" ;;
    pulumi-language-nodejs) fp="$TC_FP_lang" ;;
    pulumi-resource-command) fp="$TC_FP_command" ;;
    pulumi-resource-pulumi-nodejs) fp="$TC_FP_dynamic" ;;
  esac
  _tc_stamp_ok "$1" path || _tc_stamp_ok "$1" release || _tc_stamp_ok "$1" "$fp"
}

_tc_stamp_ok() { # name expected-stamp
  local bin; bin="$(toolchain_bin_dir)"
  [ -x "$bin/$1" ] && [ -f "$bin/.stamp-$1" ] && [ "$(cat "$bin/.stamp-$1")" = "$2" ]
}
_tc_stamp_set() { printf '%s' "$2" >"$(toolchain_bin_dir)/.stamp-$1"; }

_tc_install_link() { # name target source-label
  local bin; bin="$(toolchain_bin_dir)"
  ln -sfn "$2" "$bin/$1.tmp.$$" && mv -f "$bin/$1.tmp.$$" "$bin/$1"
  _tc_stamp_set "$1" "$3"
  _tc_log "$1: using $2"
}

# Step 1: the pinned pulumi CLI (and the language host beside it) already installed.
_tc_from_path() {
  local bin cache p
  bin="$(toolchain_bin_dir)"; cache="$(toolchain_cache_root)"
  if ! _tc_have pulumi; then
    while IFS= read -r p; do
      case "$p" in "$cache"/*) continue ;; esac
      if [ "$("$p" version 2>/dev/null)" = "v$TC_PULUMI_VERSION" ]; then
        _tc_install_link pulumi "$p" path
        if [ -x "$(dirname "$p")/pulumi-language-nodejs" ]; then
          _tc_install_link pulumi-language-nodejs "$(dirname "$p")/pulumi-language-nodejs" path
        fi
        if [ -x "$(dirname "$p")/pulumi-resource-pulumi-nodejs" ]; then
          _tc_install_link pulumi-resource-pulumi-nodejs "$(dirname "$p")/pulumi-resource-pulumi-nodejs" path
        fi
        break
      fi
    done < <(type -ap pulumi 2>/dev/null)
  fi
  p="${PULUMI_HOME:-$HOME/.pulumi}/plugins/resource-command-v$TC_COMMAND_VERSION/pulumi-resource-command"
  if ! _tc_have pulumi-resource-command && [ -x "$p" ] && [ ! -e "$p.partial" ]; then
    _tc_install_link pulumi-resource-command "$p" path
  fi
}

# Step 2: official release archives, tried quickly (they are not reachable without internet).
_tc_from_release() {
  [ "${HOMELAB_TOOLCHAIN_OFFLINE:-}" = 1 ] && return 0
  command -v curl >/dev/null 2>&1 || return 0
  local bin tmp arch goarch f t0
  bin="$(toolchain_bin_dir)"; tmp="$(mktemp -d)"
  case "$(uname -m)" in x86_64|amd64) arch=x64 goarch=amd64 ;; aarch64|arm64) arch=arm64 goarch=arm64 ;; *) rm -rf "$tmp"; return 0 ;; esac
  local curl_opts=(-fsSL --connect-timeout 5 --max-time 300 --retry 0)
  if ! _tc_have pulumi || ! _tc_have pulumi-language-nodejs; then
    t0="$(_tc_now)"
    if curl "${curl_opts[@]}" -o "$tmp/pulumi.tgz" \
      "https://get.pulumi.com/releases/sdk/pulumi-v$TC_PULUMI_VERSION-linux-$arch.tar.gz" 2>/dev/null &&
      tar -xzf "$tmp/pulumi.tgz" -C "$tmp"; then
      for f in pulumi pulumi-language-nodejs pulumi-resource-pulumi-nodejs; do
        if [ -x "$tmp/pulumi/$f" ]; then
          mv -f "$tmp/pulumi/$f" "$bin/$f" && _tc_stamp_set "$f" release
        fi
      done
      _tc_log "pulumi v$TC_PULUMI_VERSION: official release archive ($(_tc_since "$t0"))"
    else
      _tc_log "pulumi v$TC_PULUMI_VERSION: official release not reachable ($(_tc_since "$t0")); building from Go modules"
    fi
  fi
  if ! _tc_have pulumi-resource-command; then
    t0="$(_tc_now)"
    if curl "${curl_opts[@]}" -o "$tmp/command.tgz" \
      "https://github.com/pulumi/pulumi-command/releases/download/v$TC_COMMAND_VERSION/pulumi-resource-command-v$TC_COMMAND_VERSION-linux-$goarch.tar.gz" 2>/dev/null &&
      tar -xzf "$tmp/command.tgz" -C "$tmp" && [ -x "$tmp/pulumi-resource-command" ]; then
      mv -f "$tmp/pulumi-resource-command" "$bin/pulumi-resource-command" && _tc_stamp_set pulumi-resource-command release
      _tc_log "pulumi-resource-command v$TC_COMMAND_VERSION: official release archive ($(_tc_since "$t0"))"
    else
      _tc_log "pulumi-resource-command v$TC_COMMAND_VERSION: official release not reachable ($(_tc_since "$t0")); building from Go modules"
    fi
  fi
  rm -rf "$tmp"
}

# Step 3: build from Go modules.
_tc_build() { # name package ldflags fingerprint
  local root mod bin go out t0
  root="$(_tc_repo_root)"; mod="$root/tools/pulumi-toolchain"; bin="$(toolchain_bin_dir)"
  go="$(_tc_go)" || {
    _tc_log "ERROR: $1 must be built from Go modules but Go is not installed (needs Go >= $(awk '/^go /{print $2}' "$mod/go.mod"))"
    return 1
  }
  out="$bin/.$1.build.$$"
  t0="$(_tc_now)"
  _tc_log "$1: building $2 (go $("$go" env GOVERSION | sed 's/^go//'))..."
  if ! (cd "$mod" && GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-} -mod=readonly" \
    "$go" build -trimpath -ldflags "-s -w $3" -o "$out" "$2" >&2); then
    rm -f "$out"
    _tc_log "ERROR: building $1 failed (see the go output above)"
    return 1
  fi
  mv -f "$out" "$bin/$1"
  _tc_stamp_set "$1" "$4"
  _tc_log "$1: built in $(_tc_since "$t0")"
}

_tc_write_dynamic_shim() { # fingerprint
  local bin; bin="$(toolchain_bin_dir)"
  cat >"$bin/.pulumi-resource-pulumi-nodejs.$$" <<'EOF'
#!/bin/sh
# Dynamic-provider plugin of the Node.js SDK: run @pulumi/pulumi's provider from the nearest node_modules.
d="$PWD"
while [ "$d" != "/" ] && [ ! -d "$d/node_modules/@pulumi/pulumi/cmd/dynamic-provider" ]; do d="$(dirname "$d")"; done
exec node "$d/node_modules/@pulumi/pulumi/cmd/dynamic-provider" "$@"
EOF
  chmod 755 "$bin/.pulumi-resource-pulumi-nodejs.$$"
  mv -f "$bin/.pulumi-resource-pulumi-nodejs.$$" "$bin/pulumi-resource-pulumi-nodejs"
  _tc_stamp_set pulumi-resource-pulumi-nodejs "$1"
}

_tc_gomod_pulumi_version() {
  awk '$1 == "github.com/pulumi/pulumi/pkg/v3" { sub(/^v/, "", $2); print $2; exit }' "$(_tc_repo_root)/tools/pulumi-toolchain/go.mod"
}

_tc_from_source() {
  local gomod status=0
  if ! _tc_have pulumi; then
    gomod="$(_tc_gomod_pulumi_version)"
    if [ "$gomod" != "$TC_PULUMI_VERSION" ]; then
      _tc_log "ERROR: package.json pins @pulumi/pulumi $TC_PULUMI_VERSION but tools/pulumi-toolchain/go.mod builds $gomod."
      _tc_log "       Run 'bash tools/toolchain.sh --repin' to move the Go module to $TC_PULUMI_VERSION (the Go module proxy"
      _tc_log "       must serve github.com/pulumi/pulumi/pkg/v3@v$TC_PULUMI_VERSION), or pin @pulumi/pulumi $gomod in package.json."
      return 1
    fi
    _tc_build pulumi github.com/pulumi/pulumi/pkg/v3/cmd/pulumi \
      "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$TC_PULUMI_VERSION" "$TC_FP_pulumi" || status=1
  fi
  if ! _tc_have pulumi-language-nodejs; then
    _tc_build pulumi-language-nodejs ./cmd/pulumi-language-nodejs "-X main.version=v$TC_PULUMI_VERSION" "$TC_FP_lang" || status=1
  fi
  if ! _tc_have pulumi-resource-pulumi-nodejs; then
    _tc_write_dynamic_shim "$TC_FP_dynamic"
  fi
  if ! _tc_have pulumi-resource-command; then
    _tc_build pulumi-resource-command ./cmd/pulumi-resource-command "-X main.version=$TC_COMMAND_VERSION" "$TC_FP_command" || status=1
  fi
  return $status
}

TOOLCHAIN_BINARIES=(pulumi pulumi-language-nodejs pulumi-resource-pulumi-nodejs pulumi-resource-command)

# toolchain_check: 0 when every binary is in the bin dir and pulumi reports the pinned version.
toolchain_check() {
  local bin f missing=0
  toolchain_versions || return 1
  bin="$(toolchain_bin_dir)"
  for f in "${TOOLCHAIN_BINARIES[@]}"; do
    if [ ! -x "$bin/$f" ]; then _tc_log "missing: $bin/$f"; missing=1; fi
  done
  [ $missing = 0 ] || return 1
  if [ "$("$bin/pulumi" version 2>/dev/null)" != "v$TC_PULUMI_VERSION" ]; then
    _tc_log "$bin/pulumi does not report v$TC_PULUMI_VERSION"
    return 1
  fi
}

# toolchain_ensure: make the toolchain complete (idempotent; a few hundred ms when cached).
toolchain_ensure() {
  local t0 bin lock status=0
  t0="$(_tc_now)"
  toolchain_versions || return 1
  bin="$(toolchain_bin_dir)"
  mkdir -p "$bin" || return 1
  lock="$(toolchain_cache_root)/.lock"
  if command -v flock >/dev/null 2>&1; then
    exec {_tc_lock_fd}>"$lock"
    flock "$_tc_lock_fd"
  fi
  _tc_fingerprints
  if [ "${HOMELAB_TOOLCHAIN_FROM_SOURCE:-}" != 1 ]; then
    _tc_from_path
    _tc_from_release
  fi
  _tc_from_source || status=1
  if [ -n "${_tc_lock_fd:-}" ]; then exec {_tc_lock_fd}>&-; unset _tc_lock_fd; fi
  if [ $status = 0 ] && [ "$("$bin/pulumi" version 2>/dev/null)" != "v$TC_PULUMI_VERSION" ]; then
    _tc_log "ERROR: $bin/pulumi does not report v$TC_PULUMI_VERSION"
    status=1
  fi
  if [ $status = 0 ]; then
    _tc_log "ready in $(_tc_since "$t0"): pulumi v$TC_PULUMI_VERSION, command v$TC_COMMAND_VERSION in $bin"
  else
    _tc_log "FAILED after $(_tc_since "$t0")"
  fi
  return $status
}

# toolchain_env: shell code that puts the toolchain on PATH with offline settings.
toolchain_env() {
  local bin state
  bin="$(toolchain_bin_dir)"
  state="${XDG_DATA_HOME:-$HOME/.local/share}/homelab-data/state"
  mkdir -p "$state"
  printf 'export PATH=%q:"$PATH"\n' "$bin"
  printf 'export PULUMI_SKIP_UPDATE_CHECK=true\n'
  printf 'export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true\n'
  printf 'unset PULUMI_IGNORE_AMBIENT_PLUGINS\n'
  printf 'export PULUMI_BACKEND_URL="${PULUMI_BACKEND_URL:-file://%s}"\n' "$state"
}

toolchain_repin() {
  local mod go
  toolchain_versions || return 1
  mod="$(_tc_repo_root)/tools/pulumi-toolchain"
  go="$(_tc_go)" || { _tc_log "Go is not installed"; return 1; }
  _tc_log "moving $mod to pulumi v$TC_PULUMI_VERSION"
  (cd "$mod" && GOTOOLCHAIN=local "$go" get "github.com/pulumi/pulumi/pkg/v3@v$TC_PULUMI_VERSION" \
    "github.com/pulumi/pulumi/sdk/v3@v$TC_PULUMI_VERSION" && GOTOOLCHAIN=local "$go" mod tidy) || {
    _tc_log "ERROR: could not get pulumi v$TC_PULUMI_VERSION from the Go module proxy (see above)"
    return 1
  }
  _tc_log "done: commit tools/pulumi-toolchain/go.mod and go.sum"
}

toolchain_main() {
  case "${1:-}" in
    "") toolchain_ensure && toolchain_bin_dir && echo ;;
    --env) toolchain_ensure && toolchain_env ;;
    --check) toolchain_check ;;
    --bin-dir) toolchain_versions && toolchain_bin_dir && echo ;;
    --versions) toolchain_versions && printf 'pulumi %s\ncommand %s\n' "$TC_PULUMI_VERSION" "$TC_COMMAND_VERSION" ;;
    --repin) toolchain_repin ;;
    -h|--help) sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' ;;
    *) _tc_log "unknown argument: $1 (see --help)"; return 2 ;;
  esac
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -o pipefail
  toolchain_main "$@"
  exit $?
fi
