#!/usr/bin/env bash
# `make soak` / `make soak-quick`: the pipeline under HTTP load and faults (SIGKILLs,
# a broker restart, a PostgreSQL restart) with no supervisor, then proof that nothing
# is lost (python -m bench.soak; its report ends the output).
#
# It restarts PostgreSQL and Kafka, so it runs its OWN instances, never the shared ones:
# state in ${CRM_SOAK_SERVICES_DIR:-var/soak/services}, PostgreSQL on
# ${CRM_SOAK_PG_PORT:-26432}, Kafka on ${CRM_SOAK_KAFKA_PORT:-27092} (controller
# ${CRM_SOAK_KAFKA_CONTROLLER_PORT:-27093}); the Kafka jars come from the usual cache.
# Both are stopped (by recorded pid) when the soak ends.
#
#   scripts/soak.sh [--quick]     ~11 minutes, or ~3 with --quick
set -euo pipefail
cd "$(dirname "$0")/.."
export CRM_SERVICES_DIR="${CRM_SOAK_SERVICES_DIR:-$PWD/var/soak/services}"
export CRM_PG_PORT="${CRM_SOAK_PG_PORT:-26432}"
export CRM_KAFKA_PORT="${CRM_SOAK_KAFKA_PORT:-27092}"
export CRM_KAFKA_CONTROLLER_PORT="${CRM_SOAK_KAFKA_CONTROLLER_PORT:-27093}"
export CRM_KAFKA_HOME="${CRM_KAFKA_HOME:-$PWD/var/kafka}"
unset CRM_DATABASE_URL CRM_KAFKA_BOOTSTRAP CRM_KAFKA_PROXIED_LISTENER
trap 'scripts/services.sh down >/dev/null || true' EXIT
scripts/services.sh up >/dev/null
# shellcheck disable=SC1091
source "$CRM_SERVICES_DIR/env"
export CRM_DATABASE_URL CRM_KAFKA_BOOTSTRAP
.venv/bin/python -m bench.soak "$@"
