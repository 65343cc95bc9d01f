#!/usr/bin/env bash
# Runs pytest on the given paths. Exit code 5 (no tests collected) counts as failure:
# a suite that ran nothing proves nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/pytest -p no:cacheprovider "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests in: $*" >&2
  exit 1
fi
exit "$status"
