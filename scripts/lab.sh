#!/usr/bin/env bash
# The local lab: the platform's six hosts as systemd containers on a private Docker
# network, reached over SSH like Droplets (sshd in each, root with a generated key, as a
# fresh Droplet has). inventories/lab/ describes them.
#
#   scripts/lab.sh up      create or start the hosts (idempotent)
#   scripts/lab.sh main    the collection's main job on them: site.yml, a deploy of the
#                          example app, the health report, and the URL that answers
#   scripts/lab.sh down    remove them and their network
#   scripts/lab.sh status  list them
# `make lab` is `up` + `main` (after `make setup`); `make lab-down` is `down`.
#
# Another set of hosts beside the lab (the production rehearsal, tests/rehearsal) sets
# BOSUN_LAB_NAME, BOSUN_LAB_NET (the first three octets of its /24), BOSUN_LAB_HOSTS
# (name:last-octet ...) and BOSUN_LAB_STATE_DIR.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NAME=${BOSUN_LAB_NAME:-lab}
NET=${BOSUN_LAB_NET:-172.30.213}
NETWORK=bosun-$NAME
SUBNET=$NET.0/24
GATEWAY=$NET.1
IMAGE=${BOSUN_LAB_IMAGE:-bosun-platform/debian:12}
KEY_DIR=${BOSUN_LAB_STATE_DIR:-$ROOT/.cache/$NAME}
KEY="$KEY_DIR/id_ed25519"
# name:address — keep in step with inventories/lab/hosts.yml
HOSTS=""
for spec in ${BOSUN_LAB_HOSTS:-lb1:10 app1:21 app2:22 db1:31 cache1:41 search1:51}; do
  HOSTS="$HOSTS ${spec%%:*}:$NET.${spec##*:}"
done
HOSTS=${HOSTS# }

log() { printf '[%s %s] %s\n' "$NAME" "$(date -u +%H:%M:%S)" "$*"; }
die() { printf '[lab] ERROR: %s\n' "$*" >&2; exit 1; }

ssh_to() {  # ssh_to <address> <command...>
  local addr=$1; shift
  ssh -i "$KEY" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o ConnectTimeout=5 -o LogLevel=ERROR "root@$addr" "$@"
}

up() {
  docker image inspect "$IMAGE" >/dev/null 2>&1 || die "image $IMAGE is missing: run 'make setup' first"
  mkdir -p "$KEY_DIR"
  [ -f "$KEY" ] || ssh-keygen -q -t ed25519 -N '' -C bosun-lab -f "$KEY"
  if ! docker network inspect "$NETWORK" >/dev/null 2>&1; then
    log "creating network $NETWORK ($SUBNET)"
    docker network create --subnet "$SUBNET" --gateway "$GATEWAY" "$NETWORK" >/dev/null
  fi
  local spec name addr container
  for spec in $HOSTS; do
    name=${spec%%:*}; addr=${spec##*:}; container="$NETWORK-$name"
    if ! docker container inspect "$container" >/dev/null 2>&1; then
      log "creating $name ($addr)"
      docker run -d --name "$container" --hostname "$name" \
        --network "$NETWORK" --ip "$addr" \
        --cap-add SYS_ADMIN --cap-add NET_ADMIN --security-opt seccomp=unconfined \
        --cgroupns=host -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock \
        --label "bosun.lab=$NAME" "$IMAGE" >/dev/null
    elif [ "$(docker container inspect -f '{{.State.Running}}' "$container")" != true ]; then
      log "starting $name"
      docker start "$container" >/dev/null
    fi
  done
  for spec in $HOSTS; do
    name=${spec%%:*}; addr=${spec##*:}; container="$NETWORK-$name"
    # What a Droplet gets from its provider: root's authorized key. Plus, lab only: apt
    # through the archive cache of the test machine when it runs.
    docker exec "$container" sh -c 'for i in $(seq 1 60); do systemctl is-active -q ssh && exit 0; sleep 0.5; done; exit 1' \
      || die "sshd did not start on $name"
    docker exec -i "$container" sh -c 'install -d -m 700 /root/.ssh && cat > /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys' <"$KEY.pub"
    # Container-only: Debian's redis-server unit asks for PrivateUsers=true, which these
    # containers cannot set up. A Droplet needs none of this.
    docker exec "$container" sh -c 'mkdir -p /etc/systemd/system/redis-server.service.d &&
      printf "[Service]\nPrivateUsers=false\n" > /etc/systemd/system/redis-server.service.d/container.conf'
    if curl -fsS -o /dev/null --max-time 3 "http://127.0.0.1:3142/health"; then
      docker exec "$container" sed -i "s#http://deb.debian.org/#http://$GATEWAY:3142/#" /etc/apt/sources.list
    fi
    local i
    for i in $(seq 1 30); do
      ssh_to "$addr" true 2>/dev/null && break
      [ "$i" -lt 30 ] || die "cannot reach $name ($addr) over SSH"
      sleep 1
    done
  done
  # The search host installs Elastic's zip from the controller (fetched once into Maven's
  # local repository by `make setup`): its path and SHA-256 for inventories/lab, written on
  # every `up` so that a new version in the test support is never met with an old path.
  if [[ " $HOSTS" == *" search"* ]]; then
    if ! (cd "$ROOT" && python3 -c 'import hashlib, json, sys
from tests.support.elasticsearch import distribution_zip
path = distribution_zip()
with open(path, "rb") as f:
    digest = hashlib.file_digest(f, "sha256").hexdigest()
json.dump({"path": path, "sha256": digest}, sys.stdout)') >"$KEY_DIR/elasticsearch.json.new"; then
      die "cannot find Elasticsearch's zip for search1: run 'make setup' first"
    fi
    mv "$KEY_DIR/elasticsearch.json.new" "$KEY_DIR/elasticsearch.json"
  fi
  log "lab is up: $(echo "$HOSTS" | tr ' ' '\n' | sed 's/:/=/' | paste -sd' ')"
}

down() {
  local ids=()
  mapfile -t ids < <(docker ps -aq --filter "label=bosun.lab=$NAME")
  if [ "${#ids[@]}" -gt 0 ]; then
    log "removing the $NAME hosts"
    docker rm -f "${ids[@]}" >/dev/null
  fi
  if docker network inspect "$NETWORK" >/dev/null 2>&1; then
    docker network rm "$NETWORK" >/dev/null
  fi
  # Cached facts describe the removed hosts. Only the default lab runs with the project's
  # ansible.cfg and its fact cache; another lab (the rehearsal) has its own configuration
  # and must not empty the cache of a lab that may be running beside it.
  if [ "$NAME" = lab ]; then rm -rf "$ROOT/.cache/facts"; fi
  log "lab is down"
}

main() {
  local release=${BOSUN_LAB_RELEASE:-1.0.0} dist="$KEY_DIR/dist" lb=${HOSTS%% *}
  lb=${lb##*:}
  export ANSIBLE_CONFIG="$ROOT/ansible.cfg" ANSIBLE_COLLECTIONS_PATH="$ROOT/.cache/collections"
  cd "$ROOT"
  if [ ! -f "$dist/bosun-example-app-$release.tar.gz" ]; then
    log "building release $release of the example app"
    python3 examples/app/build.py --version "$release" --out "$dist" >/dev/null
  fi
  log "site.yml: provisioning every host"
  ansible-playbook playbooks/site.yml
  log "deploy.yml: release $release of the example app"
  ansible-playbook playbooks/deploy.yml -e "release=$release"
  log "health.yml: the status report"
  ansible-playbook playbooks/health.yml -e "bosun_health_report_text=$KEY_DIR/health.txt"
  log "the lab answers at https://$lb/ (Host: lab.bosun.test, a self-signed certificate):"
  log "  curl -k --resolve lab.bosun.test:443:$lb https://lab.bosun.test/version"
  curl -fsS -k --resolve "lab.bosun.test:443:$lb" "https://lab.bosun.test/version" && echo
}

status() {
  docker ps -a --filter "label=bosun.lab=$NAME" --format 'table {{.Names}}\t{{.Status}}'
}

case "${1:-}" in
  up) up ;;
  main) main ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|main|down|status" >&2; exit 2 ;;
esac
