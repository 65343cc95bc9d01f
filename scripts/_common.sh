# Shared helpers for scripts/services.sh, scripts/postgres.sh, scripts/kafka.sh.
# Sourced, not executed.

CRM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# State directory. Relative defaults are anchored at the project root (which is $PWD
# when run from the root, as make does), so the scripts work from any cwd.
CRM_SERVICES_DIR="${CRM_SERVICES_DIR:-$CRM_ROOT/var/services}"
mkdir -p "$CRM_SERVICES_DIR"
CRM_SERVICES_DIR="$(cd "$CRM_SERVICES_DIR" && pwd)"
export CRM_SERVICES_DIR

log() { printf '[%s] %s\n' "$CRM_COMPONENT" "$*" >&2; }

# die MESSAGE [LOGFILE]: print the failure and the last 30 lines of LOGFILE to stderr.
die() {
  local msg="$1" logfile="${2:-}"
  printf '\n[%s] ERROR: %s\n' "$CRM_COMPONENT" "$msg" >&2
  if [[ -n "$logfile" && -f "$logfile" ]]; then
    printf '[%s] ---- last 30 lines of %s ----\n' "$CRM_COMPONENT" "$logfile" >&2
    tail -n 30 "$logfile" >&2 || true
    printf '[%s] ---- end of %s ----\n' "$CRM_COMPONENT" "$logfile" >&2
  fi
  exit 1
}

# run_or_die CMD...: run a command; on failure print the exact command and its output.
run_or_die() {
  local out rc=0
  out="$("$@" 2>&1)" || rc=$?
  if (( rc != 0 )); then
    printf '\n[%s] ERROR: command failed (exit %d):\n  %s\n%s\n' \
      "$CRM_COMPONENT" "$rc" "$*" "$out" >&2
    exit 1
  fi
}

# A pid is alive if it exists and is not a zombie (an exited process that init has not
# reaped yet still answers kill -0).
pid_alive() {
  [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null || return 1
  local st; st="$(ps -o stat= -p "$1" 2>/dev/null || true)"
  [[ -n "$st" && "$st" != Z* ]]
}

read_pid() { [[ -f "$1" ]] && tr -dc '0-9' <"$1" || true; }

# tcp_open HOST PORT: true if a TCP connect succeeds within 2 s.
tcp_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

# port_taken PORT: true if a server could not bind 127.0.0.1:PORT now: something listens
# there, or a connection holds it as its local port (a port in Linux's ephemeral range,
# 32768-60999, can be taken by any outgoing connection). Bound with SO_REUSEADDR, as
# PostgreSQL and Kafka bind, so a connection left in TIME-WAIT does not count.
port_taken() {
  ! python3 - "$1" 2>/dev/null <<'PYEOF'
import socket, sys
probe = socket.socket()
probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
probe.bind(("127.0.0.1", int(sys.argv[1])))
probe.close()
PYEOF
}

# require_free_port PORT VARIABLE: stop with one line naming the port and what to set.
require_free_port() {
  if port_taken "$1"; then
    printf '[%s] ERROR: port %s on 127.0.0.1 is taken by another process; set %s to a free port (below 32768)\n' \
      "$CRM_COMPONENT" "$1" "$2" >&2
    exit 1
  fi
}

# stop_pid PID NAME: SIGTERM, wait up to 30 s, then SIGKILL. Only ever by pid.
stop_pid() {
  local pid="$1" name="$2" i
  pid_alive "$pid" || return 0
  log "stopping $name (pid $pid, SIGTERM)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do
    pid_alive "$pid" || return 0
    sleep 0.1
  done
  log "$name (pid $pid) still alive after 30 s: SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do pid_alive "$pid" || return 0; sleep 0.1; done
  die "$name (pid $pid) did not exit after SIGKILL"
}

# Write/refresh (set_env_line NAME VALUE) or drop (set_env_line_remove NAME) one
# "export NAME=value" line in $CRM_SERVICES_DIR/env. Serialised with flock because
# services.sh starts PostgreSQL and Kafka in parallel.
_env_edit() {
  local name="$1" value="${2-}" remove="$3" f="$CRM_SERVICES_DIR/env" tmp
  (
    flock -w 30 9 || true
    tmp="$(mktemp "$CRM_SERVICES_DIR/.env.XXXXXX")"
    { [[ -f "$f" ]] && grep -v "^export $name=" "$f" || true; } >"$tmp"
    [[ "$remove" == 1 ]] || printf 'export %s=%q\n' "$name" "$value" >>"$tmp"
    if [[ -s "$tmp" ]]; then chmod 644 "$tmp"; mv -f "$tmp" "$f"; else rm -f "$tmp" "$f"; fi
  ) 9>"$CRM_SERVICES_DIR/.env.lock"
}
set_env_line() { _env_edit "$1" "$2" 0; }
set_env_line_remove() { _env_edit "$1" "" 1; }
