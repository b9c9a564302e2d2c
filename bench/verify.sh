#!/usr/bin/env bash
# `tidewater verify` speed on a ROWS-row table, for a throwaway PostgreSQL and MariaDB:
#   1. baseline: the source's own client reading the table to /dev/null
#   2. verify of a stopped replica (attached read-only to an in-memory DuckDB)
#   3. verify inside a running `tidewater run` (POST /verify) while a write workload runs
# Usage: bench/verify.sh [postgres|mysql ...]      (ROWS=1000000; default: both sources)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidewater/target}"
T="$CARGO_TARGET_DIR"
ROWS="${ROWS:-1000000}"
SOURCES=("$@")
[[ ${#SOURCES[@]} -eq 0 ]] && SOURCES=(postgres mysql)
./scripts/fetch-libduckdb.sh
cargo build -q --release -p tidewater -p tidewater-harness --bins
now() { date +%s.%N; }
rate() { python3 -c "print(f'{$1 / ($3 - $2):,.0f}')"; }
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB; $ROWS rows"

bench() { # $1 = postgres | mysql
  local kind="$1" WORK URL RUNPID="" WL=""
  WORK="$(mktemp -d /tmp/tw-verify.XXXX)"
  if [[ "$kind" == postgres ]]; then
    coproc SRV { "$T/release/throwaway-pg" 2>"$WORK/srv.err"; }
  else
    coproc SRV { "$T/release/throwaway-mariadb" 2>"$WORK/srv.err"; }
  fi
  read -r URL <&"${SRV[0]}"
  local PORT="${URL##*:}"; PORT="${PORT%%/*}"
  # shellcheck disable=SC2317
  cleanup() {
    [[ -n "$WL" ]] && kill "$WL" 2>/dev/null
    [[ -n "$RUNPID" ]] && kill "$RUNPID" 2>/dev/null
    eval "exec ${SRV[1]}>&-"; wait 2>/dev/null; rm -rf "$WORK"
  }
  trap cleanup RETURN
  local table
  if [[ "$kind" == postgres ]]; then
    q() { psql -X -q -t -A "$URL" -c "$1"; }
    q "CREATE TABLE t (id int PRIMARY KEY, v int, s text, d numeric(12,2), ts timestamptz);
       INSERT INTO t SELECT g, g % 1000, 'row ' || g, g / 7.0, '2024-01-01'::timestamptz + g * interval '1 second'
       FROM generate_series(1, $ROWS) g;"
    table=public.t
    cat >"$WORK/tw.toml" <<TOML
[source]
type = "postgres"
url = "$URL"
tables = ["public.*"]
[sink]
type = "duckdb"
path = "$WORK/replica.duckdb"
TOML
    baseline() { psql -X -q "$URL" -c "COPY (SELECT * FROM t ORDER BY id) TO STDOUT" >/dev/null; }
    workload() { while :; do q "UPDATE t SET v = v + 1 WHERE id = (random() * $ROWS)::int + 1;
      INSERT INTO t VALUES ((random() * 1e9)::int + $ROWS, 0, 'new', 0, now()) ON CONFLICT DO NOTHING;" || true; done; }
  else
    q() { mariadb --no-defaults -h127.0.0.1 -P"$PORT" -uroot -N -B -Dshop -e "$1"; }
    mariadb --no-defaults -h127.0.0.1 -P"$PORT" -uroot -e "CREATE DATABASE shop"
    q "CREATE TABLE t (id int PRIMARY KEY, v int, s varchar(40), d decimal(12,2), ts datetime(6));
       INSERT INTO t SELECT seq, seq % 1000, concat('row ', seq), seq / 7, '2024-01-01' + INTERVAL seq SECOND FROM seq_1_to_$ROWS;"
    table=shop.t
    cat >"$WORK/tw.toml" <<TOML
[source]
type = "mysql"
url = "mysql://root@127.0.0.1:$PORT/shop"
tables = ["shop.*"]
[sink]
type = "duckdb"
path = "$WORK/replica.duckdb"
TOML
    baseline() { q "SELECT * FROM t ORDER BY id" --quick >/dev/null; }
    workload() { while :; do q "UPDATE t SET v = v + 1 WHERE id = floor(rand() * $ROWS) + 1;
      INSERT IGNORE INTO t VALUES (floor(rand() * 1e9) + $ROWS, 0, 'new', 0, now(6));" || true; done; }
  fi
  echo "== $kind ($table)"
  touch "$WORK/run.log"
  "$T/release/tidewater" run --config "$WORK/tw.toml" 2>>"$WORK/run.log" & RUNPID=$!
  until grep -q "initial snapshot committed" "$WORK/run.log"; do kill -0 "$RUNPID"; sleep 0.05; done
  kill -TERM "$RUNPID"; wait "$RUNPID"; RUNPID=""

  local t0 t1
  t0=$(now); baseline; t1=$(now)
  echo "1. baseline, the source's client reading the table in key order: $(rate "$ROWS" "$t0" "$t1") rows/s"
  echo "2. verify, replica stopped:"
  /usr/bin/time -f "   peak RSS %M KiB" "$T/release/tidewater" verify --config "$WORK/tw.toml" 2>&1 | sed 's/^/   /' | tail -3
  "$T/release/tidewater" run --config "$WORK/tw.toml" 2>>"$WORK/run.log" & RUNPID=$!
  until grep -q ": streaming" "$WORK/run.log"; do kill -0 "$RUNPID"; sleep 0.05; done
  workload >/dev/null 2>&1 & WL=$!
  echo "3. verify inside the running tidewater, while a write workload runs:"
  "$T/release/tidewater" verify --config "$WORK/tw.toml" 2>&1 | sed 's/^/   /' | tail -3
  echo "   peak RSS of run: $(awk '/VmHWM/ {printf "%d", $2}' "/proc/$RUNPID/status") KiB"
  kill "$WL"; WL=""
  kill -TERM "$RUNPID"; wait "$RUNPID"; RUNPID=""
}

for s in "${SOURCES[@]}"; do bench "$s"; done
