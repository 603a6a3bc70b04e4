#!/usr/bin/env bash
# Make promtool (Prometheus' rule checker and rule unit tester) available to the tests,
# without installing Prometheus as a service: Debian's `prometheus` package is downloaded
# (apt-get download, no dpkg -i, nothing started), unpacked with dpkg-deb -x in a temporary
# directory, and only its promtool is kept in
#
#   .cache/tools/prometheus-<package version>/usr/bin/promtool
#
# with .cache/tools/bin/promtool pointing at it. Idempotent and keyed by the package's
# version: a second run with the same candidate version does nothing; a new version in the
# archive is fetched next to the old one. Without network or package lists, an already
# unpacked promtool is kept. Prints the path of promtool on its last line.
#
#   scripts/install_promtool.sh              # the candidate version of the apt sources
#   BOSUN_PROMTOOL_VERSION=2.42.0+ds-5+deb12u1 scripts/install_promtool.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=${BOSUN_TOOLS_DIR:-$ROOT/.cache/tools}
PACKAGE=prometheus

log() { printf '[install_promtool] %s\n' "$*" >&2; }
die() { printf '[install_promtool] ERROR: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

candidate() {
  apt-cache policy "$PACKAGE" 2>/dev/null | awk '/Candidate:/ {print $2; exit}'
}

link() {
  # $1: the promtool to point .cache/tools/bin/promtool at
  mkdir -p "$TOOLS/bin"
  local rel=${1#"$TOOLS"/}
  if [ "$(readlink "$TOOLS/bin/promtool" 2>/dev/null || true)" != "../$rel" ]; then
    ln -sfn "../$rel" "$TOOLS/bin/promtool"
  fi
  printf '%s\n' "$TOOLS/bin/promtool"
}

version=${BOSUN_PROMTOOL_VERSION:-}
if [ -z "$version" ]; then
  version=$(candidate)
  if [ -z "$version" ] || [ "$version" = "(none)" ]; then
    log "no candidate for $PACKAGE in the package lists: apt-get update"
    as_root apt-get update -qq || true
    version=$(candidate)
  fi
fi

if [ -z "$version" ] || [ "$version" = "(none)" ]; then
  # Offline: keep the newest promtool already unpacked, if any.
  newest=$(find "$TOOLS" -maxdepth 4 -path '*/prometheus-*/usr/bin/promtool' 2>/dev/null | sort -V | tail -n 1)
  [ -n "$newest" ] || die "no $PACKAGE package in the apt sources and no promtool in $TOOLS"
  log "no $PACKAGE candidate; keeping $newest"
  link "$newest"
  exit 0
fi

# An epoch ("1:2.3") would put a colon in the path.
target=$TOOLS/prometheus-${version//:/_}
promtool=$target/usr/bin/promtool
if [ -x "$promtool" ] && "$promtool" --version >/dev/null 2>&1; then
  link "$promtool"
  exit 0
fi

log "fetching $PACKAGE $version (promtool only; no service is installed)"
mkdir -p "$TOOLS"
work=$(mktemp -d "$TOOLS/.promtool.XXXXXX")
trap 'rm -rf "$work"' EXIT
# As root apt-get drops to the _apt user to download, which cannot write a private
# temporary directory: let it.
chmod 0755 "$work"
if [ "$(id -u)" -eq 0 ] && id _apt >/dev/null 2>&1; then
  chown _apt "$work"
fi
(cd "$work" && apt-get download -q "$PACKAGE=$version" >&2)
deb=$(find "$work" -maxdepth 1 -name "${PACKAGE}_*.deb" | head -n 1)
[ -n "$deb" ] || die "apt-get download $PACKAGE=$version left no .deb"
dpkg-deb -x "$deb" "$work/root"
[ -x "$work/root/usr/bin/promtool" ] || die "$PACKAGE $version holds no usr/bin/promtool"
"$work/root/usr/bin/promtool" --version >/dev/null 2>&1 || die "the unpacked promtool does not run"

mkdir -p "$work/keep/usr/bin"
mv "$work/root/usr/bin/promtool" "$work/keep/usr/bin/promtool"
rm -rf "$target"
mv "$work/keep" "$target"
log "promtool $("$promtool" --version 2>&1 | head -n 1 | awk '{print $3}') in $target"
link "$promtool"
