#!/usr/bin/env bash
# Prepare this machine to run the bosun.platform test suite and the local lab.
#
# Idempotent: every step first checks whether its work is already done, so a second run
# with nothing missing takes a few seconds. Used by `make setup`, by `make test`, by CI
# (.ci/run) and by a new user.
#
# Steps:
#   1. Debian packages: docker.io, debootstrap, and the PostgreSQL, Redis and nginx
#      servers that the module integration tests start on loopback.
#   2. Daemons: dockerd, and a caching proxy for Debian's archive (an nginx instance of
#      its own, scripts/apt-cache/nginx.conf) shared by every test container, both started
#      in the background when not answering (these machines have no systemd of their own).
#   3. Base images: systemd hosts for Molecule (Debian 12, and Debian 13 when the mirror
#      serves it), built with debootstrap only when their recipe changed.
#   4. The Python virtualenv (.venv) from requirements-test.txt, rebuilt when it changed.
#   5. ansible-test's offline pip bootstrap stand-in.
#   6. Elasticsearch's integration-test zip in the local Maven repository (~/.m2, keyed by
#      version), for the integration tests and the Molecule scenario `elasticsearch`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${BOSUN_VENV:-$ROOT/.venv}
MIRROR=${BOSUN_DEBIAN_MIRROR:-http://deb.debian.org/debian}
APT_CACHE_PORT=3142
APT_CACHE_DIR=${BOSUN_APT_CACHE_DIR:-/var/cache/bosun-apt}
# Distributions to build images for: "<suite>:<tag>". Debian 13 is optional: it is built
# when the mirror serves it and skipped (with a note) otherwise.
IMAGES=${BOSUN_IMAGES:-"bookworm:12 trixie:13"}

log() { printf '[setup %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# --- 1. Debian packages -------------------------------------------------------------
HOST_PACKAGES=(
  docker.io debootstrap
  postgresql redis-server nginx-light openssl zstd lz4
  python3-venv git rsync curl ca-certificates shellcheck
  # setfacl: the integration tests run the backup playbooks on this machine as a db host,
  # becoming postgres (the common role installs acl on real hosts)
  acl
  # Elasticsearch for the integration tests: Maven fetches Elastic's zip (it has no JDK),
  # which runs on Debian's Java 17
  maven openjdk-17-jre-headless
)

missing=()
for pkg in "${HOST_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  # The servers are only used as binaries: the tests start their own instances.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
else
  log "Debian packages present"
fi

# --- 2. Daemons ------------------------------------------------------------------------
wait_for() {  # wait_for <seconds> <command...>
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  as_root mkdir -p /var/log
  # In a session of its own (setsid): a job runner that ends the process group of the
  # command that ran this script must not take the engine, and every container, with it.
  # Appending keeps the log of an engine that died.
  as_root sh -c 'setsid nohup dockerd >>/var/log/bosun-dockerd.log 2>&1 </dev/null &'
  wait_for 60 docker info || die "dockerd did not answer within 60 s (see /var/log/bosun-dockerd.log)"
fi
log "docker engine answers"

apt_cache_up() { curl -fsS -o /dev/null "http://127.0.0.1:${APT_CACHE_PORT}/health"; }
if ! apt_cache_up; then
  log "starting the Debian archive cache on port ${APT_CACHE_PORT} ($APT_CACHE_DIR)"
  as_root mkdir -p "$APT_CACHE_DIR/tmp"
  as_root nginx -q -p "$APT_CACHE_DIR/" -c "$ROOT/scripts/apt-cache/nginx.conf"
  wait_for 20 apt_cache_up || die "the Debian archive cache did not answer on port ${APT_CACHE_PORT}"
fi

# --- 3. Base images --------------------------------------------------------------------
# The packages every host of the platform starts with: what a DigitalOcean Debian Droplet
# image has (systemd, sshd, sudo, python3 with apt bindings, cron), nothing more. Roles
# install the rest themselves; their downloads are cached by the archive cache.
IMAGE_PACKAGES=python3,python3-apt,systemd,systemd-sysv,dbus,sudo,iproute2,procps,ca-certificates,openssh-server,cron,curl,gnupg,less,locales
IMAGE_REPO=bosun-platform/debian

image_recipe() {  # the text whose hash names the image: this function and its inputs
  declare -f build_image
  echo "$IMAGE_PACKAGES $1"
}

build_image() {  # build_image <suite> <tag>
  local suite=$1 tag=$2 rootfs
  rootfs=$(mktemp -d /tmp/bosun-rootfs.XXXXXX)
  trap 'as_root rm -rf "$rootfs"' RETURN
  local mirror="http://127.0.0.1:${APT_CACHE_PORT}/debian"
  [ -z "${BOSUN_DEBIAN_MIRROR:-}" ] || mirror=$MIRROR
  as_root debootstrap --variant=minbase --include="$IMAGE_PACKAGES" "$suite" "$rootfs" "$mirror" \
    >"/tmp/bosun-debootstrap-$suite.log" 2>&1 \
    || { tail -20 "/tmp/bosun-debootstrap-$suite.log" >&2; return 1; }
  local security="http://deb.debian.org/debian-security"
  as_root tee "$rootfs/etc/apt/sources.list" >/dev/null <<EOF
deb http://deb.debian.org/debian $suite main
deb http://deb.debian.org/debian $suite-updates main
deb $security $suite-security main
EOF
  # A Droplet boots with an empty machine-id that systemd fills in; the same here.
  as_root sh -c ": > '$rootfs/etc/machine-id'"
  as_root sh -c "echo 'en_US.UTF-8 UTF-8' > '$rootfs/etc/locale.gen'"
  as_root chroot "$rootfs" locale-gen >/dev/null 2>&1 || true
  as_root rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  as_root tar -C "$rootfs" -c . | docker import \
    --change 'CMD ["/lib/systemd/systemd"]' \
    --change 'ENV container=docker' \
    - "$IMAGE_REPO:$tag-$3" >/dev/null
}

for spec in $IMAGES; do
  suite=${spec%%:*}; tag=${spec##*:}
  hash=$(image_recipe "$suite" | sha256sum | cut -c1-12)
  if docker image inspect "$IMAGE_REPO:$tag-$hash" >/dev/null 2>&1; then
    log "image $IMAGE_REPO:$tag is current ($hash)"
  else
    if ! curl -fsS -o /dev/null "$MIRROR/dists/$suite/Release"; then
      if [ "$tag" = 12 ]; then die "the Debian mirror does not serve $suite"; fi
      log "the Debian mirror does not serve $suite: image $IMAGE_REPO:$tag skipped"
      continue
    fi
    log "building image $IMAGE_REPO:$tag ($suite, recipe $hash)"
    build_image "$suite" "$tag" "$hash"
  fi
  docker tag "$IMAGE_REPO:$tag-$hash" "$IMAGE_REPO:$tag"
done

# --- 4. Virtualenv ---------------------------------------------------------------------
req_hash=$(cat "$ROOT/requirements.txt" "$ROOT/requirements-test.txt" | sha256sum | cut -c1-16)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.bosun-requirements" 2>/dev/null)" = "$req_hash" ]; then
  log "virtualenv current"
else
  log "creating virtualenv $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  "$VENV/bin/pip" install -q -r "$ROOT/requirements-test.txt"
  echo "$req_hash" >"$VENV/.bosun-requirements"
fi

# --- 5. ansible-test's pip bootstrap, offline ------------------------------------------
# ansible-test downloads get-pip-<version>.py from a host this machine cannot reach. It
# only needs a script that installs the given packages with pip, so save one that does
# that with the interpreter's own ensurepip.
pip_version=$("$VENV/bin/python" - <<'EOF'
import inspect
from ansible_test._internal import python_requirements as pr
src = inspect.getsource(pr.get_venv_packages)
import re
print(re.search(r"pip='([^']+)'", src).group(1))
EOF
)
stand_in="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
if [ ! -f "$stand_in" ]; then
  mkdir -p "$(dirname "$stand_in")"
  cp "$ROOT/scripts/get_pip_offline.py" "$stand_in"
  log "installed ansible-test pip bootstrap stand-in for pip $pip_version"
fi

# --- 6. Elasticsearch distribution ------------------------------------------------------
# Fetched once with Maven by the test support's own helper (the integration tests and the
# elasticsearch scenario both take it from there), so no test downloads it.
es_zip=$(cd "$ROOT" && "$VENV/bin/python" -c \
  'from tests.support.elasticsearch import distribution_zip; print(distribution_zip())') \
  || die "could not fetch the Elasticsearch distribution with Maven"
log "Elasticsearch distribution present ($(basename "$es_zip"))"

# --- 7. promtool ---------------------------------------------------------------------------
# The alert rules' unit tests run promtool; it comes out of Debian's prometheus package,
# unpacked into .cache/tools (keyed by the package version), with no Prometheus service.
promtool=$(bash "$ROOT/scripts/install_promtool.sh" | tail -n 1) || die "could not install promtool"
log "promtool present ($promtool)"

log "ready"
