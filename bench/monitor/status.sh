#!/usr/bin/env bash
# How fast the monitoring read side answers with many agents (issue 12:
# "status() and the view answer in under 5 ms with 100 agents x 10
# versions"): a throwaway cluster with AGENTS agents of VERSIONS versions
# each, every version deployed in turn and paper-traded by monitor() (so
# every one has a live_metrics row, the newest a comparison), then REPS
# timed calls of each read:
#   - status(agent) of one agent (its monitoring section included),
#   - live_performance of one agent,
#   - the whole live_performance view (AGENTS x VERSIONS rows),
#   - scheduler-free monitoring section alone (_monitoring_status).
# Interleaved, one psql session, \timing (client round trip included).
# Prints a markdown table with `uptime` before and after.  Informative
# only: no timing is a pass condition.
#
#   bash bench/monitor/status.sh                  (as root or postgres; ~2 minutes)
#   AGENTS=20 VERSIONS=5 REPS=50 bash bench/monitor/status.sh
#
# Needs the extension installed (see the top-level README).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
AGENTS=${AGENTS:-100}
VERSIONS=${VERSIONS:-10}
REPS=${REPS:-200}

if [ "$(id -u)" = 0 ]; then
	work=$(mktemp -d /tmp/rl_mlops_bench_status.XXXXXX)
	mkdir -p "$work/src/test/lib" "$work/src/bench/monitor"
	cp "$root/test/lib/cluster.sh" "$work/src/test/lib/"
	cp "$here/status.sh" "$work/src/bench/monitor/"
	chown -R postgres "$work"
	exec runuser -u postgres -- env BENCH_WORK="$work" AGENTS="$AGENTS" VERSIONS="$VERSIONS" \
		REPS="$REPS" bash "$work/src/bench/monitor/status.sh"
fi
work=${BENCH_WORK:-$(mktemp -d /tmp/rl_mlops_bench_status.XXXXXX)}
source "$root/test/lib/cluster.sh"
start_cluster "$work/cluster" "fsync = on" "shared_buffers = '256MB'" >/dev/null
trap 'stop_cluster; rm -rf "$work/cluster"' EXIT
createdb bench
q() { psql -X -q -v ON_ERROR_STOP=1 -d bench "$@"; }
t_start=$(date +%s)

# One trained model (2 epochs) gives the checkpoint every version imports.
# Each agent reads its own symbol of one table; versions are deployed in
# turn, each after 20 new bars that all live versions paper-trade.
echo "setup: $AGENTS agents x $VERSIONS versions..." >&2
q <<SQL
\o /dev/null
SET client_min_messages = warning;
CREATE EXTENSION rl_mlops;
CREATE TABLE bars AS
SELECT * FROM rl_mlops.synthetic_bars($AGENTS, 1500, 0.1, 0.01,
                                      date_trunc('minute', now()) - interval '1500 minutes',
                                      '1 minute', 0.3);
CREATE INDEX ON bars (symbol, ts);
CREATE TABLE seed_bars AS SELECT * FROM bars WHERE symbol = 'SYM001';
SELECT rl_mlops.create_agent('seed', 'seed_bars') IS NULL;
SELECT rl_mlops.configure('seed', initial_epochs => 2, data_window => '2 days') IS NULL;
SELECT rl_mlops.retrain('seed', async => false) IS NULL;
CREATE TABLE ckpt AS SELECT rl_mlops.export_model('seed') AS bytes;
SQL
for a in $(seq 1 "$AGENTS"); do
	sym=$(printf 'SYM%03d' "$a")
	echo "CREATE VIEW src_$a AS SELECT * FROM bars WHERE symbol = '$sym';"
	echo "SELECT rl_mlops.create_agent('a$a', 'src_$a') IS NULL;"
	echo "SELECT rl_mlops.configure('a$a', probation_days => 365) IS NULL;"
done | q -o /dev/null
for k in $(seq 1 "$VERSIONS"); do
	for a in $(seq 1 "$AGENTS"); do
		echo "SELECT rl_mlops.import_model('a$a', (SELECT bytes FROM ckpt)) AS v \\gset"
		echo "SELECT rl_mlops.validate_model('a$a', :'v') IS NULL;"
		echo "SELECT rl_mlops.deploy_model('a$a', :'v', 'bench') IS NULL;"
	done
	# 20 new bars per symbol, after every version's first live bar
	echo "INSERT INTO bars SELECT b.symbol, g.t, b.price * exp(0.001 * sin(g.i))
	        FROM (SELECT DISTINCT ON (symbol) symbol, price FROM bars ORDER BY symbol, ts DESC) b,
	             LATERAL (SELECT i, greatest(now(), (SELECT max(ts) FROM bars)) + i * interval '1 second' AS t
	                        FROM generate_series(1, 20) i) g;"
	for a in $(seq 1 "$AGENTS"); do echo "SELECT rl_mlops.monitor('a$a') IS NULL;"; done
done | q -o /dev/null
rows=$(q -tA -c "SELECT count(*) FROM rl_mlops.live_performance")
versions=$(q -tA -c "SELECT count(*) FROM rl_mlops.models WHERE agent <> 'seed'")
setup_s=$(($(date +%s) - t_start))

stats() {
	sort -n | awk '{a[NR] = $1} END {
		m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
		k = int(0.9 * NR); if (k < 0.9 * NR) k++
		printf "%.3f %.3f %.3f %.3f %d\n", m, a[k], a[1], a[NR], NR}'
}
{
	echo '\timing on'
	for r in $(seq 1 "$REPS"); do
		a=$(( (r * 37) % AGENTS + 1 ))
		echo "SELECT 'status', rl_mlops.status('a$a') IS NULL;"
		echo "SELECT 'one', count(*) FROM rl_mlops.live_performance WHERE agent = 'a$a';"
		echo "SELECT 'all', count(*) FROM (SELECT * FROM rl_mlops.live_performance) p;"
		echo "SELECT 'monitoring', rl_mlops._monitoring_status('a$a') IS NULL;"
	done
} >"$work/reads.sql"
load_before=$(uptime)
q -tA -f "$work/reads.sql" | awk -F'|' '
	/^Time: / {if (tag != "") {sub(/^Time: /, ""); sub(/ ms.*/, ""); print tag, $0}; tag = ""; next}
	NF == 2 {tag = $1}' >"$work/reads.times"
load_after=$(uptime)

echo "Command: AGENTS=$AGENTS VERSIONS=$VERSIONS REPS=$REPS bash bench/monitor/status.sh"
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs; $(psql -X -tA -d bench -c 'SHOW server_version'); setup ${setup_s} s"
echo "$versions versions registered, $rows rows in live_performance"
echo "uptime before the reads: $load_before"
echo "uptime after the reads:  $load_after"
echo
echo "| read (psql \\timing, round trip included) | median | p90 | min | max | calls |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
for tag in status one monitoring all; do
	read -r med p90 mn mx n < <(awk -v t="$tag" '$1 == t {print $2}' "$work/reads.times" | stats)
	case $tag in
	status) what="status(agent), one agent";;
	one) what="live_performance WHERE agent = one agent";;
	monitoring) what="_monitoring_status(agent) (status()'s monitoring section)";;
	all) what="the whole live_performance view ($rows rows)";;
	esac
	echo "| $what | $med ms | $p90 ms | $mn ms | $mx ms | $n |"
done
