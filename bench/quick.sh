#!/usr/bin/env bash
# Quick measurements of the PostgreSQL → DuckDB path against baselines measured in the same
# run on the same data (issue 6 grows this into the full suite):
#   1. snapshot of pgbench_accounts vs `COPY ... TO STDOUT > /dev/null` through psql
#   2. draining a backlog (one 500k-row UPDATE + pgbench transactions) vs pg_recvlogical
#      (pgoutput, to /dev/null) reading the same changes from a second slot
#   3. freshness (source commit → DuckDB commit) under pgbench at fixed rates
# Usage: bench/quick.sh            (SCALE=10 → 1M accounts; RATES="500 2000")
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidewater/target}"
T="$CARGO_TARGET_DIR"
SCALE="${SCALE:-10}"
RATES="${RATES:-500 2000}"
./scripts/fetch-libduckdb.sh
cargo build -q --release -p tidewater -p tidewater-harness --bins
WORK="$(mktemp -d /tmp/tw-bench.XXXX)"
coproc PG { "$T/release/throwaway-pg" 2>"$WORK/pg.err"; }
read -r URL <&"${PG[0]}"
RUNPID=""
cleanup() { [[ -n "$RUNPID" ]] && kill "$RUNPID" 2>/dev/null; eval "exec ${PG[1]}>&-"; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
q() { psql -X -q -A -t -d "$URL" -c "$1"; }
now() { date +%s.%N; }
rate() { python3 -c "print(f'{$1 / ($3 - $2):,.0f}')"; }

cat >"$WORK/tw.toml" <<TOML
[source]
type = "postgres"
url = "$URL"
tables = ["public.*"]
[sink]
type = "duckdb"
path = "$WORK/replica.duckdb"
TOML

start_run() { "$T/release/tidewater" run --config "$WORK/tw.toml" 2>>"$WORK/run.log" & RUNPID=$!; }
stop_run() { kill -TERM "$RUNPID"; wait "$RUNPID"; RUNPID=""; }
wait_caught_up() { # until the slot confirms $1 (tidewater confirms only what DuckDB committed)
  until [[ "$(q "SELECT confirmed_flush_lsn >= '$1' FROM pg_replication_slots WHERE slot_name = 'tidewater'")" == t ]]; do
    kill -0 "$RUNPID" || { echo "tidewater exited:"; tail "$WORK/run.log"; exit 1; }
    sleep 0.05
  done
}
peak_rss_mib() { awk '/VmHWM/ {printf "%d", $2/1024}' "/proc/$RUNPID/status"; }

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB; scale $SCALE"
pgbench -i -s "$SCALE" -q "$URL" 2>/dev/null
ROWS=$(q "SELECT count(*) FROM pgbench_accounts")

echo "== 1. snapshot ($ROWS rows in pgbench_accounts)"
t0=$(now); psql -X -q -d "$URL" -c "COPY pgbench_accounts TO STDOUT" >/dev/null; t1=$(now)
base=$(rate "$ROWS" "$t0" "$t1")
t0=$(now); start_run
until grep -q "initial snapshot committed" "$WORK/run.log"; do kill -0 "$RUNPID"; sleep 0.02; done; t1=$(now)
tw=$(rate "$ROWS" "$t0" "$t1")
echo "baseline psql COPY to /dev/null: $base rows/s; tidewater snapshot into DuckDB: $tw rows/s (incl. process start)"
stop_run

echo "== 2. streaming backlog (tidewater stopped while it is written)"
q "SELECT pg_create_logical_replication_slot('baseline', 'pgoutput')" >/dev/null
q "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= $((SCALE * 50000))"
pgbench -n -c 4 -j 2 -t 5000 "$URL" >/dev/null 2>&1
END=$(q "SELECT pg_current_wal_lsn()")
CHANGES=$((SCALE * 50000 + 4 * 5000 * 4))
t0=$(now)
pg_recvlogical -d "$URL" -S baseline --start -o proto_version=1 -o publication_names=tidewater,tidewater_insert_only --endpos="$END" -f /dev/null
t1=$(now)
base=$(rate "$CHANGES" "$t0" "$t1")
q "SELECT pg_drop_replication_slot('baseline')" >/dev/null
t0=$(now); start_run; wait_caught_up "$END"; t1=$(now)
tw=$(rate "$CHANGES" "$t0" "$t1")
echo "baseline pg_recvlogical: $base changes/s; tidewater apply into DuckDB: $tw changes/s; peak RSS $(peak_rss_mib) MiB"

echo "== 3. freshness under pgbench load (tidewater running)"
for r in $RATES; do
  pgbench -n -c 4 -j 2 -T 25 -R "$r" "$URL" 2>/dev/null | grep -E "^tps" || true
  sleep 10   # let the 10 s progress line of the last window appear
  grep 'applied' "$WORK/run.log" | tail -2 | sed 's/\x1b\[[0-9;]*m//g; s/^/  /'
done
stop_run
