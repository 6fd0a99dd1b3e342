#!/usr/bin/env bash
# decide() on a 2-million-row source with and without an index leading
# with (symbol, ts) (issue 15, "Index advice"): 200 symbols x 10,000
# one-minute bars, an imported PyTorch-initialised checkpoint; pgbench,
# 1 client, decide() of a random symbol at its last bar with the position
# given.  ROUNDS rounds alternate: no index, then the index (created, then
# dropped, between runs).  Median latency; `uptime` before and after.
# Informative only.
#
#   bash bench/serve/index.sh                (as root or as postgres; ~2 minutes)
#   SECONDS_PER_RUN=10 ROUNDS=3 bash bench/serve/index.sh
#
# Needs the extension installed and /usr/bin/python3 with torch.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
ROUNDS=${ROUNDS:-3}

if [ "$(id -u)" = 0 ]; then
	work=$(mktemp -d /tmp/rl_mlops_bench_index.XXXXXX)
	mkdir -p "$work/src/test/lib" "$work/src/test/python" "$work/src/bench/serve"
	cp "$root/test/lib/cluster.sh" "$work/src/test/lib/"
	cp "$root/test/python/interop.py" "$work/src/test/python/"
	cp "$here/index.sh" "$work/src/bench/serve/"
	chown -R postgres "$work"
	exec runuser -u postgres -- env BENCH_WORK="$work" SECONDS_PER_RUN="$SECONDS_PER_RUN" \
		ROUNDS="$ROUNDS" bash "$work/src/bench/serve/index.sh"
fi
work=${BENCH_WORK:-$(mktemp -d /tmp/rl_mlops_bench_index.XXXXXX)}
source "$root/test/lib/cluster.sh"
start_cluster "$work/cluster" "shared_buffers = '512MB'" >/dev/null
trap 'stop_cluster; rm -rf "$work/cluster"' EXIT
createdb bench
q() { psql -X -q -v ON_ERROR_STOP=1 -d bench "$@"; }
median_of() { sort -g | awk '{a[NR] = $1} END {if (NR % 2) m = a[(NR + 1) / 2]; else m = (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.3f\n", m}'; }
/usr/bin/python3 "$root/test/python/interop.py" write "$work/ck.safetensors" --seed 1
q <<SQL
\o /dev/null
SET client_min_messages = warning;
CREATE EXTENSION rl_mlops;
CREATE TABLE bars (symbol text, ts timestamptz, price float8);
INSERT INTO bars
SELECT 'SYM' || s, timestamptz '2026-01-01' + i * interval '1 minute',
       100 * exp(0.002 * sin(i * 0.05 + s) + 0.001 * sin(i * 0.7 * s))
  FROM generate_series(1, 200) AS s, generate_series(0, 9999) AS i;
ANALYZE bars;
SELECT rl_mlops.create_agent('default', 'bars');
SELECT rl_mlops.import_model('default', pg_read_binary_file('$work/ck.safetensors')) AS v \gset
SELECT rl_mlops.validate_model('default', :'v');
SELECT rl_mlops.deploy_model('default', :'v');
SQL
rows=$(q -tA -c "SELECT count(*) FROM bars")
cat >"$work/decide.sql" <<'SQL'
\set s random(1, 200)
SELECT * FROM rl_mlops.decide('default', 'SYM' || :s, timestamptz '2026-01-08', 0);
SQL
lat() { pgbench -n -c 1 -j 1 -T "$SECONDS_PER_RUN" -f "$work/decide.sql" bench 2>/dev/null |
	sed -n 's/^latency average = \([0-9.]*\) ms/\1/p'; }
load_before=$(uptime)
for _ in $(seq 1 "$ROUNDS"); do
	lat >>"$work/noindex.txt"
	q -c "CREATE INDEX bars_symbol_ts ON bars (symbol, ts)" -c "ANALYZE bars"
	lat >>"$work/index.txt"
	q -c "DROP INDEX bars_symbol_ts"
done
load_after=$(uptime)
echo "Command: SECONDS_PER_RUN=$SECONDS_PER_RUN ROUNDS=$ROUNDS bash bench/serve/index.sh"
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs; $rows rows in the source"
echo "uptime before: $load_before"
echo "uptime after:  $load_after"
echo
echo "| decide(), position given, pgbench 1 client, ${SECONDS_PER_RUN} s runs | median latency | runs (ms) |"
echo "| --- | ---: | --- |"
echo "| no index on (symbol, ts) | $(median_of <"$work/noindex.txt") ms | $(tr '\n' ' ' <"$work/noindex.txt") |"
echo "| CREATE INDEX ON bars (symbol, ts) | $(median_of <"$work/index.txt") ms | $(tr '\n' ' ' <"$work/index.txt") |"
