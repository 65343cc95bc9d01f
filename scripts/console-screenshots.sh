#!/usr/bin/env bash
# Regenerate the README's console screenshots (docs/console/*.png) from the demo data:
# runs tests/browser/test_console_screenshots.py in Debian's headless Chromium with
# CRM_CONSOLE_SCREENSHOTS=docs/console. Needs nothing else running (embedded default).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/browser.sh
CRM_CONSOLE_SCREENSHOTS="$PWD/docs/console" CRM_DATABASE_URL="" \
  scripts/pytest.sh tests/browser/test_console_screenshots.py -q
ls -l docs/console
