#!/usr/bin/env bash
# Set up .venv/ (with dev tools) and run every check: lint, format, types, the test suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k relay -x
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/bootstrap.sh" dev,cluster
cd "$root"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
