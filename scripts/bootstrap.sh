#!/usr/bin/env bash
# Create .venv/ at the repository root and install pyhbb into it (editable).
# Usage: scripts/bootstrap.sh [dev]   -- "dev" adds the test and lint tools.
# Re-running is cheap: it reinstalls only when pyproject.toml changed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
extra="${1:-}"
python="${PYTHON:-python3}"

if [ ! -x "$root/.venv/bin/python" ]; then
  "$python" -m venv "$root/.venv"
fi
stamp="$root/.venv/.pyhbb-installed${extra:+-$extra}"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  "$root/.venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --editable "$root${extra:+[$extra]}"
  touch "$stamp"
fi
