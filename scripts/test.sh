#!/usr/bin/env bash
# Set up .venv/ (with dev tools) and run every check: lint, format, types, the test suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k relay -x
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/bootstrap.sh" dev,cluster
cd "$root"
# The web console's browser tests drive Debian's headless Chromium; install it when
# missing and we may (root with apt-get). Elsewhere they skip, except in CI.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null ||
      echo "scripts/test.sh: could not install chromium (browser tests will say so)" >&2
  fi
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
