#!/usr/bin/env bash
# Debian's Chromium (and ChromeDriver) for the console's browser tests (tests/browser).
# Installs them with apt-get when /usr/bin/chromium is missing, then prints the version.
# Playwright drives this Chromium through its executable path: no browser is downloaded.
set -euo pipefail
if [[ ! -x /usr/bin/chromium ]]; then
  echo "[browser] /usr/bin/chromium missing: installing Debian's chromium and chromium-driver" >&2
  export DEBIAN_FRONTEND=noninteractive
  sudo=""
  if [[ "$(id -u)" -ne 0 ]]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver fonts-liberation fonts-dejavu-core >/dev/null
fi
# Debian's wrapper script prints a harmless shell warning on some machines: keep stdout only.
echo "[browser] $(/usr/bin/chromium --version 2>/dev/null)" >&2
