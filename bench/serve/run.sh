#!/usr/bin/env bash
# Serving benchmark (issue 6), on a throwaway cluster:
#   1. microseconds per act() call inside one query over N_OBS observations
#      (built first in a temporary table), minus a baseline query that reads
#      the same arrays without act(); median of REPS runs;
#   2. the same network in libtorch (torch 1.13 from /usr/bin/python3, one
#      thread, batch-1 forward per call, eager and traced), same run;
#   3. the first act() of a fresh connection: pgbench -C (a new connection
#      per transaction) running "SELECT rl_mlops.act(...)" against
#      "SELECT 1", median latency difference over REPS runs; and, without
#      the connection's own cost and noise, the first statement of a fresh
#      connection timed by psql, act() against SELECT 1, without and with
#      shared_preload_libraries = 'rl_mlops';
#   4. decide() throughput with pgbench, CLIENTS clients, with the position
#      given and with position NULL (replay over episode_length bars).
# Prints a markdown report (also kept as $work/results.md).  Timings are
# informative only, never pass conditions.
#
#   bash bench/serve/run.sh                 (as root or as postgres)
#   N_OBS=100000 REPS=9 CLIENTS=4 SECONDS_PER_RUN=10 bash bench/serve/run.sh
#
# Needs the extension installed (see the top-level README) and
# /usr/bin/python3 with torch.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
N_OBS=${N_OBS:-100000}
REPS=${REPS:-9}
CLIENTS=${CLIENTS:-4}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
CONNECT_TX=${CONNECT_TX:-200}

# initdb refuses root: copy what we need and run as postgres.
if [ "$(id -u)" = 0 ]; then
	work=$(mktemp -d /tmp/rl_mlops_bench_serve.XXXXXX)
	mkdir -p "$work/src/test/lib" "$work/src/test/python" "$work/src/bench/serve"
	cp "$root/test/lib/cluster.sh" "$work/src/test/lib/"
	cp "$root/test/python/interop.py" "$work/src/test/python/"
	cp "$here/run.sh" "$here/torch_forward.py" "$work/src/bench/serve/"
	chown -R postgres "$work"
	exec runuser -u postgres -- env BENCH_WORK="$work" N_OBS="$N_OBS" REPS="$REPS" \
		CLIENTS="$CLIENTS" SECONDS_PER_RUN="$SECONDS_PER_RUN" CONNECT_TX="$CONNECT_TX" \
		bash "$work/src/bench/serve/run.sh"
fi
work=${BENCH_WORK:-$(mktemp -d /tmp/rl_mlops_bench_serve.XXXXXX)}
source "$root/test/lib/cluster.sh"
start_cluster "$work/cluster" "shared_buffers = '256MB'" "max_connections = 50" >/dev/null
trap 'stop_cluster; rm -rf "$work/cluster"' EXIT
createdb bench
q() { psql -X -q -v ON_ERROR_STOP=1 -d bench "$@"; }
median_of() { sort -g | awk '{a[NR] = $1} END {if (NR % 2) m = a[(NR + 1) / 2]; else m = (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.3f\n", m}'; }

# The checkpoint both sides use: PyTorch's initialisation, seed 1.
/usr/bin/python3 "$root/test/python/interop.py" write "$work/ckpt.safetensors" --seed 1

echo "setting up..." >&2
q <<SQL
\o /dev/null
SET client_min_messages = warning;
CREATE EXTENSION rl_mlops;
-- 5 symbols x 20,000 one-minute bars for decide()
CREATE TABLE bars (symbol text, ts timestamptz, price float8);
INSERT INTO bars
SELECT 'SYM' || s, timestamptz '2026-01-01' + i * interval '1 minute',
       100 * exp(0.002 * sin(i * 0.05 + s) + 0.001 * sin(i * 0.7 * s))
  FROM generate_series(1, 5) AS s, generate_series(0, 19999) AS i;
CREATE INDEX ON bars (symbol, ts);
ANALYZE bars;
SELECT rl_mlops.create_agent('default', 'bars');
SELECT rl_mlops.import_model('default', pg_read_binary_file('$work/ckpt.safetensors')) AS v \gset
SELECT rl_mlops.validate_model('default', :'v');
SELECT rl_mlops.deploy_model('default', :'v');
SQL

# 1. act() per call, inside one query.
echo "act() per call..." >&2
act=$(q -At <<SQL
\o /dev/null
SET max_parallel_workers_per_gather = 0;
CREATE TEMP TABLE o AS
SELECT i, array_agg(((i * 7919 + j * 104729) % 4001 / 1000.0 - 2)::real ORDER BY j) AS obs
  FROM generate_series(1, $N_OBS) AS i, generate_series(1, 33) AS j GROUP BY i;
VACUUM ANALYZE o;
CREATE FUNCTION pg_temp.ms(q text) RETURNS float8 LANGUAGE plpgsql AS \$\$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN EXECUTE q; RETURN extract(epoch FROM clock_timestamp() - t0) * 1000; END \$\$;
SELECT sum(rl_mlops.act(obs)) FROM o;          -- warm: load the model, the pages
CREATE TEMP TABLE runs AS
SELECT r, pg_temp.ms('SELECT sum(cardinality(obs)) FROM o') AS base,
          pg_temp.ms('SELECT sum(rl_mlops.act(obs)) FROM o') AS act
  FROM generate_series(1, $REPS) AS r;
\o
SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY act)::numeric, 1) || ' '
    || round(percentile_cont(0.5) WITHIN GROUP (ORDER BY base)::numeric, 1) || ' '
    || round((percentile_cont(0.5) WITHIN GROUP (ORDER BY act - base) * 1000 / $N_OBS)::numeric, 3)
  FROM runs;
SQL
)
read -r act_ms base_ms act_us <<<"$act"

# 2. libtorch, same network, same observations count.
echo "libtorch per call..." >&2
torch_json=$(/usr/bin/python3 "$here/torch_forward.py" "$work/ckpt.safetensors" "$N_OBS" "$REPS")
eager_us=$(sed -n 's/.*"eager_us": \([0-9.]*\).*/\1/p' <<<"$torch_json")
traced_us=$(sed -n 's/.*"traced_us": \([0-9.]*\).*/\1/p' <<<"$torch_json")
torch_version=$(sed -n 's/.*"torch": "\([^"]*\)".*/\1/p' <<<"$torch_json")

# 3. First act() of a fresh connection vs SELECT 1 (pgbench -C: connect,
# run, disconnect, per transaction).
echo "first call per connection..." >&2
echo "SELECT 1;" >"$work/select1.sql"
echo "SELECT rl_mlops.act('{$(seq -s, 1 33 | sed 's/[0-9]\+/0.25/g')}'::real[]);" >"$work/first_act.sql"
latency() { pgbench -n -C -t "$CONNECT_TX" -f "$1" bench 2>/dev/null | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p'; }
for r in $(seq "$REPS"); do
	b=$(latency "$work/select1.sql")
	a=$(latency "$work/first_act.sql")
	echo "$b $a" >>"$work/connect.txt"
done
# The same, seen from the client without the connection's own noise: the
# first statement of a fresh connection, timed by psql.
first_stmt() { psql -X -q -d bench -c '\timing on' -f "$1" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p'; }
for r in $(seq $((REPS * 5))); do
	echo "$(first_stmt "$work/select1.sql") $(first_stmt "$work/first_act.sql")" >>"$work/first_stmt.txt"
done
stmt_base=$(awk '{print $1}' "$work/first_stmt.txt" | median_of)
stmt_act=$(awk '{print $2}' "$work/first_stmt.txt" | median_of)
stmt_ms=$(awk '{print $2 - $1}' "$work/first_stmt.txt" | median_of)
# And with the library preloaded by the postmaster (optional, see README):
# what is left is the registry read and the checkpoint parse.
echo "shared_preload_libraries = 'rl_mlops'" >>"$CLUSTER_DIR/data/postgresql.conf"
pg_ctl -D "$CLUSTER_DIR/data" -l "$CLUSTER_DIR/server.log" -w restart >/dev/null
for r in $(seq $((REPS * 5))); do
	echo "$(first_stmt "$work/select1.sql") $(first_stmt "$work/first_act.sql")" >>"$work/first_stmt_preload.txt"
done
preload_base=$(awk '{print $1}' "$work/first_stmt_preload.txt" | median_of)
preload_act=$(awk '{print $2}' "$work/first_stmt_preload.txt" | median_of)
preload_ms=$(awk '{print $2 - $1}' "$work/first_stmt_preload.txt" | median_of)
connect_base=$(awk '{print $1}' "$work/connect.txt" | median_of)
connect_act=$(awk '{print $2}' "$work/connect.txt" | median_of)
first_ms=$(awk '{print $2 - $1}' "$work/connect.txt" | median_of)

# 4. decide() throughput.
echo "decide() with pgbench..." >&2
cat >"$work/decide_pos.sql" <<'SQL'
\set s random(1, 5)
\set m random(1000, 19999)
SELECT * FROM rl_mlops.decide('default', 'SYM' || :s, timestamptz '2026-01-01' + :m * interval '1 minute', 0);
SQL
cat >"$work/decide_replay.sql" <<'SQL'
\set s random(1, 5)
\set m random(1000, 19999)
SELECT * FROM rl_mlops.decide('default', 'SYM' || :s, timestamptz '2026-01-01' + :m * interval '1 minute');
SQL
tps() { pgbench -n -c "$CLIENTS" -j "$CLIENTS" -T "$SECONDS_PER_RUN" -f "$1" bench 2>/dev/null |
	sed -n 's/^tps = \([0-9.]*\) .*/\1/p'; }
for r in 1 2 3; do
	tps "$work/decide_pos.sql" >>"$work/decide_pos.txt"
	tps "$work/decide_replay.sql" >>"$work/decide_replay.txt"
done
decide_pos=$(median_of <"$work/decide_pos.txt")
decide_replay=$(median_of <"$work/decide_replay.txt")

speedup_eager=$(awk -v t="$eager_us" -v a="$act_us" 'BEGIN {printf "%.1f", t / a}')
speedup_traced=$(awk -v t="$traced_us" -v a="$act_us" 'BEGIN {printf "%.1f", t / a}')
cpu=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)
cat <<EOF | tee "$work/results.md"
### Run of $(date -u +%Y-%m-%d) on ${cpu:-unknown CPU}, $(nproc) CPUs, load average before: $(cut -d' ' -f1-3 /proc/loadavg)

| measure | median | target |
| --- | --- | --- |
| act() per call, $N_OBS calls in one query ($REPS runs: ${act_ms} ms with act, ${base_ms} ms baseline) | **${act_us} µs** | ≤ 3 µs |
| libtorch $torch_version forward, batch 1, 1 thread, eager | ${eager_us} µs (act ${speedup_eager}x faster) | act ≥ 5x faster |
| libtorch $torch_version forward, batch 1, 1 thread, TorchScript trace | ${traced_us} µs (act ${speedup_traced}x faster) | |
| first act() of a fresh connection, over connect + SELECT 1 (${connect_act} vs ${connect_base} ms per connection, $CONNECT_TX connections x $REPS runs) | **${first_ms} ms** | < 5 ms |
| first act() as the first statement of a fresh connection, over SELECT 1 as the first statement (${stmt_act} vs ${stmt_base} ms, psql \\timing, $((REPS * 5)) connections each) | **${stmt_ms} ms** | |
| the same with shared_preload_libraries = 'rl_mlops' (${preload_act} vs ${preload_base} ms) | **${preload_ms} ms** | |
| decide() with the position given, $CLIENTS clients, $SECONDS_PER_RUN s x 3 runs | ${decide_pos} TPS | |
| decide() with position NULL (replay of 256 bars), $CLIENTS clients | ${decide_replay} TPS | |
EOF
