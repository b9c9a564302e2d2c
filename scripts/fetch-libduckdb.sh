#!/usr/bin/env bash
# Fetches the official prebuilt libduckdb.so (DuckDB 1.5.6, matching crate duckdb 1.10506.0)
# from the npm package @duckdb/node-bindings-linux-x64 into .libduckdb/1.5.6.
# The download is cached in ~/.cache/tidewater, so repeated runs are offline.
set -euo pipefail
VERSION=1.5.6
PKG="@duckdb/node-bindings-linux-x64@${VERSION}-r.1"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/.libduckdb/$VERSION"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/tidewater"
TGZ="$CACHE/duckdb-node-bindings-linux-x64-${VERSION}-r.1.tgz"
if [[ -f "$DEST/libduckdb.so" ]]; then exit 0; fi
mkdir -p "$CACHE" "$DEST"
if [[ ! -f "$TGZ" ]]; then
  command -v npm >/dev/null || { echo "npm is needed to fetch libduckdb.so (apt-get install -y npm)" >&2; exit 1; }
  (cd "$CACHE" && npm pack --silent "$PKG" >/dev/null)
fi
tar -xzf "$TGZ" -C "$DEST" --strip-components=1 package/libduckdb.so
echo "libduckdb.so $VERSION installed in $DEST" >&2
