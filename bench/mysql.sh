#!/usr/bin/env bash
# MySQL/MariaDB → DuckDB against baselines measured in the same run on the same data:
#   1. snapshot of a ROWS-row table vs the `mariadb` client reading it (`--quick`, to /dev/null)
#   2. draining a binlog backlog of ~1M row changes (one 500k-row INSERT transaction, one
#      300k-row UPDATE, 2000 small transactions, one 100k-row DELETE), written while tidewater
#      is stopped, vs `mariadb-binlog --read-from-remote-server --raw` reading the same binlog
#      files (and, for reference, decoding them to text)
# Usage: bench/mysql.sh             (ROWS=1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidewater/target}"
T="$CARGO_TARGET_DIR"
ROWS="${ROWS:-1000000}"
./scripts/fetch-libduckdb.sh
cargo build -q --release -p tidewater -p tidewater-harness --bins
WORK="$(mktemp -d /tmp/tw-bench.XXXX)"
coproc MY { "$T/release/throwaway-mariadb" 2>"$WORK/my.err"; }
read -r URL <&"${MY[0]}"
PORT="${URL##*:}"; PORT="${PORT%%/*}"
RUNPID=""
cleanup() { [[ -n "$RUNPID" ]] && kill "$RUNPID" 2>/dev/null; eval "exec ${MY[1]}>&-"; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
q() { mariadb --no-defaults -h127.0.0.1 -P"$PORT" -uroot -N -B -Dshop -e "$1"; }
now() { date +%s.%N; }
rate() { python3 -c "print(f'{$1 / ($3 - $2):,.0f}')"; }

cat >"$WORK/tw.toml" <<TOML
[source]
type = "mysql"
url = "mysql://root@127.0.0.1:$PORT/shop"
tables = ["shop.*"]
[sink]
type = "duckdb"
path = "$WORK/replica.duckdb"
TOML

start_run() { "$T/release/tidewater" run --config "$WORK/tw.toml" 2>>"$WORK/run.log" & RUNPID=$!; }
stop_run() { kill -TERM "$RUNPID"; wait "$RUNPID"; RUNPID=""; }
published() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['report'][sys.argv[2]] or '')" "$WORK/replica.duckdb.status.json" "$1" 2>/dev/null || true; }
wait_caught_up() { # until the published position is $1 (every transaction here touches shop.t)
  until [[ "$(published position)" == "mariadb-gtid:$1" ]]; do
    kill -0 "$RUNPID" || { echo "tidewater exited:"; tail "$WORK/run.log"; exit 1; }
    sleep 0.1
  done
}
peak_rss_mib() { awk '/VmHWM/ {printf "%d", $2/1024}' "/proc/$RUNPID/status"; }

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB"
mariadb --no-defaults -h127.0.0.1 -P"$PORT" -uroot -e "CREATE DATABASE shop"
q "CREATE TABLE shop.t (id int PRIMARY KEY, v int, s varchar(40), d decimal(12,2), ts datetime(6));
   INSERT INTO shop.t SELECT seq, seq % 1000, concat('row ', seq), seq / 7, '2024-01-01' + INTERVAL seq SECOND FROM seq_1_to_$ROWS;"

echo "== 1. snapshot ($ROWS rows)"
t0=$(now); q "SELECT * FROM shop.t" >/dev/null; t1=$(now)
base=$(rate "$ROWS" "$t0" "$t1")
t0=$(now); start_run
until grep -q "initial snapshot committed" "$WORK/run.log"; do kill -0 "$RUNPID"; sleep 0.02; done; t1=$(now)
tw=$(rate "$ROWS" "$t0" "$t1")
echo "baseline mariadb client to /dev/null: $base rows/s; tidewater snapshot into DuckDB: $tw rows/s (incl. process start)"
stop_run

echo "== 2. streaming backlog (tidewater stopped while it is written)"
q "FLUSH BINARY LOGS"
FIRST=$(q "SHOW BINARY LOGS" | tail -1 | cut -f1)
N=$ROWS
q "INSERT INTO shop.t SELECT seq, 0, 'bulk', 1.5, now(6) FROM seq_$((N + 1))_to_$((N + N / 2))"
q "UPDATE shop.t SET v = v + 1 WHERE id <= $((N * 3 / 10))"
python3 - "$N" >"$WORK/small.sql" <<'PY'
import sys
n = int(sys.argv[1]); base = n + n // 2
for i in range(2000):
    a = base + i * 50 + 1
    print(f"START TRANSACTION; INSERT INTO shop.t SELECT seq, 1, 'small', 2.5, now(6) FROM seq_{a}_to_{a + 49}; COMMIT;")
PY
mariadb --no-defaults -h127.0.0.1 -P"$PORT" -uroot -Dshop <"$WORK/small.sql"
q "DELETE FROM shop.t WHERE id > $((N * 3 / 10)) AND id <= $((N * 4 / 10))"
CHANGES=$((N / 2 + N * 3 / 10 + 100000 + N / 10))
END=$(q "SELECT @@gtid_binlog_pos")
mkdir -p "$WORK/raw"
t0=$(now)
mariadb-binlog --no-defaults --read-from-remote-server -h127.0.0.1 -P"$PORT" -uroot --raw --to-last-log \
  --result-file="$WORK/raw/" "$FIRST"
t1=$(now)
base=$(rate "$CHANGES" "$t0" "$t1")
t0=$(now)
mariadb-binlog --no-defaults --read-from-remote-server -h127.0.0.1 -P"$PORT" -uroot --to-last-log "$FIRST" >/dev/null
t1=$(now)
decoded=$(rate "$CHANGES" "$t0" "$t1")
t0=$(now); start_run; wait_caught_up "$END"
t1=$(python3 -c "
import datetime,sys
s=sys.argv[1].replace(' UTC','').replace('+00','')
print(datetime.datetime.fromisoformat(s).replace(tzinfo=datetime.timezone.utc).timestamp())" "$(published last_apply)")
tw=$(rate "$CHANGES" "$t0" "$t1")
echo "baseline mariadb-binlog --raw: $base changes/s (decoding to text: $decoded changes/s); tidewater apply into DuckDB: $tw changes/s (incl. process start); peak RSS $(peak_rss_mib) MiB"
stop_run
