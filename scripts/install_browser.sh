#!/usr/bin/env bash
# Headless Chromium for the dashboard's browser tests (tests/processes/test_dashboard_browser.py):
# Debian's `chromium` package, driven by the `playwright` package of requirements-dev.txt (which
# downloads no browser of its own). Installed only when missing and when this runs as root with
# apt-get; otherwise the browser tests skip and say why.
set -uo pipefail
if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "No Chromium found and cannot apt-get it here: the browser tests will be skipped (install Debian's chromium package)."
  exit 0
fi
echo "Installing Chromium (Debian package) for the browser tests ..."
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q chromium >/dev/null 2>&1; then
  apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1 \
    || echo "Could not install chromium: the browser tests will be skipped."
fi
exit 0
