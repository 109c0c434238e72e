#!/usr/bin/env bash
# The test command: provides the real servers (scripts/testenv.sh), then format, lint, TLS
# backend, the whole test suite on real nats-server and kube-apiserver, and a short run of
# every fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(scripts/testenv.sh)"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== one TLS backend (ring): no aws-lc-rs, no openssl"
for crate in aws-lc-rs aws-lc-sys openssl-sys; do
  if cargo tree --workspace --locked -i "$crate" >/dev/null 2>&1; then
    echo "error: $crate is in the dependency graph"; exit 1
  fi
done
echo "== tests"
# Some tests run the binaries as a user would (fleetbus local-up starts fleetbus-hub and
# fleetbus-spoke next to itself), so every binary is built first.
cargo build --workspace --bins --locked
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast "$@"
else
  cargo test --workspace --locked --no-fail-fast "$@"
fi
# A few seconds per fuzz target (FUZZING.md), so that none can rot.
echo "== fuzz smoke (scripts/fuzz-smoke.sh)"
scripts/fuzz-smoke.sh
# Reached only when every test above passed (set -e); its failure fails the test command.
echo "== docker compose (scripts/compose-test.sh)"
scripts/compose-test.sh
