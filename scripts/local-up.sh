#!/usr/bin/env bash
# The run command: provides nats-server, kube-apiserver and etcd (scripts/testenv.sh), builds
# fleetbus and starts a local hub with spokes for cluster1 and cluster2. Flags go to
# `fleetbus local-up` (for example --state-dir, --nats-port).
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/testenv.sh)"
cargo build --bins --locked
exec "${CARGO_TARGET_DIR:-target}/debug/fleetbus" local-up "$@"
