#!/usr/bin/env bash
# Real PostgreSQL + real single-node Kafka (KRaft) on 127.0.0.1 for tests, benchmarks, CI.
#
#   scripts/services.sh up      start (or reuse) both; writes $CRM_SERVICES_DIR/env
#   scripts/services.sh down    stop only what `up` started (by recorded pid)
#   scripts/services.sh status  one line per service; exit 0 when both are up, else 3
#   scripts/services.sh env     print $CRM_SERVICES_DIR/env (the export lines)
#
# Use:  scripts/services.sh up && source var/services/env
# State: ${CRM_SERVICES_DIR:-<project>/var/services}; Kafka jar cache:
# ${CRM_KAFKA_HOME:-<project>/var/kafka}. Details: scripts/postgres.sh, scripts/kafka.sh,
# scripts/kafka/README.md.
set -euo pipefail
CRM_COMPONENT=services
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
HERE="$CRM_ROOT/scripts"

cmd_up() {
  local kpid prc=0 krc=0 start=$SECONDS
  # Start both in parallel (the Kafka jar fetch/JVM start dominates).
  "$HERE/kafka.sh" up &
  kpid=$!
  "$HERE/postgres.sh" up || prc=$?
  wait "$kpid" || krc=$?
  if (( prc != 0 || krc != 0 )); then
    printf '\n[services] ERROR: up failed: postgres exit %d, kafka exit %d (details above)\n' "$prc" "$krc" >&2
    exit 1
  fi
  log "up in $((SECONDS - start))s; environment in $CRM_SERVICES_DIR/env:"
  cat "$CRM_SERVICES_DIR/env"
}

cmd_down() {
  local rc=0
  "$HERE/kafka.sh" down || rc=1
  "$HERE/postgres.sh" down || rc=1
  exit "$rc"
}

cmd_status() {
  local rc=0
  "$HERE/postgres.sh" status || rc=3
  "$HERE/kafka.sh" status || rc=3
  exit "$rc"
}

cmd_env() {
  if [[ -f "$CRM_SERVICES_DIR/env" ]]; then cat "$CRM_SERVICES_DIR/env"
  else echo "[services] no $CRM_SERVICES_DIR/env: run scripts/services.sh up" >&2; exit 3; fi
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
