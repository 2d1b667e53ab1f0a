#!/usr/bin/env bash
# Set up (as ./setup.sh --dev) and run the tests: ./test.sh [pytest args]
# Default: the core suite (-m "not slow"). The larger real-speech suite: ./test.sh -m slow
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
./setup.sh --dev
VENV="${WXS_VENV:-.venv}"
[ $# -gt 0 ] || set -- -m "not slow"
exec "$VENV/bin/python" -m pytest --durations=15 "$@"  # the slowest tests, to keep the core run short
