#!/usr/bin/env bash
# Browser tests (tests/test_report_browser.py, tests/test_annotate_browser.py) need headless Chromium
# and the Python `playwright` package. Chromium comes from Debian (no browser download: Playwright is
# pointed at /usr/bin/chromium); `playwright install` is never run.
# Usage: scripts/install-browser.sh [PYTHON]   (default: .venv/bin/python, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

if ! command -v chromium >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
fi
if ! "$PY" -c "import playwright" >/dev/null 2>&1; then
    "$PY" -m pip install -q "playwright>=1.40"
fi
chromium --version
"$PY" -c "import importlib.metadata as m; print('playwright', m.version('playwright'))"
