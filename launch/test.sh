#!/usr/bin/env bash
# The test suite: sets up .venv, then runs pytest. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
start=$(date +%s)
set +e
python -m pytest -q --timeout=900 "$@"
rc=$?
set -e
echo "[trimo] test suite finished in $(( $(date +%s) - start )) s (exit $rc)"
# pytest exits 5 when it collected no tests: that is a failure of the suite, not a pass.
if [ "$rc" -eq 5 ]; then echo "[trimo] no tests were collected" >&2; exit 1; fi
exit "$rc"
