#!/usr/bin/env bash
# Copies the admin identity out of a running compose project into .fleetbus/compose/ and writes
# .fleetbus/compose/env.sh, so the host's CLI reaches the hub through nats on localhost:4222:
#   scripts/compose-env.sh && source .fleetbus/compose/env.sh && fleetbus get clusters
# env.sh also puts the CLI built in this repository on PATH (cargo build --release --bins).
# COMPOSE overrides the compose command (default: `docker compose`, else `docker-compose`).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${FLEETBUS_COMPOSE_DIR:-$PWD/.fleetbus/compose}
fail() { echo "compose-env: $*" >&2; exit 1; }

if [ -z "${COMPOSE:-}" ]; then
  command -v docker >/dev/null \
    || fail "docker is not installed: install Docker Engine and its compose plugin, then docker compose up -d"
  docker info >/dev/null 2>&1 \
    || fail "the Docker engine is not running (docker info failed${DOCKER_HOST:+ for DOCKER_HOST=$DOCKER_HOST}): start it (e.g. sudo systemctl start docker), then docker compose up -d"
  if docker compose version >/dev/null 2>&1; then COMPOSE="docker compose"; else COMPOSE=docker-compose; fi
fi

bin=""  # the newer of the release and debug builds of this repository
for d in "${CARGO_TARGET_DIR:-$PWD/target}/release" "${CARGO_TARGET_DIR:-$PWD/target}/debug"; do
  if [ -x "$d/fleetbus" ] && { [ -z "$bin" ] || [ "$d/fleetbus" -nt "$bin/fleetbus" ]; }; then bin=$d; fi
done
if [ -z "$bin" ] && ! command -v fleetbus >/dev/null; then
  fail "no fleetbus CLI on this host: build it first (cargo build --release --bins)"
fi

umask 077
mkdir -p "$DIR/pki/users"
for f in ca.crt users/admin.crt users/admin.key; do
  # shellcheck disable=SC2086 # COMPOSE is a command with its arguments
  $COMPOSE exec -T hub cat "/pki/$f" >"$DIR/pki/$f" \
    || fail "cannot read /pki/$f from the hub service (is the project up? docker compose ps)"
done
{
  echo "export FLEETBUS_NATS_URL=tls://localhost:4222"
  echo "export FLEETBUS_CA=$DIR/pki/ca.crt"
  echo "export FLEETBUS_CERT=$DIR/pki/users/admin.crt"
  echo "export FLEETBUS_KEY=$DIR/pki/users/admin.key"
  [ -z "$bin" ] || echo "export PATH=\"$bin:\$PATH\""
} >"$DIR/env.sh"
echo "source $DIR/env.sh"
