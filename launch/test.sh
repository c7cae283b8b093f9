#!/usr/bin/env bash
# The test suite: sets up .venv, then runs pytest. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
start=$(date +%s)
# The search page is tested in headless Chromium from Debian's packages (never a browser
# download at run time); installed here when missing and apt can, else those tests skip.
if ! command -v chromedriver >/dev/null && command -v apt-get >/dev/null; then
    as_root=""; [ "$(id -u)" = 0 ] || as_root="sudo -n"
    echo "[trimo] installing Debian's chromium and chromium-driver for the page tests"
    $as_root apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 \
        || { $as_root apt-get update -qq >/dev/null 2>&1 \
             && $as_root apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1; } \
        || echo "[trimo] could not install chromium; the page tests will skip" >&2
fi
set +e
python -m pytest -q --timeout=900 "$@"
rc=$?
set -e
echo "[trimo] test suite finished in $(( $(date +%s) - start )) s (exit $rc)"
# pytest exits 5 when it collected no tests: that is a failure of the suite, not a pass.
if [ "$rc" -eq 5 ]; then echo "[trimo] no tests were collected" >&2; exit 1; fi
exit "$rc"
