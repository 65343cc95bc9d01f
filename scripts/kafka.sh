#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft, combined broker+controller) on
# 127.0.0.1:29092 (controller 127.0.0.1:29093), from Maven Central jars. No Docker.
#
#   scripts/kafka.sh up            reuse $CRM_KAFKA_BOOTSTRAP if it answers an admin round
#                                  trip, else fetch jars (cached), format a FRESH data dir,
#                                  start the broker and wait until it is ready
#   scripts/kafka.sh down          stop only the broker that `up` started (by its pid)
#   scripts/kafka.sh status        exit 0 when up (ours or reused), 3 when down
#   scripts/kafka.sh stop-broker [--kill]
#                                  outage hook for tests: stop our broker (SIGTERM, or
#                                  SIGKILL with --kill) but KEEP its data dir and config
#   scripts/kafka.sh start-broker  restart that same broker on the same ports and data dir
#                                  (no re-format) and wait until it is ready
#   scripts/kafka.sh jars          only fetch the jars into $CRM_KAFKA_HOME/lib
#
# Environment: CRM_SERVICES_DIR (state, default <project>/var/services),
# CRM_KAFKA_HOME (jar cache, default <project>/var/kafka), CRM_KAFKA_PORT (29092),
# CRM_KAFKA_CONTROLLER_PORT (29093), CRM_KAFKA_READY_TIMEOUT (90 seconds),
# CRM_KAFKA_PROXIED_LISTENER (unset; PORT:ADVERTISED adds a listener on PORT whose
# clients are told to connect to ADVERTISED, where you run a TCP proxy: fault tests).
# See scripts/kafka/README.md.
set -euo pipefail
CRM_COMPONENT=kafka
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

KAFKA_VERSION=4.1.2
PORT="${CRM_KAFKA_PORT:-29092}"
CPORT="${CRM_KAFKA_CONTROLLER_PORT:-29093}"
BOOTSTRAP="127.0.0.1:$PORT"
READY_TIMEOUT="${CRM_KAFKA_READY_TIMEOUT:-90}"
PROXIED="${CRM_KAFKA_PROXIED_LISTENER:-}"
KAFKA_HOME="${CRM_KAFKA_HOME:-$CRM_ROOT/var/kafka}"
LIB="$KAFKA_HOME/lib"
CONF_DIR="$CRM_ROOT/scripts/kafka"
STATE="$CRM_SERVICES_DIR/kafka"
PIDFILE="$STATE/kafka.pid"
REUSED="$STATE/reused"
DATA="$STATE/data"
PROPS="$STATE/server.properties"
LOGFILE="$STATE/kafka.log"
PY="$CRM_ROOT/.venv/bin/python"
mkdir -p "$STATE"

# Admin round trip with kafka-python from the project venv. Prints the cluster id.
admin_check() {
  local bootstrap="$1"
  timeout 20 "$PY" - "$bootstrap" <<'PYEOF' 2>/dev/null
import sys
from kafka import KafkaAdminClient
admin = KafkaAdminClient(bootstrap_servers=sys.argv[1], client_id="crm-services-check",
                         request_timeout_ms=8000)
try:
    info = admin.describe_cluster()
finally:
    admin.close()
print(info.get("cluster_id"))
PYEOF
}

have_py() { [[ -x "$PY" ]] && "$PY" -c 'import kafka' >/dev/null 2>&1; }

# "Answers": admin round trip when the venv exists, else TCP connect only.
answers() {
  local bootstrap="$1"
  tcp_open "${bootstrap%:*}" "${bootstrap##*:}" || return 1
  if have_py; then admin_check "$bootstrap" >/dev/null; fi
}

ensure_tools() {
  command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1 && return 0
  log "java/mvn missing: installing openjdk-17-jre-headless and maven with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  run_or_die apt-get update
  run_or_die apt-get install -y --no-install-recommends openjdk-17-jdk-headless maven
}

jars_present() {
  [[ -f "$LIB/kafka_2.13-$KAFKA_VERSION.jar" && -f "$LIB/.complete" ]] \
    && compgen -G "$LIB/log4j-slf4j-impl-*.jar" >/dev/null
}

ensure_jars() {
  if jars_present; then return 0; fi
  ensure_tools
  local tmp="$KAFKA_HOME/lib.tmp.$$" mlog="$KAFKA_HOME/mvn.log" rc=0
  mkdir -p "$KAFKA_HOME"; rm -rf "$tmp"
  local cmd=(mvn -B -q -f "$CONF_DIR/pom.xml" dependency:copy-dependencies
             -DincludeScope=runtime "-DoutputDirectory=$tmp")
  log "fetching Kafka $KAFKA_VERSION jars from Maven Central into $LIB"
  "${cmd[@]}" >"$mlog" 2>&1 || rc=$?
  if (( rc != 0 )); then
    printf '\n[kafka] ERROR: Maven failed (exit %d):\n  %s\n' "$rc" "${cmd[*]}" >&2
    tail -n 40 "$mlog" >&2
    rm -rf "$tmp"; exit 1
  fi
  [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || { rm -rf "$tmp"; die "Maven ran but kafka_2.13-$KAFKA_VERSION.jar is missing" "$mlog"; }
  touch "$tmp/.complete"
  rm -rf "$LIB"; mv "$tmp" "$LIB"
  log "$(ls "$LIB"/*.jar | wc -l) jars, $(du -sh "$LIB" | cut -f1) in $LIB"
}

render_props() {
  sed -e "s|@PORT@|$PORT|g" -e "s|@CONTROLLER_PORT@|$CPORT|g" -e "s|@LOG_DIRS@|$DATA|g" \
      "$CONF_DIR/server.properties.template" >"$PROPS"
  [[ -n "$PROXIED" ]] || return 0
  # A second listener whose clients are told to connect to a proxy in front of it.
  sed -i -e "s|^listeners=.*|&,PROXIED://127.0.0.1:${PROXIED%%:*}|" \
         -e "s|^advertised.listeners=.*|&,PROXIED://127.0.0.1:${PROXIED##*:}|" \
         -e "s|^listener.security.protocol.map=.*|&,PROXIED:PLAINTEXT|" "$PROPS"
}

random_cluster_id() {  # URL-safe base64 of 16 random bytes, no padding: 22 chars
  local id
  while :; do  # not starting with '-', as Kafka's own ids: `-t -x...` reads as an option
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    [[ "$id" == -* ]] || break
  done
  printf '%s\n' "$id"
}

format_storage() {
  rm -rf "$DATA"
  local id rc=0
  id="$(random_cluster_id)"
  java -Xmx256m -Djava.awt.headless=true \
       "-Dlog4j2.configurationFile=$CONF_DIR/log4j2-tool.properties" \
       -cp "$LIB/*" kafka.tools.StorageTool format --standalone -t "$id" -c "$PROPS" \
       >"$STATE/format.log" 2>&1 || rc=$?
  (( rc == 0 )) || die "StorageTool format failed (exit $rc)" "$STATE/format.log"
  echo "$id" >"$STATE/cluster.id"
}

ports_free() {
  require_free_port "$PORT" CRM_KAFKA_PORT
  require_free_port "$CPORT" CRM_KAFKA_CONTROLLER_PORT
  [[ -z "$PROXIED" ]] || require_free_port "${PROXIED%%:*}" CRM_KAFKA_PROXIED_LISTENER
}

start_java() {
  {
    printf '\n===== %s: starting broker (kafka.sh) =====\n' "$(date -Is)"
  } >>"$LOGFILE"
  # setsid: own session, so the broker outlives this script and its terminal/process
  # group. The inner shell writes its own pid, then execs java (same pid).
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$PIDFILE" \
    java -Xms512m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
      "-Dlog4j2.configurationFile=$CONF_DIR/log4j2.properties" \
      -cp "$LIB/*" kafka.Kafka "$PROPS" \
      >>"$LOGFILE" 2>&1 </dev/null &
  local i
  for ((i = 0; i < 50; i++)); do [[ -s "$PIDFILE" ]] && break; sleep 0.1; done
  [[ -s "$PIDFILE" ]] || die "broker process did not start" "$LOGFILE"
}

wait_ready() {
  local pid start now tcp_ok=0 warned=0
  pid="$(read_pid "$PIDFILE")"
  start=$SECONDS
  while :; do
    if ! pid_alive "$pid"; then
      rm -f "$PIDFILE"
      # Taken between the check and the bind (a connection grabbed it): one line says so.
      tail -n 300 "$LOGFILE" | grep -q 'Address already in use' && ports_free
      die "broker process (pid $pid) exited during start-up" "$LOGFILE"
    fi
    if (( tcp_ok == 0 )) && tcp_open 127.0.0.1 "$PORT"; then tcp_ok=1; fi
    if (( tcp_ok == 1 )); then
      if have_py; then
        if admin_check "$BOOTSTRAP" >/dev/null; then break; fi
      else
        if (( warned == 0 )); then
          log "WARNING: $PY with kafka-python not found (run 'uv sync'): readiness checked by TCP connect only, no admin round trip"
          warned=1
        fi
        break
      fi
    fi
    now=$SECONDS
    if (( now - start >= READY_TIMEOUT )); then
      stop_pid "$pid" broker; rm -f "$PIDFILE"
      die "broker (pid $pid) not ready on $BOOTSTRAP after ${READY_TIMEOUT}s (tcp_ok=$tcp_ok)" "$LOGFILE"
    fi
    sleep 0.5
  done
  log "ready on $BOOTSTRAP (pid $pid) after $((SECONDS - start))s"
}

cmd_up() {
  local pid
  pid="$(read_pid "$PIDFILE")"
  if pid_alive "$pid"; then
    if answers "$BOOTSTRAP"; then
      log "already up (pid $pid) at $BOOTSTRAP"
      set_env_line CRM_KAFKA_BOOTSTRAP "$BOOTSTRAP"; return 0
    fi
    log "our broker (pid $pid) is alive but not answering yet: waiting"
    wait_ready
    set_env_line CRM_KAFKA_BOOTSTRAP "$BOOTSTRAP"; return 0
  fi
  rm -f "$PIDFILE"
  if [[ -n "${CRM_KAFKA_BOOTSTRAP:-}" ]]; then
    if answers "$CRM_KAFKA_BOOTSTRAP"; then
      log "reusing CRM_KAFKA_BOOTSTRAP=$CRM_KAFKA_BOOTSTRAP (answers); starting nothing"
      touch "$REUSED"; set_env_line CRM_KAFKA_BOOTSTRAP "$CRM_KAFKA_BOOTSTRAP"; return 0
    fi
    log "CRM_KAFKA_BOOTSTRAP=$CRM_KAFKA_BOOTSTRAP is set but does not answer: starting our own broker instead"
  fi
  rm -f "$REUSED"
  ports_free
  ensure_jars
  render_props
  format_storage
  : >"$LOGFILE"
  log "starting broker on $BOOTSTRAP (controller 127.0.0.1:$CPORT, data $DATA, log $LOGFILE)"
  start_java
  wait_ready
  set_env_line CRM_KAFKA_BOOTSTRAP "$BOOTSTRAP"
}

cmd_stop_broker() {
  local pid sig="${1:-}"
  pid="$(read_pid "$PIDFILE")"
  [[ -n "$pid" ]] || die "no broker started by scripts/kafka.sh (no $PIDFILE)"
  if pid_alive "$pid"; then
    if [[ "$sig" == --kill ]]; then
      log "killing broker (pid $pid, SIGKILL)"; kill -KILL "$pid" 2>/dev/null || true
      local i; for ((i = 0; i < 100; i++)); do pid_alive "$pid" || break; sleep 0.1; done
    else
      stop_pid "$pid" broker
    fi
  fi
  # keep data dir, config and an explicit marker so start-broker can restart it
  rm -f "$PIDFILE"; touch "$STATE/stopped"
  log "broker stopped; data kept in $DATA (scripts/kafka.sh start-broker restarts it)"
}

cmd_start_broker() {
  local pid
  pid="$(read_pid "$PIDFILE")"
  if pid_alive "$pid"; then log "broker already running (pid $pid)"; wait_ready; return 0; fi
  [[ -f "$PROPS" && -f "$DATA/meta.properties" ]] \
    || die "no formatted broker to restart (missing $PROPS or $DATA/meta.properties); run scripts/kafka.sh up"
  jars_present || die "jars missing in $LIB; run scripts/kafka.sh up"
  ports_free
  log "restarting broker on $BOOTSTRAP with existing data $DATA"
  start_java
  wait_ready
  rm -f "$STATE/stopped"
}

cmd_down() {
  local pid
  pid="$(read_pid "$PIDFILE")"
  if [[ -z "$pid" ]]; then
    if [[ -f "$REUSED" ]]; then log "was reused from CRM_KAFKA_BOOTSTRAP: nothing to stop"; rm -f "$REUSED"
    else log "not started by us: nothing to stop"; fi
  else
    stop_pid "$pid" broker
  fi
  rm -f "$PIDFILE" "$STATE/stopped"
  set_env_line_remove CRM_KAFKA_BOOTSTRAP
  log "down"
}

cmd_status() {
  local pid
  pid="$(read_pid "$PIDFILE")"
  if pid_alive "$pid"; then
    if answers "$BOOTSTRAP"; then echo "kafka: up (pid $pid) $BOOTSTRAP"; return 0; fi
    echo "kafka: pid $pid alive but $BOOTSTRAP not answering"; return 3
  fi
  if [[ -f "$REUSED" ]]; then
    local b; b="$(sed -n 's/^export CRM_KAFKA_BOOTSTRAP=//p' "$CRM_SERVICES_DIR/env" 2>/dev/null || true)"
    echo "kafka: reused (external) $b"; return 0
  fi
  if [[ -f "$STATE/stopped" ]]; then echo "kafka: stopped by stop-broker (start-broker restarts it)"; return 3; fi
  echo "kafka: down"; return 3
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  stop-broker) cmd_stop_broker "${2:-}" ;;
  start-broker) cmd_start_broker ;;
  jars) ensure_jars ;;
  *) echo "usage: $0 up|down|status|stop-broker [--kill]|start-broker|jars" >&2; exit 2 ;;
esac
