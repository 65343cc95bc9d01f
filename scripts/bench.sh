#!/usr/bin/env bash
# `make bench`: start the services, run every benchmark with its same-run baseline,
# write bench/results/latest.json and latest.md, stop what was started.
# Arguments go to `python -m bench` (e.g. `scripts/bench.sh http --quick`).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then  # the HTTP benchmark's load generator (C, epoll)
  echo "[bench] wrk missing: installing Debian's wrk" >&2
  export DEBIAN_FRONTEND=noninteractive
  sudo=""
  if [[ "$(id -u)" -ne 0 ]]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends wrk >/dev/null
fi
started=0
scripts/services.sh status >/dev/null 2>&1 || started=1
cleanup() { if [ "$started" -eq 1 ]; then scripts/services.sh down || true; fi; }
trap cleanup EXIT
scripts/services.sh up
# shellcheck disable=SC1091
source "${CRM_SERVICES_DIR:-var/services}/env"
export CRM_DATABASE_URL CRM_KAFKA_BOOTSTRAP
.venv/bin/python -m bench "$@"
