#!/usr/bin/env bash
# Installs the BigQuery emulator the BigQuery sink's tests run against (PyPI `bqemulator`)
# into a venv, once: `bqemulator` then lives at $BQEMU_VENV/bin/bqemulator, where
# tidewater-harness looks for it. Idempotent: does nothing when it is already there.
set -euo pipefail
VENV="${BQEMU_VENV:-$HOME/.cache/tidewater/bqemu-venv}"
DUCKDB_VERSION=1.5.5
if "$VENV/bin/python" -c "import bqemulator, numpy, duckdb_extension_spatial" 2>/dev/null \
  && [[ -f "$HOME/.duckdb/extensions/v$DUCKDB_VERSION/linux_amd64/spatial.duckdb_extension" ]]; then
  exit 0
fi
echo "installing bqemulator into $VENV"
if ! python3 -m venv --help >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv
fi
python3 -m venv --clear "$VENV"
# numpy: the emulator's UDFs need it. The spatial extension comes from PyPI and is installed
# into DuckDB from its local file: otherwise the emulator tries to download it at start.
"$VENV/bin/pip" install -q bqemulator==1.4.0 "duckdb==$DUCKDB_VERSION" \
  "duckdb-extension-spatial==$DUCKDB_VERSION" numpy
"$VENV/bin/python" - <<'PY'
import glob, os
import duckdb, duckdb_extension_spatial
root = os.path.dirname(duckdb_extension_spatial.__file__)
path = glob.glob(os.path.join(root, "extensions", "*", "spatial.duckdb_extension"))[0]
con = duckdb.connect()
con.execute(f"INSTALL '{path}'")
con.execute("LOAD spatial")
PY
