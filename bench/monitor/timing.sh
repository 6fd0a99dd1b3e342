#!/usr/bin/env bash
# Timings of rl_mlops.monitor() on a throwaway cluster (issue 12, "Measured,
# in bench/"):
#  1. one new 1-minute bar for 50 symbols x 3 versions (a trained champion
#     replaced twice by imported copies of itself: the champion and two
#     versions in shadow, all in probation): after a catch-up call, one bar
#     per symbol is added, then one monitor() call is timed; REPS times.
#     Beside it, interleaved in the same reps, the same call for 50 symbols
#     x 1 version, 1 symbol x 3 versions and 1 symbol x 1 version (to see
#     what the time grows with), and a second 50 x 3 call with no new bar.
#  2. catching up one day of 1-minute bars, 1,440 bars x 10 symbols x 2
#     versions (a trained version and an imported copy deployed over it),
#     in one call, on a fresh agent each time; CATCHUP_REPS agents.
#  3. where a one-bar 50 x 3 call spends its time: the cluster is restarted
#     with pg_stat_statements (track = all, track_planning = on), and the
#     statements monitor() runs are listed with their planning and execution
#     time per call (PROFILE_REPS calls).  Skipped if pg_stat_statements is
#     not installed.
# Each timed statement is its own transaction (psql autocommit, \timing:
# the commit is included).  Prints a markdown report (also kept as
# $work/results.md) with `uptime` before and after and nproc.  Timings are
# informative only, never pass conditions.
#
#   bash bench/monitor/timing.sh          (as root or as postgres; ~2 minutes)
#   REPS=30 CATCHUP_REPS=5 PROFILE_REPS=10 bash bench/monitor/timing.sh
#
# Needs the extension installed (see the top-level README).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
REPS=${REPS:-40}                   # one-bar calls per configuration
CATCHUP_REPS=${CATCHUP_REPS:-5}    # fresh agents catching up one day
PROFILE_REPS=${PROFILE_REPS:-10}   # one-bar calls under pg_stat_statements
STATS_REPS=3                       # one-bar calls with the stage timers on
TRAIN_BARS=${TRAIN_BARS:-1500}     # 1-minute bars before now() to train on
CATCHUP_BARS=1440                  # one day of 1-minute bars
FIRST_BARS=60                      # the bars of part 1's catch-up call

# initdb refuses root: copy what we need and run as postgres.
if [ "$(id -u)" = 0 ]; then
	work=$(mktemp -d /tmp/rl_mlops_bench_monitor.XXXXXX)
	mkdir -p "$work/src/test/lib" "$work/src/bench/monitor"
	cp "$root/test/lib/cluster.sh" "$work/src/test/lib/"
	cp "$here/timing.sh" "$work/src/bench/monitor/"
	chown -R postgres "$work"
	exec runuser -u postgres -- env BENCH_WORK="$work" REPS="$REPS" CATCHUP_REPS="$CATCHUP_REPS" \
		PROFILE_REPS="$PROFILE_REPS" TRAIN_BARS="$TRAIN_BARS" \
		bash "$work/src/bench/monitor/timing.sh"
fi
work=${BENCH_WORK:-$(mktemp -d /tmp/rl_mlops_bench_monitor.XXXXXX)}
source "$root/test/lib/cluster.sh"
# fsync on (cluster.sh turns it off for tests): each call's commit really
# reaches the disk, as in production.
conf=("fsync = on" "shared_buffers = '256MB'" "max_wal_size = '4GB'" "checkpoint_timeout = '30min'")
start_cluster "$work/cluster" "${conf[@]}" >/dev/null
trap 'stop_cluster; rm -rf "$work/cluster"' EXIT
createdb bench
q() { psql -X -q -v ON_ERROR_STOP=1 -d bench "$@"; }
load_start=$(uptime)
t_start=$(date +%s)

# stats: "median p90 min max n" of the numbers on stdin (p90: nearest rank)
stats() {
	sort -n | awk '{a[NR] = $1} END {
		if (NR == 0) {print "n/a n/a n/a n/a 0"; exit}
		m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
		k = int(0.9 * NR); if (k < 0.9 * NR) k++
		printf "%.2f %.2f %.2f %.2f %d\n", m, a[k], a[1], a[NR], NR}'
}
# timed FILE OUT: runs FILE (\timing on where it wants); every timed
# statement prints one row "tag|decisions" first; writes "tag decisions ms"
# lines to OUT.
timed() {
	q -tA -f "$1" | awk -F'|' '
		/^Time: / {if (tag != "") {sub(/^Time: /, ""); sub(/ ms.*/, ""); print tag, dec, $0}; tag = ""; next}
		NF == 2 {tag = $1; dec = $2}' >"$2"
}
# the decisions of one monitor() result: the sum over its versions
dec_sql() { echo "(SELECT sum((x ->> 'decisions')::bigint) FROM jsonb_array_elements(m -> 'versions') x)"; }

# setup_agent NAME TABLE VERSIONS: a trained champion (2 epochs on the
# table's bars, all before now()), then VERSIONS - 1 imported copies of it,
# each validated and deployed in turn: the earlier ones stay in shadow
# (probation).  Fails unless _live_versions lists VERSIONS versions.
setup_agent() {
	cat <<SQL
SET client_min_messages = warning;
SELECT rl_mlops.create_agent('$1', '$2') IS NULL;
SELECT rl_mlops.configure('$1', initial_epochs => 2, data_window => '2 days') IS NULL;
SELECT rl_mlops.retrain('$1', async => false) IS NULL;
DO \$\$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM rl_mlops.models WHERE agent = '$1' AND state = 'active') THEN
        RAISE EXCEPTION 'agent $1: the training run deployed no model';
    END IF;
END \$\$;
SQL
	for _ in $(seq 2 "$3"); do
		cat <<SQL
SELECT rl_mlops.import_model('$1', rl_mlops.export_model('$1')) AS v \gset
SELECT rl_mlops.validate_model('$1', :'v') IS NULL;
SELECT rl_mlops.deploy_model('$1', :'v', 'bench') IS NULL;
SQL
	done
	cat <<SQL
DO \$\$ BEGIN
    IF (SELECT count(*) FROM rl_mlops._live_versions('$1')) <> $3 THEN
        RAISE EXCEPTION 'agent $1: expected $3 live versions';
    END IF;
END \$\$;
SQL
}

#
# 1. One new bar: 50 x 3 (the goal), 50 x 1, 1 x 3, 1 x 1, and 50 x 3 with
#    no new bar.
#
# All bars come from one AR(1) series per symbol: the first TRAIN_BARS end
# at the current minute t0 (training data); the rest are the bars that
# arrive later.  A model's first live bar is after its newest training bar
# (trained) or after its import (imported), so the later bars are shifted
# to start at the minute after the last deployment (a gap in time only:
# prices continue), and every version trades every one of them.
FUTURE=$((FIRST_BARS + REPS + STATS_REPS + PROFILE_REPS + 5))
echo "part 1: data and 4 agents (50 x 3, 50 x 1, 1 x 3, 1 x 1)..." >&2
q <<SQL
\o /dev/null
SET client_min_messages = warning;
CREATE EXTENSION rl_mlops;
CREATE TABLE t0 AS SELECT date_trunc('minute', now()) AS t0;
CREATE TABLE s50_all AS
SELECT * FROM rl_mlops.synthetic_bars(50, $TRAIN_BARS + $FUTURE, 0.25, 0.01,
                                      (SELECT t0 FROM t0) - $TRAIN_BARS * interval '1 minute',
                                      '1 minute', 0.3);
CREATE INDEX ON s50_all (ts);
CREATE TABLE s50 AS SELECT * FROM s50_all WHERE ts < (SELECT t0 FROM t0);
CREATE INDEX ON s50 (symbol, ts);
CREATE TABLE s1 AS SELECT * FROM s50 WHERE symbol = 'SYM001';
CREATE INDEX ON s1 (symbol, ts);
ANALYZE s50_all, s50, s1;
SQL
{
	setup_agent m50v3 s50 3
	setup_agent m50v1 s50 1
	setup_agent m1v3 s1 3
	setup_agent m1v1 s1 1
} | q -o /dev/null
# the later bars: bar k (0-based) of the future part at shift.d + k minutes
q -o /dev/null -c "CREATE TABLE shift AS
	SELECT t0, date_trunc('minute', now()) + interval '1 minute' - t0 AS d FROM t0"
extversion=$(q -tA -c "SELECT extversion FROM pg_extension WHERE extname = 'rl_mlops'")
lib="$(pg_config --pkglibdir 2>/dev/null || echo "$PGBIN/../lib")/rl_mlops.so"
ckpt_bytes=$(q -tA -c "SELECT size_bytes FROM rl_mlops.models WHERE agent = 'm50v3' AND state = 'active'")
# add_bars FROM TO [s50]: future bars FROM..TO-1 of every symbol, to s50
# and s1 (only to s50 if asked)
add_bars() {
	echo "INSERT INTO s50 SELECT symbol, ts + d, price FROM s50_all, shift" \
	     "WHERE ts >= t0 + $1 * interval '1 minute' AND ts < t0 + $2 * interval '1 minute';"
	[ "${3:-}" = s50 ] ||
		echo "INSERT INTO s1 SELECT symbol, ts + d, price FROM s50_all, shift" \
		     "WHERE symbol = 'SYM001' AND ts >= t0 + $1 * interval '1 minute' AND ts < t0 + $2 * interval '1 minute';"
}
{
	add_bars 0 "$FIRST_BARS"
	for a in m50v3 m50v1 m1v3 m1v1; do echo "SELECT '$a-catchup', $(dec_sql) FROM rl_mlops.monitor('$a') m;"; done
} | q -tA >"$work/catchup1.out"
# the catch-up call of each agent: FIRST_BARS - 1 decisions per version and symbol
expect=$(((FIRST_BARS - 1) * (150 + 50 + 3 + 1)))
got=$(awk -F'|' '{s += $2} END {print s}' "$work/catchup1.out")
[ "$got" = "$expect" ] || { echo "catch-up: $got decisions, expected $expect" >&2; cat "$work/catchup1.out" >&2; exit 1; }

# one session: per rep, one bar per symbol arrives (untimed), then the four
# one-bar calls (interleaved, so that load changes hit all alike), then a
# 50 x 3 call with no new bar
{
	echo '\timing off'
	for r in $(seq 1 "$REPS"); do
		k=$((FIRST_BARS + r - 1))
		echo '\timing off'
		add_bars "$k" $((k + 1))
		echo '\timing on'
		for a in m50v3 m50v1 m1v3 m1v1; do echo "SELECT '$a', $(dec_sql) FROM rl_mlops.monitor('$a') m;"; done
		echo "SELECT 'm50v3-idle', $(dec_sql) FROM rl_mlops.monitor('m50v3') m;"
	done
} >"$work/onebar.sql"
load_before1=$(uptime)
timed "$work/onebar.sql" "$work/onebar.times"
load_after1=$(uptime)
# one decision per version and symbol in every one-bar call, none when idle
awk '{want = ($1 == "m50v3") ? 150 : ($1 == "m50v1") ? 50 : ($1 == "m1v3") ? 3 : ($1 == "m1v1") ? 1 : 0
      if ($2 != want) {print "call " NR " of " $1 ": " $2 " decisions, expected " want; bad = 1}}
     END {exit bad}' "$work/onebar.times" >&2
for a in m50v3 m50v1 m1v3 m1v1 m50v3-idle; do
	read -r med p90 mn mx n < <(awk -v a="$a" '$1 == a {print $3}' "$work/onebar.times" | stats)
	eval "med_${a//-/_}=$med p90_${a//-/_}=$p90 min_${a//-/_}=$mn max_${a//-/_}=$mx n_${a//-/_}=$n"
done
# t(S, V) = a + b V + c S + d S V from the four medians: the cost of a call
# (a), of a version (b: its checkpoint read, parsed, its metrics row), of a
# symbol (c: its subtransaction) and of a symbol of a version (d: its
# position, the two reads of the source, the forward pass, the ledger rows)
read -r fit_a fit_b fit_c fit_d < <(awk -v t11="$med_m1v1" -v t13="$med_m1v3" -v t51="$med_m50v1" -v t53="$med_m50v3" 'BEGIN {
	d = ((t53 - t51) - (t13 - t11)) / 98; b = (t13 - t11) / 2 - d; c = (t51 - t11) / 49 - d
	printf "%.3f %.3f %.3f %.3f\n", t11 - b - c - d, b, c, d}')

#
# 2. Catching up one day: 1,440 bars x 10 symbols x 2 versions, one call,
#    a fresh agent (its own copy of the bars) each time.
#
echo "part 2: $CATCHUP_REPS fresh agents catching up one day..." >&2
q -o /dev/null <<SQL
CREATE TABLE c_all AS
SELECT * FROM rl_mlops.synthetic_bars(10, $TRAIN_BARS + $CATCHUP_BARS + 1, 0.25, 0.01,
                                      (SELECT t0 FROM t0) - $TRAIN_BARS * interval '1 minute',
                                      '1 minute', 0.7);
SQL
: >"$work/day.times"
load_before2=$(uptime)
for r in $(seq 1 "$CATCHUP_REPS"); do
	{
		cat <<SQL
SET client_min_messages = warning;
CREATE TABLE c$r AS SELECT * FROM c_all WHERE ts < (SELECT t0 FROM t0);
CREATE INDEX ON c$r (symbol, ts);
ANALYZE c$r;
SQL
		setup_agent "c$r" "c$r" 2
		# 1,441 bars after the deployment: 1,440 decisions per symbol and version
		cat <<SQL
INSERT INTO c$r SELECT symbol, ts + (date_trunc('minute', now()) + interval '1 minute' - t0), price
  FROM c_all, t0 WHERE ts >= t0;
\\timing on
SELECT 'c$r', $(dec_sql) FROM rl_mlops.monitor('c$r') m;
SQL
	} >"$work/day$r.sql"
	timed "$work/day$r.sql" "$work/day$r.times"
	cat "$work/day$r.times" >>"$work/day.times"
done
load_after2=$(uptime)
awk -v want=$((CATCHUP_BARS * 10 * 2)) '$2 != want {print $1 ": " $2 " decisions, expected " want; bad = 1} END {exit bad}' \
	"$work/day.times" >&2
read -r med_day p90_day min_day max_day n_day < <(awk '{print $3}' "$work/day.times" | stats)
day_list=$(awk '{printf "%s%.0f", (NR > 1 ? ", " : ""), $3}' "$work/day.times")

#
# 3. Where a one-bar 50 x 3 call spends its time.
# a. The server's own stage timers (log_parser_stats, log_planner_stats):
#    the time every statement run inside monitor() spends in parse
#    analysis, rewriting and planning (raw parsing is not timed), summed
#    over a call, STATS_REPS calls.  (Logging them makes those calls slower;
#    the stages' own times are measured around each stage.)
#
echo "part 3: profile..." >&2
k=$((FIRST_BARS + REPS))
log="$CLUSTER_DIR/server.log"
logsize=$(stat -c %s "$log")
{
	for r in $(seq 1 "$STATS_REPS"); do
		add_bars "$k" $((k + 1)) s50
		k=$((k + 1))
		echo "SET log_parser_stats = on; SET log_planner_stats = on;"
		echo "SELECT rl_mlops.monitor('m50v3') IS NULL;"
		echo "RESET log_parser_stats; RESET log_planner_stats;"
	done
} | q -o /dev/null
k=$((k + STATS_REPS))   # (the block above ran in a subshell)
tail -c +$((logsize + 1)) "$log" | awk -v reps="$STATS_REPS" '
	/LOG:  [A-Z ]+ STATISTICS/ {match($0, /LOG:  [A-Z ]+ STATISTICS/); stage = substr($0, RSTART + 6, RLENGTH - 17); gsub(/ /, "_", stage); next}
	/ s elapsed/ && stage != "" {for (i = 1; i < NF; i++) if ($(i + 1) == "s" && $(i + 2) == "elapsed") {t[stage] += $i; n[stage]++}; stage = ""}
	END {for (x in t) printf "%s %.1f %.2f\n", x, n[x] / reps, 1000 * t[x] / reps}' >"$work/stages.txt"
stage() { awk -v s="$1" -v f="$2" '$1 == s {print $f}' "$work/stages.txt"; }

#
# b. pg_stat_statements with nested statements and planning time: the
#    cluster is restarted with it loaded.
#
have_pgss=$(q -tA -c "SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_stat_statements'")
if [ "$have_pgss" = 1 ]; then
	pg_ctl -D "$CLUSTER_DIR/data" -w -m fast restart -l "$log" \
		-o "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all -c pg_stat_statements.track_planning=on -c pg_stat_statements.max=10000" \
		>/dev/null
	{
		add_bars "$k" $((k + 1)) s50
		k=$((k + 1))
		echo "CREATE EXTENSION pg_stat_statements;"
		echo "SELECT rl_mlops.monitor('m50v3') IS NULL;"    # warm-up (caches after the restart)
		echo "SELECT pg_stat_statements_reset() IS NULL;"
		for r in $(seq 1 "$PROFILE_REPS"); do
			add_bars "$k" $((k + 1)) s50
			k=$((k + 1))
			echo "SELECT rl_mlops.monitor('m50v3') IS NULL;"
		done
	} | q -o /dev/null
	# one row per statement: calls, planning and execution ms per monitor() call
	q -tA -F $'\x1f' >"$work/profile.txt" <<SQL
SELECT CASE WHEN toplevel THEN 'top' ELSE 'nested' END,
       round(calls::numeric / $PROFILE_REPS, 1),
       round((total_plan_time / $PROFILE_REPS)::numeric, 2),
       round((total_exec_time / $PROFILE_REPS)::numeric, 2),
       regexp_replace(regexp_replace(query, '\s+', ' ', 'g'), 'OPERATOR\(pg_catalog\.([^)]+)\)', '\1', 'g')
  FROM pg_stat_statements
 WHERE query NOT LIKE 'INSERT INTO s50 %' AND query NOT LIKE '%pg_stat_statements%'
 ORDER BY total_plan_time + total_exec_time DESC
 LIMIT 14;
SQL
	# the statements run once per symbol and version, together
	read -r pair_n pair_plan pair_exec < <(q -tA -F ' ' -c "
		SELECT count(*), round((sum(total_plan_time) / $PROFILE_REPS)::numeric, 2),
		       round((sum(total_exec_time) / $PROFILE_REPS)::numeric, 2)
		  FROM pg_stat_statements WHERE NOT toplevel AND calls >= 100 * $PROFILE_REPS")
	read -r top_exec < <(q -tA -c "
		SELECT round((total_exec_time / calls)::numeric, 2) FROM pg_stat_statements
		 WHERE toplevel AND query LIKE '%rl_mlops.monitor(%'")
fi
load_end=$(uptime)

ms() { awk -v x="$1" 'BEGIN {printf "%.2f", x}'; }
us() { awk -v x="$1" 'BEGIN {printf "%.0f", 1000 * x}'; }
{
	echo "Command: \`REPS=$REPS CATCHUP_REPS=$CATCHUP_REPS PROFILE_REPS=$PROFILE_REPS bash bench/monitor/timing.sh\`;"
	echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')),"
	echo "$(postgres --version), fsync = on, shared_buffers = 256MB; $(($(date +%s) - t_start)) s in all."
	echo "rl_mlops $extversion, library $lib (modified $(date -u -r "$lib" '+%Y-%m-%d %H:%M:%S UTC'), md5 $(md5sum <"$lib" | cut -c1-12));"
	echo "a checkpoint (hidden 64, window 32, with Adam's state) is $ckpt_bytes bytes."
	echo
	echo '```'
	echo "uptime at the start:          $load_start"
	echo "before the one-bar calls:     $load_before1"
	echo "after the one-bar calls:      $load_after1"
	echo "before the one-day catch-ups: $load_before2"
	echo "after the one-day catch-ups:  $load_after2"
	echo "at the end:                   $load_end"
	echo '```'
	echo
	echo "| monitor() call (psql \\timing, its own transaction) | median | p90 | min | max | calls | goal |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: | --- |"
	echo "| **one new bar, 50 symbols x 3 versions** (150 decisions) | **$med_m50v3 ms** | $p90_m50v3 ms | $min_m50v3 ms | $max_m50v3 ms | $n_m50v3 | < 20 ms |"
	echo "| one new bar, 50 symbols x 1 version (50 decisions) | $med_m50v1 ms | $p90_m50v1 ms | $min_m50v1 ms | $max_m50v1 ms | $n_m50v1 | |"
	echo "| one new bar, 1 symbol x 3 versions (3 decisions) | $med_m1v3 ms | $p90_m1v3 ms | $min_m1v3 ms | $max_m1v3 ms | $n_m1v3 | |"
	echo "| one new bar, 1 symbol x 1 version (1 decision) | $med_m1v1 ms | $p90_m1v1 ms | $min_m1v1 ms | $max_m1v1 ms | $n_m1v1 | |"
	echo "| no new bar, 50 symbols x 3 versions (0 decisions) | $med_m50v3_idle ms | $p90_m50v3_idle ms | $min_m50v3_idle ms | $max_m50v3_idle ms | $n_m50v3_idle | |"
	echo "| **catching up 1,440 bars x 10 symbols x 2 versions** (28,800 decisions), fresh agent | **$med_day ms** | $p90_day ms | $min_day ms | $max_day ms | $n_day | < 2 s |"
	echo
	echo "One-day catch-ups, in order: $day_list ms."
	echo
	echo "Fit of the four one-bar medians to t(S, V) = a + b V + c S + d S V (S symbols, V versions):"
	echo
	echo "| term | cost | what it is |"
	echo "| --- | ---: | --- |"
	echo "| a, per call | $(ms "$fit_a") ms | lock, \`_live_versions\`, symbol list, positions read, comparison, \`monitor_calls\` row, ledger retention, commit |"
	echo "| b, per version | $(ms "$fit_b") ms | checkpoint read from its large object, sha256, parse; \`live_metrics\` read and upsert |"
	echo "| c, per symbol | $(us "$fit_c") µs | its subtransaction and its two source reads (for all versions) |"
	echo "| d, per symbol and version | $(us "$fit_d") µs | late-bar check, forward pass, its ledger and position rows in the batched writes |"
	echo "| 50 x 3 from the fit: 150 d / 3 b / 50 c / a | | $(ms "$(awk -v d="$fit_d" 'BEGIN {print 150 * d}')") / $(ms "$(awk -v b="$fit_b" 'BEGIN {print 3 * b}')") / $(ms "$(awk -v c="$fit_c" 'BEGIN {print 50 * c}')") / $(ms "$fit_a") ms |"
	echo
	echo "Stage timers (log_parser_stats, log_planner_stats), every statement run inside one"
	echo "one-bar 50 x 3 call, mean of $STATS_REPS calls (raw parsing is not timed):"
	echo
	echo "| stage | statements per call | ms per call |"
	echo "| --- | ---: | ---: |"
	for st in PARSE_ANALYSIS REWRITER PLANNER; do
		echo "| $(echo "$st" | tr 'A-Z_' 'a-z ') | $(stage "$st" 2) | $(stage "$st" 3) |"
	done
	if [ -s "$work/profile.txt" ]; then
		echo
		echo "pg_stat_statements (track = all, track_planning = on), $PROFILE_REPS one-bar 50 x 3 calls;"
		echo "per monitor() call. Nested times include the statements nested in them (the"
		echo "foreign-key checks in the inserts, the functions' own queries); parse and"
		echo "analysis time is not counted by pg_stat_statements."
		echo
		echo "| level | calls | planning ms | execution ms | statement (first 110 characters) |"
		echo "| --- | ---: | ---: | ---: | --- |"
		awk -F'\x1f' '{q = substr($5, 1, 110); gsub(/\|/, "\\|", q); printf "| %s | %s | %s | %s | `%s` |\n", $1, $2, $3, $4, q}' "$work/profile.txt"
		echo
		echo "The $pair_n statements run once per symbol and version: $pair_plan ms planning +"
		echo "$pair_exec ms execution per call; monitor() itself under pg_stat_statements: $top_exec ms."
	fi
} | tee "$work/results.md"
echo "(results kept in $work/results.md)" >&2
