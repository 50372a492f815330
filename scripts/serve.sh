#!/usr/bin/env bash
# Set up .venv/ and run hbbs, hbbr and the API server together with defaults. Keys (id_ed25519*) and the
# database (db_v2.sqlite3) live in the data folder, created if missing: ./data, or $PYHBB_DATA.
# Extra arguments go to `pyhbb run` (see `.venv/bin/pyhbb run --help`).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/bootstrap.sh"
data="${PYHBB_DATA:-$root/data}"
mkdir -p "$data"
cd "$data"
exec "$root/.venv/bin/pyhbb" run "$@"
