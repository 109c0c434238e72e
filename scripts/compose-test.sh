#!/usr/bin/env bash
# Runs docker-compose.yml for real, without any registry: builds a fleetbus image (the repo's
# Dockerfile, target `prebuilt`, from the debug binaries of the test run), a nats stand-in from
# the test ground's static nats-server, and a cluster image (etcd + kube-apiserver) in place of
# k3s; then drives the seed's example through the compose project and tears everything down.
# Needs root (or sudo) for apt-get and dockerd. Ends with "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
CACHE=${FLEETBUS_CACHE:-$HOME/.cache/fleetbus}
BIN=${CARGO_TARGET_DIR:-target}/debug
WORK=$CACHE/docker
PROJECT=fleetbus-compose-test
# The one compose command line (this project, the repo's file, the images built below).
COMPOSE="docker-compose -p $PROJECT -f $REPO/docker-compose.yml --env-file $WORK/compose.env"
passed=0 failed=0

say() { printf 'compose-test: %s\n' "$*"; }
die() { printf 'compose-test: error: %s\n' "$*" >&2; exit 1; }
check() { # check NAME COMMAND...
  local name=$1; shift
  if "$@" >"$WORK/check.out" 2>&1; then passed=$((passed + 1)); say "ok: $name"
  else failed=$((failed + 1)); say "FAIL: $name"; sed 's/^/    /' "$WORK/check.out" | tail -20; fi
}
eventually() { # eventually SECONDS COMMAND...
  local until=$((SECONDS + $1)); shift
  until "$@"; do [ $SECONDS -lt $until ] || return 1; sleep 1; done
}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

[ -x "$BIN/fleetbus" ] || die "no fleetbus binaries in $BIN (run cargo build --bins first)"
: "${FLEETBUS_NATS_SERVER:?run eval \"\$(scripts/testenv.sh)\" first}" "${FLEETBUS_KUBE_BIN:?}" "${FLEETBUS_ETCD:?}"

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v docker-compose >/dev/null || missing+=(docker-compose)
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi

mkdir -p "$WORK"
# The README's session writes .fleetbus/compose/; a developer's own is put back at the end.
rm -rf "$WORK/own-compose-dir"
[ ! -d "$REPO/.fleetbus/compose" ] || mv "$REPO/.fleetbus/compose" "$WORK/own-compose-dir"
dockerd_pid=""
# dockerd turns on IP forwarding host-wide; put back what the machine had.
ip_forward=$(cat /proc/sys/net/ipv4/ip_forward 2>/dev/null || echo "")
cleanup() {
  set +e
  if [ -n "${DOCKER_HOST:-}" ] && [ -f "$WORK/compose.env" ]; then
    $COMPOSE down -v --remove-orphans >/dev/null 2>&1
    docker rmi -f fleetbus-test/fleetbus:local fleetbus-test/base:local fleetbus-test/nats:local fleetbus-test/cluster:local >/dev/null 2>&1
  fi
  if [ -n "$dockerd_pid" ]; then
    kill "$dockerd_pid" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 1; done
    [ -n "$ip_forward" ] && echo "$ip_forward" >/proc/sys/net/ipv4/ip_forward
  fi
  rm -rf "$WORK/rootfs" "$WORK/ctx" "$REPO/.fleetbus/compose"
  [ ! -d "$WORK/own-compose-dir" ] || mv "$WORK/own-compose-dir" "$REPO/.fleetbus/compose"
}
trap cleanup EXIT

if docker info >/dev/null 2>&1; then
  say "using the running Docker engine"
else
  say "starting dockerd (data in $WORK)"
  export DOCKER_HOST=unix://$WORK/docker.sock
  [ "$(id -u)" = 0 ] || die "dockerd must be started as root (or start a Docker engine first)"
  dockerd --data-root "$WORK/root" --exec-root "$WORK/exec" --pidfile "$WORK/dockerd.pid" \
    -H "$DOCKER_HOST" --bridge=none --default-address-pool base=10.213.0.0/16,size=24 \
    >"$WORK/dockerd.log" 2>&1 &
  dockerd_pid=$!
  eventually 60 docker info >/dev/null 2>&1 \
    || die "the Docker engine did not start; see $WORK/dockerd.log"
fi
export DOCKER_HOST=${DOCKER_HOST:-unix:///var/run/docker.sock}

# A root filesystem of the given binaries, the libraries ldd names and busybox as /bin/sh.
rootfs() { # rootfs DIR BINDIR BINARY...
  local dir=$1 bindir=$2; shift 2
  rm -rf "$dir"; mkdir -p "$dir/bin" "$dir/$bindir" "$dir/etc" "$dir/tmp" "$dir/root"
  chmod 1777 "$dir/tmp"
  cp /bin/busybox "$dir/bin/busybox"
  for applet in $(/bin/busybox --list); do [ "$applet" = busybox ] || ln -sf busybox "$dir/bin/$applet"; done
  for b in "$@"; do
    cp "$b" "$dir/$bindir/"
    { ldd "$b" 2>/dev/null || true; } | { grep -o '/[^ ]*' || true; } | while read -r lib; do
      mkdir -p "$dir$(dirname "$lib")"; cp -L "$lib" "$dir$lib"
    done
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nfleetbus:x:10001:10001::/var/lib/fleetbus:/bin/sh\n' >"$dir/etc/passwd"
  printf 'root:x:0:\nfleetbus:x:10001:\n' >"$dir/etc/group"
}
import() { # import DIR IMAGE CHANGE...
  local dir=$1 image=$2; shift 2
  local changes=(--change 'ENV PATH=/usr/local/bin:/usr/bin:/bin')
  for c in "$@"; do changes+=(--change "$c"); done
  tar -C "$dir" --numeric-owner -c . | docker import "${changes[@]}" - "$image" >/dev/null
}

t0=$SECONDS
say "building images"
rootfs "$WORK/rootfs" usr/lib/fleetbus-ldd "$BIN/fleetbus" "$BIN/fleetbus-hub" "$BIN/fleetbus-spoke"
rm -rf "$WORK/rootfs/usr/lib/fleetbus-ldd"
import "$WORK/rootfs" fleetbus-test/base:local
rm -rf "$WORK/ctx"; mkdir -p "$WORK/ctx/bin"
cp "$BIN/fleetbus" "$BIN/fleetbus-hub" "$BIN/fleetbus-spoke" "$WORK/ctx/bin/"
DOCKER_BUILDKIT=0 docker build -q --network none -f "$REPO/Dockerfile" --target prebuilt \
  --build-arg RUNTIME_BASE=fleetbus-test/base:local -t fleetbus-test/fleetbus:local "$WORK/ctx" >/dev/null

rootfs "$WORK/rootfs" usr/local/bin "$FLEETBUS_NATS_SERVER"
import "$WORK/rootfs" fleetbus-test/nats:local 'WORKDIR /etc/nats'

rootfs "$WORK/rootfs" usr/local/bin "$FLEETBUS_ETCD" "$(readlink -f "$(command -v kubectl)")" \
  "$FLEETBUS_KUBE_BIN"/{kube-apiserver,kube-controller-manager,kube-scheduler}
c=$WORK/rootfs/etc/cluster; mkdir -p "$c"
cp cli/src/local/demo.yaml "$c/demo.yaml"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=cluster-ca -keyout "$c/ca.key" -out "$c/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver -keyout "$c/apiserver.key" -out "$c/apiserver.csr" 2>/dev/null
printf 'subjectAltName=DNS:k3s-1,DNS:k3s-2,DNS:localhost,DNS:kubernetes.default.svc,IP:127.0.0.1\n' >"$c/san.ext"
openssl x509 -req -in "$c/apiserver.csr" -CA "$c/ca.crt" -CAkey "$c/ca.key" -CAcreateserial -days 2 \
  -extfile "$c/san.ext" -out "$c/apiserver.crt" 2>/dev/null
openssl genrsa -out "$c/sa.key" 2048 2>/dev/null
openssl rsa -in "$c/sa.key" -pubout -out "$c/sa.pub" 2>/dev/null
token=$(openssl rand -hex 16)
echo "$token,admin,admin-uid,system:masters" >"$c/tokens.csv"
cat >"$c/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority-data: $(base64 -w0 "$c/ca.crt")
users:
- name: admin
  user:
    token: $token
contexts:
- name: local
  context: {cluster: local, user: admin}
current-context: local
KC
rm -f "$c/ca.key" "$c/apiserver.csr" "$c/san.ext"
cp scripts/compose/cluster-entrypoint.sh "$WORK/rootfs/usr/local/bin/cluster-entrypoint"
import "$WORK/rootfs" fleetbus-test/cluster:local 'ENTRYPOINT ["/usr/local/bin/cluster-entrypoint"]'
build_s=$((SECONDS - t0))

cat >"$WORK/compose.env" <<ENV
FLEETBUS_IMAGE=fleetbus-test/fleetbus:local
FLEETBUS_NATS_IMAGE=fleetbus-test/nats:local
FLEETBUS_CLUSTER_IMAGE=fleetbus-test/cluster:local
FLEETBUS_CLUSTER_PRIVILEGED=false
ENV
# shellcheck disable=SC2086 # COMPOSE is a command with its arguments
dc() { $COMPOSE "$@"; }
hub() { dc exec -T hub fleetbus "$@"; }
clusters_are() { # clusters_are WORD: both clusters' lines contain WORD
  local out; out=$(hub get clusters 2>/dev/null) || return 1
  echo "$out" | grep -E '^cluster1 .*'"$1" >/dev/null && echo "$out" | grep -E '^cluster2 .*'"$1" >/dev/null
}

# The README's compose session, line for line, in a shell whose `docker compose` is this
# project's docker-compose (images built above, so --build becomes --no-build; no TTY for exec).
session=$(awk '/^### With Docker Compose/ {s = 1} s && /^```console/ {c = 1; next} c && /^```/ {exit} c' README.md | sed 's/^\$ //')
[ -n "$session" ] || die "no console session under \"### With Docker Compose\" in README.md"
up_part=${session%%docker compose exec hub fleetbus accept*}
rest_part=${session#"$up_part"}
readme_shell() { # readme_shell SCRIPT: runs it with the docker shim, output in $WORK/session.out
  COMPOSE=$COMPOSE bash -c '
    docker() {
      if [ "${1:-}" != compose ]; then command docker "$@"; return; fi
      shift
      local a args=()
      for a in "$@"; do case $a in --build) args+=(--no-build) ;; *) args+=("$a") ;; esac; done
      [ "${args[0]}" != exec ] || args=(exec -T "${args[@]:1}")
      $COMPOSE "${args[@]}"
    }
    export CARGO_TARGET_DIR='"${CARGO_TARGET_DIR:-$REPO/target}"'
    '"$1" >>"$WORK/session.out" 2>&1
}
: >"$WORK/session.out"

t0=$SECONDS
say "the README's session: docker compose up"
check "README: up and get clusters" readme_shell "set -e; $up_part"
check "both spokes ask to join (pending)" eventually 120 clusters_are pending
start_s=$((SECONDS - t0))

t0=$SECONDS
say "the README's session: accept, the seed's example"
readme_shell "$rest_part" && status=0 || status=$?
session_says() { grep -q -- "$1" "$WORK/session.out" || { echo "not in the session's output: $1"; cat "$WORK/session.out"; return 1; }; }
check "README: accept cluster1 cluster2" session_says "cluster cluster2 accepted"
check "README: msa dep" session_says "managedserviceaccount dep created on cluster cluster1"
check "README: work dep-role applied" session_says "manifestwork dep-role applied on cluster cluster1"
check "README: work dep-rolebinding applied" session_says "manifestwork dep-rolebinding applied on cluster cluster1"
check "README: get deployments -A lists demo/hello" grep -Eq '^demo +hello ' "$WORK/session.out"
check "README: get pods -A prints the apiserver's Forbidden and fails" sh -c "[ $status != 0 ] && grep -q 'Error from server (Forbidden): pods is forbidden: User \"system:serviceaccount:open-cluster-management-managed-serviceaccount:dep\" cannot list resource \"pods\"' '$WORK/session.out'"
check "both clusters Available" eventually 90 clusters_are 'true +True'

# The host's CLI, as the README's env file set it up.
# shellcheck disable=SC1091
. "$REPO/.fleetbus/compose/env.sh"
tunnel() { fleetbus proxy kubectl --cluster cluster1 --sa dep -- get deployments -A; }
works_applied() { local out; out=$(fleetbus get work) && echo "$out" | grep -Eq '^dep-role +cluster1 +1 +True' && echo "$out" | grep -Eq '^dep-rolebinding +cluster1 +1 +True'; }

ip_of() { docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "$(dc ps -q "$1")"; }
cannot_reach() { ! dc exec -T hub timeout 5 nc -w 3 "$1" 6443 </dev/null; }
can_reach() { dc exec -T "$1" timeout 5 nc -w 3 "$2" 6443 </dev/null; }
for n in 1 2; do
  ip=$(ip_of "k3s-$n" | tr -d ' ')
  check "spoke-$n reaches its apiserver ($ip:6443)" can_reach "spoke-$n" "$ip"
  check "the hub cannot open a TCP connection to k3s-$n ($ip:6443)" cannot_reach "$ip"
done

# Certificates and nats-auth.conf (the auth callout's public nkeys) are public by design.
modes_ok() { # nothing else readable by others in any volume
  local bad
  bad=$(dc exec -T hub sh -c 'find /pki -type f -perm -004 ! -name "*.crt" ! -name nats-auth.conf'
    for n in 1 2; do
      dc exec -T "spoke-$n" sh -c 'find /bootstrap/ /kube/ /var/lib/fleetbus-spoke -type f -perm -004 ! -name "*.crt"'
    done)
  [ -z "$bad" ] || { echo "world-readable: $bad"; return 1; }
}
check "no key, token or kubeconfig world-readable in any volume" modes_ok

say "faults and restarts"
dc stop nats >/dev/null 2>&1
sleep 10
dc start nats >/dev/null 2>&1
check "nats stopped for 10 s: both clusters Available again" eventually 90 clusters_are 'true +True'
check "nats stopped for 10 s: the works are still applied" eventually 30 works_applied
check "nats stopped for 10 s: the tunnel works" eventually 30 tunnel
dc up -d --no-build >"$WORK/up.log" 2>&1
check "a second up keeps the accepted clusters" eventually 60 clusters_are 'true +True'
dc restart spoke-1 >/dev/null 2>&1
check "a restarted spoke rejoins with its identity (no pending)" eventually 60 clusters_are 'true +True'
check "and the tunnel works again" eventually 30 tunnel

no_engine() { # no_engine DOCKER_HOST PATH EXPECTED: compose-env.sh fails with one clear line
  local out
  out=$(DOCKER_HOST=$1 PATH=$2 COMPOSE='' "$REPO/scripts/compose-env.sh" 2>&1) && { echo "succeeded: $out"; return 1; }
  echo "$out"
  [ "$(echo "$out" | wc -l)" = 1 ] && echo "$out" | grep -q "$3"
}
nodocker=$WORK/no-docker-bin
mkdir -p "$nodocker"
for tool in bash dirname; do ln -sf "$(command -v $tool)" "$nodocker/$tool"; done
check "compose-env.sh without docker says so" no_engine "$DOCKER_HOST" "$nodocker" "docker is not installed"
check "compose-env.sh without an engine says so" no_engine unix://$WORK/none.sock "$PATH" "the Docker engine is not running"
scenario_s=$((SECONDS - t0))

say "docker-compose down -v"
dc down -v --remove-orphans >/dev/null 2>&1 && rm -f "$WORK/compose.env"
say "build ${build_s}s, start ${start_s}s (up to both spokes pending), scenario ${scenario_s}s"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
