#!/usr/bin/env bash
# Installs tidewater under PREFIX (default ~/.local): PREFIX/bin/tidewater, PREFIX/lib/libduckdb.so
# (found through the binary's $ORIGIN/../lib rpath, so the install keeps working after the
# checkout is gone) and shell completions under PREFIX/share.
#
#   scripts/install.sh [PREFIX]          builds `cargo build --release -p tidewater` first
#   TIDEWATER_BIN=path scripts/install.sh [PREFIX]   installs that binary instead (no build)
#
# A binary built with `--features bundled` has DuckDB compiled in: no library is installed.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX="${1:-$HOME/.local}"
LIB="$ROOT/.libduckdb/1.5.6/libduckdb.so"

BIN="${TIDEWATER_BIN:-}"
if [[ -z "$BIN" ]]; then
  "$ROOT/scripts/fetch-libduckdb.sh"
  (cd "$ROOT" && cargo build --release --locked -p tidewater)
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/tidewater"
fi
[[ -x "$BIN" ]] || { echo "install.sh: no tidewater binary at $BIN" >&2; exit 1; }

install -d "$PREFIX/bin"
install -m 0755 "$BIN" "$PREFIX/bin/tidewater"
if readelf -d "$BIN" | grep -q 'NEEDED.*libduckdb\.so'; then
  readelf -d "$BIN" | grep -q 'R.*PATH.*\$ORIGIN/\.\./lib' || {
    echo "install.sh: $BIN has no \$ORIGIN/../lib rpath (built before build/duckdb_rpath.rs set it?): rebuild it" >&2
    exit 1
  }
  [[ -f "$LIB" ]] || "$ROOT/scripts/fetch-libduckdb.sh"
  install -d "$PREFIX/lib"
  install -m 0644 "$LIB" "$PREFIX/lib/libduckdb.so"
fi

# Shell completions, where bash-completion, zsh and fish look for them under PREFIX.
if "$PREFIX/bin/tidewater" completions bash >/dev/null 2>&1; then
  install -d "$PREFIX/share/bash-completion/completions" "$PREFIX/share/zsh/site-functions" \
    "$PREFIX/share/fish/vendor_completions.d"
  "$PREFIX/bin/tidewater" completions bash >"$PREFIX/share/bash-completion/completions/tidewater"
  "$PREFIX/bin/tidewater" completions zsh >"$PREFIX/share/zsh/site-functions/_tidewater"
  "$PREFIX/bin/tidewater" completions fish >"$PREFIX/share/fish/vendor_completions.d/tidewater.fish"
fi

echo "installed $("$PREFIX/bin/tidewater" --version) in $PREFIX/bin/tidewater"
case ":$PATH:" in
  *":$PREFIX/bin:"*) ;;
  *) echo "add $PREFIX/bin to PATH, e.g. in ~/.profile: export PATH=\"$PREFIX/bin:\$PATH\"" ;;
esac
