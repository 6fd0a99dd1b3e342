#!/usr/bin/env bash
# decide() throughput with A/B challengers (issue 13: "decide() throughput
# with two challengers at a 0.5 total share against none, goal within
# 10%"), on a throwaway cluster: 50 symbols x 20,000 one-minute bars, a
# champion and two challengers (PyTorch-initialised checkpoints, seeds 1-3);
# pgbench, CLIENTS clients, decide() of a random symbol at a random bar with
# the position given.  ROUNDS rounds alternate: no challenger, then the two
# at 0.25 each (added, then removed, between runs).  Medians; `uptime`
# before and after.  Informative only: no timing is a pass condition.
#
#   bash bench/serve/challengers.sh          (as root or as postgres; ~2 minutes)
#   CLIENTS=2 SECONDS_PER_RUN=10 ROUNDS=5 bash bench/serve/challengers.sh
#
# Needs the extension installed and /usr/bin/python3 with torch.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
CLIENTS=${CLIENTS:-2}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
ROUNDS=${ROUNDS:-5}

if [ "$(id -u)" = 0 ]; then
	work=$(mktemp -d /tmp/rl_mlops_bench_ab.XXXXXX)
	mkdir -p "$work/src/test/lib" "$work/src/test/python" "$work/src/bench/serve"
	cp "$root/test/lib/cluster.sh" "$work/src/test/lib/"
	cp "$root/test/python/interop.py" "$work/src/test/python/"
	cp "$here/challengers.sh" "$work/src/bench/serve/"
	chown -R postgres "$work"
	exec runuser -u postgres -- env BENCH_WORK="$work" CLIENTS="$CLIENTS" \
		SECONDS_PER_RUN="$SECONDS_PER_RUN" ROUNDS="$ROUNDS" bash "$work/src/bench/serve/challengers.sh"
fi
work=${BENCH_WORK:-$(mktemp -d /tmp/rl_mlops_bench_ab.XXXXXX)}
source "$root/test/lib/cluster.sh"
start_cluster "$work/cluster" "shared_buffers = '256MB'" "max_connections = 50" >/dev/null
trap 'stop_cluster; rm -rf "$work/cluster"' EXIT
createdb bench
q() { psql -X -q -v ON_ERROR_STOP=1 -d bench "$@"; }
median_of() { sort -g | awk '{a[NR] = $1} END {if (NR % 2) m = a[(NR + 1) / 2]; else m = (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.1f\n", m}'; }
for seed in 1 2 3; do
	/usr/bin/python3 "$root/test/python/interop.py" write "$work/ck$seed.safetensors" --seed "$seed"
done
q <<SQL
\o /dev/null
SET client_min_messages = warning;
CREATE EXTENSION rl_mlops;
CREATE TABLE bars (symbol text, ts timestamptz, price float8);
INSERT INTO bars
SELECT 'SYM' || s, timestamptz '2026-01-01' + i * interval '1 minute',
       100 * exp(0.002 * sin(i * 0.05 + s) + 0.001 * sin(i * 0.7 * s))
  FROM generate_series(1, 50) AS s, generate_series(0, 19999) AS i;
CREATE INDEX ON bars (symbol, ts);
ANALYZE bars;
SELECT rl_mlops.create_agent('default', 'bars');
CREATE TABLE v (seed int, version text);
SELECT rl_mlops.import_model('default', pg_read_binary_file('$work/ck1.safetensors')) AS v1 \gset
SELECT rl_mlops.import_model('default', pg_read_binary_file('$work/ck2.safetensors')) AS v2 \gset
SELECT rl_mlops.import_model('default', pg_read_binary_file('$work/ck3.safetensors')) AS v3 \gset
INSERT INTO v VALUES (1, :'v1'), (2, :'v2'), (3, :'v3');
SELECT rl_mlops.validate_model('default', version) FROM v;
SELECT rl_mlops.deploy_model('default', :'v1');
SQL
cat >"$work/decide.sql" <<'SQL'
\set s random(1, 50)
\set m random(1000, 19999)
SELECT * FROM rl_mlops.decide('default', 'SYM' || :s, timestamptz '2026-01-01' + :m * interval '1 minute', 0);
SQL
tps() { pgbench -n -c "$CLIENTS" -j "$CLIENTS" -T "$SECONDS_PER_RUN" -f "$work/decide.sql" bench 2>/dev/null |
	sed -n 's/^tps = \([0-9.]*\) .*/\1/p'; }
load_before=$(uptime)
for r in $(seq 1 "$ROUNDS"); do
	tps >>"$work/none.txt"
	q -c "SELECT rl_mlops.add_challenger('default', version, 0.25) FROM v WHERE seed > 1" -o /dev/null
	tps >>"$work/ab.txt"
	q -c "SELECT rl_mlops.remove_challenger('default', version) FROM v WHERE seed > 1" -o /dev/null
done
load_after=$(uptime)
q -c "SELECT rl_mlops.add_challenger('default', version, 0.25) FROM v WHERE seed > 1" -o /dev/null
split=$(q -tA -c "SELECT string_agg(n::text, ' / ' ORDER BY seed) FROM (
	SELECT v.seed, count(d.*) AS n FROM v LEFT JOIN (
	    SELECT (rl_mlops.decide('default', 'SYM' || s)).version FROM generate_series(1, 50) s) d
	    ON d.version = v.version GROUP BY v.seed) x")
none=$(median_of <"$work/none.txt")
ab=$(median_of <"$work/ab.txt")
echo "Command: CLIENTS=$CLIENTS SECONDS_PER_RUN=$SECONDS_PER_RUN ROUNDS=$ROUNDS bash bench/serve/challengers.sh"
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs"
echo "uptime before: $load_before"
echo "uptime after:  $load_after"
echo "symbols decided by the champion / challenger 1 / challenger 2 (of 50): $split"
echo
echo "| decide(), position given, pgbench $CLIENTS clients, ${SECONDS_PER_RUN} s runs | median tps | runs (tps) |"
echo "| --- | ---: | --- |"
echo "| champion only | $none | $(tr '\n' ' ' <"$work/none.txt") |"
echo "| two A/B challengers at 0.25 each | $ab | $(tr '\n' ' ' <"$work/ab.txt") |"
awk -v a="$ab" -v n="$none" 'BEGIN {printf "\nwith challengers / without: %.3f\n", a / n}'
