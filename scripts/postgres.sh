#!/usr/bin/env bash
# PostgreSQL for tests, benchmarks and CI: our OWN cluster on 127.0.0.1:25432.
#
#   scripts/postgres.sh up       reuse $CRM_DATABASE_URL if it answers, else start our cluster
#   scripts/postgres.sh down     stop only the postmaster that `up` started (by its pid)
#   scripts/postgres.sh status   exit 0 when up (ours or reused), 3 when down
#   scripts/postgres.sh destroy  down + delete our cluster's data directory
#
# Our cluster: Debian's postgresql binaries (/usr/lib/postgresql/<ver>/bin, apt-get
# installed when missing), initdb'd and run as the `postgres` OS user (postgres refuses
# to run as root). Its data lives in $CRM_SERVICES_DIR/postgres/cluster when the postgres
# user can reach and write that path, otherwise in /tmp/crm-pg-<hash of services dir>.
# The chosen place is recorded in $CRM_SERVICES_DIR/postgres/root. The cluster is kept
# across down/up (fast warm start); `destroy` removes it. The Debian default cluster
# (port 5432) is never touched.
set -euo pipefail
CRM_COMPONENT=postgres
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

PG_PORT="${CRM_PG_PORT:-25432}"
PG_URL="postgresql://crm:crm@127.0.0.1:${PG_PORT}/crm"
STATE="$CRM_SERVICES_DIR/postgres"
PIDFILE="$STATE/postgres.pid"
REUSED="$STATE/reused"
mkdir -p "$STATE"

pg_bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [[ -x "$d/initdb" && -x "$d/pg_ctl" ]]; then echo "$d"; return 0; fi
  done
  return 1
}

ensure_binaries() {
  if PGBIN="$(pg_bindir)"; then return 0; fi
  log "initdb/pg_ctl not found under /usr/lib/postgresql/*/bin: installing Debian's postgresql"
  export DEBIAN_FRONTEND=noninteractive
  run_or_die apt-get update
  run_or_die apt-get install -y --no-install-recommends postgresql postgresql-client
  PGBIN="$(pg_bindir)" || die "apt-get installed postgresql but no initdb/pg_ctl under /usr/lib/postgresql/*/bin"
}

as_pg() { (cd / && runuser -u postgres -- "$@"); }

# Decide where the cluster lives; sets PGROOT, PGDATA, PGSOCK, PGLOG.
choose_root() {
  if [[ -f "$STATE/root" ]]; then
    PGROOT="$(cat "$STATE/root")"
  else
    PGROOT="$STATE/cluster"
    mkdir -p "$PGROOT"
    chown postgres:postgres "$PGROOT"
    # Long socket paths (> ~100 bytes) are rejected by the kernel; unreachable paths
    # (a parent without o+x) are rejected by initdb: fall back to /tmp then.
    if ! as_pg test -w "$PGROOT" || (( ${#PGROOT} > 80 )); then
      rmdir "$PGROOT" 2>/dev/null || true
      PGROOT="/tmp/crm-pg-$(printf '%s' "$CRM_SERVICES_DIR" | sha256sum | cut -c1-12)"
    fi
    echo "$PGROOT" >"$STATE/root"
  fi
  mkdir -p "$PGROOT/run"
  chown postgres:postgres "$PGROOT" "$PGROOT/run"
  PGDATA="$PGROOT/data"
  PGSOCK="$PGROOT/run"
  PGLOG="$PGROOT/postgres.log"
}

load_root() {
  if [[ -f "$STATE/root" ]]; then
    PGROOT="$(cat "$STATE/root")"; PGDATA="$PGROOT/data"; PGSOCK="$PGROOT/run"; PGLOG="$PGROOT/postgres.log"
  else
    PGROOT=""; PGDATA=""; PGSOCK=""; PGLOG=""
  fi
}

url_works() { PGCONNECT_TIMEOUT=5 psql "$1" -X -q -t -c 'select 1' >/dev/null 2>&1; }

write_env() { set_env_line CRM_DATABASE_URL "$1"; }

init_cluster() {
  local ver
  ver="$(basename "$(dirname "$PGBIN")")"
  if [[ -f "$PGDATA/PG_VERSION" && "$(cat "$PGDATA/PG_VERSION")" != "$ver" ]]; then
    log "cluster in $PGDATA is version $(cat "$PGDATA/PG_VERSION"), binaries are $ver: re-creating it"
    rm -rf "$PGDATA"
  fi
  [[ -f "$PGDATA/PG_VERSION" ]] && return 0
  log "initdb $PGDATA (PostgreSQL $ver)"
  rm -rf "$PGDATA"
  local out rc=0
  out="$(as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres -E UTF8 --locale=C \
           --auth-local=peer --auth-host=scram-sha-256 2>&1)" || rc=$?
  if (( rc != 0 )); then
    printf '%s\n' "$out" >&2
    die "initdb -D $PGDATA failed (exit $rc)"
  fi
  cat >>"$PGDATA/postgresql.conf" <<CONF

# ---- CRM Collab test cluster (scripts/postgres.sh) ----
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PGSOCK'
max_connections = 200
shared_buffers = 256MB
effective_cache_size = 1GB
work_mem = 8MB
maintenance_work_mem = 128MB
fsync = on
synchronous_commit = on
full_page_writes = on
wal_buffers = 16MB
max_wal_size = 2GB
checkpoint_completion_target = 0.9
max_worker_processes = 4
max_parallel_workers = 2
max_parallel_workers_per_gather = 1
log_line_prefix = '%m [%p] %q%u@%d '
log_min_duration_statement = -1
CONF
  cat >"$PGDATA/pg_hba.conf" <<HBA
# CRM Collab test cluster: unix socket for the postgres OS user, passwords over TCP.
local   all   all                     peer
host    all   all   127.0.0.1/32      scram-sha-256
HBA
  chown postgres:postgres "$PGDATA/postgresql.conf" "$PGDATA/pg_hba.conf"
}

create_role_db() {
  local psql=(as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGSOCK" -p "$PG_PORT" -U postgres -d postgres)
  local out rc=0
  out="$("${psql[@]}" -c "DO \$\$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'crm') THEN
        CREATE ROLE crm LOGIN CREATEDB CREATEROLE PASSWORD 'crm';
      ELSE
        ALTER ROLE crm LOGIN CREATEDB CREATEROLE PASSWORD 'crm';
      END IF;
      IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pg_checkpoint') THEN
        GRANT pg_checkpoint TO crm;
      END IF; END \$\$;" 2>&1)" || rc=$?
  (( rc == 0 )) || { printf '%s\n' "$out" >&2; die "could not create role crm" "$PGLOG"; }
  if [[ "$("${psql[@]}" -tA -c "SELECT 1 FROM pg_database WHERE datname = 'crm'")" != 1 ]]; then
    out="$("${psql[@]}" -c "CREATE DATABASE crm OWNER crm" 2>&1)" || rc=$?
    (( rc == 0 )) || { printf '%s\n' "$out" >&2; die "could not create database crm" "$PGLOG"; }
  fi
}

cmd_up() {
  local pid
  pid="$(read_pid "$PIDFILE")"
  if pid_alive "$pid"; then
    if url_works "$PG_URL"; then
      log "already up (pid $pid) at $PG_URL"
      write_env "$PG_URL"; return 0
    fi
    die "our postmaster (pid $pid) is alive but $PG_URL does not answer; run: scripts/postgres.sh down" \
        "$(load_root; echo "$PGLOG")"
  fi
  rm -f "$PIDFILE"
  if [[ -n "${CRM_DATABASE_URL:-}" ]]; then
    if url_works "$CRM_DATABASE_URL"; then
      log "reusing CRM_DATABASE_URL (answers select 1); starting nothing"
      touch "$REUSED"; write_env "$CRM_DATABASE_URL"; return 0
    fi
    log "CRM_DATABASE_URL is set but does not answer: starting our own cluster instead"
  fi
  rm -f "$REUSED"

  command -v runuser >/dev/null || die "runuser (util-linux) is required"
  id postgres >/dev/null 2>&1 || ensure_binaries   # the package creates the user
  ensure_binaries
  id postgres >/dev/null 2>&1 || die "no 'postgres' OS user even after installing postgresql"
  choose_root

  # Our cluster may still be running without a pid file (e.g. var/ was wiped): adopt it.
  if [[ -f "$PGDATA/postmaster.pid" ]] && as_pg "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
    pid="$(head -n1 "$PGDATA/postmaster.pid")"
    log "our cluster in $PGDATA is already running (pid $pid): adopting it"
  else
    require_free_port "$PG_PORT" CRM_PG_PORT
    init_cluster
    : >"$PGLOG"; chown postgres:postgres "$PGLOG"
    log "starting PostgreSQL on 127.0.0.1:$PG_PORT (data $PGDATA, log $PGLOG)"
    # -p: the port asked for now, even when an older cluster's config names another one.
    local rc=0
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGLOG" -o "-p $PG_PORT" -w -t 90 start >/dev/null 2>"$STATE/pg_ctl.err" || rc=$?
    if (( rc != 0 )); then
      # Taken between the check and the start (a connection grabbed it): say so in one line.
      grep -q 'could not bind.*Address already in use' "$PGLOG" && require_free_port "$PG_PORT" CRM_PG_PORT
      cat "$STATE/pg_ctl.err" >&2 || true
      die "pg_ctl start failed (exit $rc)" "$PGLOG"
    fi
    pid="$(head -n1 "$PGDATA/postmaster.pid")"
  fi
  echo "$pid" >"$PIDFILE"
  create_role_db
  url_works "$PG_URL" || die "PostgreSQL started (pid $pid) but $PG_URL does not answer" "$PGLOG"
  write_env "$PG_URL"
  log "up (pid $pid) at $PG_URL"
}

cmd_down() {
  local pid
  pid="$(read_pid "$PIDFILE")"
  load_root
  if [[ -z "$pid" ]]; then
    if [[ -f "$REUSED" ]]; then log "was reused from CRM_DATABASE_URL: nothing to stop"; rm -f "$REUSED"
    else log "not started by us: nothing to stop"; fi
    set_env_line_remove CRM_DATABASE_URL; return 0
  fi
  if pid_alive "$pid"; then
    PGBIN="$(pg_bindir || true)"
    if [[ -n "$PGBIN" && -n "$PGDATA" && -f "$PGDATA/postmaster.pid" && "$(head -n1 "$PGDATA/postmaster.pid")" == "$pid" ]]; then
      log "stopping PostgreSQL (pid $pid): pg_ctl stop -m fast"
      as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w -t 30 stop >/dev/null 2>&1 || stop_pid "$pid" postmaster
    else
      stop_pid "$pid" postmaster
    fi
    pid_alive "$pid" && stop_pid "$pid" postmaster
  fi
  rm -f "$PIDFILE"
  set_env_line_remove CRM_DATABASE_URL
  log "down"
}

cmd_status() {
  local pid
  pid="$(read_pid "$PIDFILE")"
  if pid_alive "$pid"; then
    if url_works "$PG_URL"; then echo "postgres: up (pid $pid) $PG_URL"; return 0; fi
    echo "postgres: pid $pid alive but $PG_URL not answering"; return 3
  fi
  if [[ -f "$REUSED" ]]; then
    local url; url="$(sed -n 's/^export CRM_DATABASE_URL=//p' "$CRM_SERVICES_DIR/env" 2>/dev/null || true)"
    echo "postgres: reused (external) ${url}"; return 0
  fi
  echo "postgres: down"; return 3
}

cmd_destroy() {
  cmd_down
  load_root
  if [[ -n "$PGROOT" ]]; then log "deleting $PGROOT"; rm -rf "$PGROOT"; fi
  rm -f "$STATE/root"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  destroy) cmd_destroy ;;
  *) echo "usage: $0 up|down|status|destroy" >&2; exit 2 ;;
esac
