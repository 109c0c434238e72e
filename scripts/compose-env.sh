#!/usr/bin/env bash
# Copies the admin identity out of a running compose project into .fleetbus/compose/ and writes
# .fleetbus/compose/env.sh, so the host's CLI reaches the hub through nats on localhost:4222:
#   scripts/compose-env.sh && source .fleetbus/compose/env.sh && fleetbus get clusters
# COMPOSE overrides the compose command (default: `docker compose`, else `docker-compose`).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${FLEETBUS_COMPOSE_DIR:-$PWD/.fleetbus/compose}
if [ -z "${COMPOSE:-}" ]; then
  if docker compose version >/dev/null 2>&1; then COMPOSE="docker compose"; else COMPOSE=docker-compose; fi
fi
umask 077
mkdir -p "$DIR/pki/users"
for f in ca.crt users/admin.crt users/admin.key; do
  # shellcheck disable=SC2086 # COMPOSE is a command with its arguments
  $COMPOSE exec -T hub cat "/pki/$f" >"$DIR/pki/$f" \
    || { echo "compose-env: cannot read /pki/$f from the hub service (is the project up?)" >&2; exit 1; }
done
cat >"$DIR/env.sh" <<ENV
export FLEETBUS_NATS_URL=tls://localhost:4222
export FLEETBUS_CA=$DIR/pki/ca.crt
export FLEETBUS_CERT=$DIR/pki/users/admin.crt
export FLEETBUS_KEY=$DIR/pki/users/admin.key
ENV
echo "source $DIR/env.sh"
