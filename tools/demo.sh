#!/usr/bin/env bash
# make demo: the main job on a throwaway local cluster.  Starts PostgreSQL
# with pg_cron, makes a synthetic daily market (weak momentum, volatility
# clustering, fat tails), creates the agent, trains, validates and deploys
# the first model, schedules weekly retraining, runs one incremental
# retrain, lets new bars arrive and monitors the live models, deploys a
# deliberately bad model and shows the automatic rollback, adds a
# challenger, and writes the dashboard (with a screenshot when Chromium is
# installed).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
demo=${RL_MLOPS_DEMO_DIR:-/tmp/rl_mlops_demo}
PGBIN=/usr/lib/postgresql/15/bin

if [ "$(id -u)" = 0 ]; then
	user=postgres
	id -u "$user" >/dev/null 2>&1 || useradd --system --create-home "$user"
	run_as() { runuser -u "$user" -- "$@"; }
	as_user="runuser -u $user --"
else
	user=$(id -un)
	run_as() { "$@"; }
	as_user=""
fi

if [ -f "$demo/data/postmaster.pid" ]; then
	echo "== stopping the previous demo cluster in $demo"
	run_as "$PGBIN/pg_ctl" -D "$demo/data" -m fast -w stop >/dev/null || true
fi
rm -rf "$demo"
mkdir -p "$demo"
chown "$user" "$demo"

echo "== starting a throwaway cluster in $demo (Unix socket only, pg_cron preloaded)"
run_as bash -c "source '$src/test/lib/cluster.sh' && start_cluster '$demo' \
	\"shared_preload_libraries = 'pg_cron'\" \"cron.database_name = 'rl_demo'\" \
	\"cron.host = '$demo/socket'\""
export PGHOST="$demo/socket" PGPORT=5432
run_as "$PGBIN/createdb" -h "$PGHOST" rl_demo

# psql as the cluster's user; -v ON_ERROR_STOP so the demo stops on errors.
sql() { run_as "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGHOST" -d rl_demo "$@"; }

# Poll a run until it ends, printing its progress once a second.
follow_run() {
	local run=$1 line state
	while :; do
		line=$(sql -At -F ' ' -c "SELECT state, epoch, coalesce(epochs::text, '?'), coalesce(loss::text, '-'),
			coalesce(samples_per_second::text, '-') FROM rl_mlops.training_progress WHERE run_id = $run")
		set -- $line
		state=$1
		printf '   run %s: %-10s epoch %s/%s  loss %s  %s samples/s\n' "$run" "$1" "$2" "$3" "$4" "$5"
		case "$state" in succeeded|rejected|failed|cancelled) break ;; esac
		sleep 1
	done
}

echo "== CREATE EXTENSION pg_cron, rl_mlops"
sql -c "CREATE EXTENSION pg_cron" -c "CREATE EXTENSION rl_mlops"

# The market: 5 symbols of daily bars from 8 years ago to 2 years ahead;
# the first 8 years are in market_bars now, the rest arrive later.
echo "== market data: 5 symbols x 8 years of synthetic daily bars, and 2 more years that arrive later"
echo "   log returns r_t = 0.15 r_{t-1} + e_t: weak momentum; e_t GARCH(1,1) (alpha 0.08, beta 0.9,"
echo "   unconditional sd 1.5% a day) with Student-t(5) shocks: volatility clusters and fat tails"
sql -c "CREATE TABLE public.all_bars AS
          SELECT * FROM rl_mlops.synthetic_bars(symbols => 5, bars => 3653, phi => 0.15, sigma => 0.015,
                 start_at => date_trunc('day', now()) - interval '2922 days', step => '1 day', seed => 0.42,
                 garch_alpha => 0.08, garch_beta => 0.9, tail_df => 5)" \
	-c "CREATE TABLE public.market_bars AS SELECT * FROM public.all_bars WHERE ts <= now()" \
	-c "CREATE INDEX ON public.market_bars (symbol, ts)" \
	-c "SELECT symbol, count(*) AS bars, min(ts)::date, max(ts)::date, round(min(price)::numeric, 2) AS min_price,
	           round(max(price)::numeric, 2) AS max_price,
	           round((stddev(r) * sqrt(365))::numeric, 3) AS annual_vol,
	           round(((avg(r ^ 4) - 4 * avg(r) * avg(r ^ 3)) / stddev(r) ^ 4)::numeric, 1) AS kurtosis
	      FROM (SELECT symbol, ts, price, ln(price / lag(price) OVER (PARTITION BY symbol ORDER BY ts)) AS r
	              FROM public.market_bars) x GROUP BY 1 ORDER BY 1"

# Let n days of bars arrive, then call monitor(); print what it did.
arrive() {
	sql -At -c "INSERT INTO public.market_bars SELECT * FROM public.all_bars
	              WHERE ts > (SELECT max(ts) FROM public.market_bars)
	                AND ts <= (SELECT max(ts) FROM public.market_bars) + interval '$1 days'" \
		-c "SELECT '   ' || (SELECT max(ts)::date FROM public.market_bars) || ': '
		           || string_agg(x ->> 'version' || ' (' || (x ->> 'role') || ') +' || (x ->> 'decisions'), ', ')
		           || coalesce(' | actions: ' || nullif(m ->> 'actions', '[]'), '')
		      FROM rl_mlops.monitor('default') m, jsonb_array_elements(m -> 'versions') x GROUP BY m"
}

echo "== create the agent (window 32, 64x64 actor-critic) and check the trainer path"
sql -c "SELECT key, value FROM jsonb_each_text(rl_mlops.create_agent('default', 'public.market_bars'))
         WHERE key IN ('name', 'source', 'window_size', 'hidden_size', 'data_window', 'retention_days')" \
	-c "SELECT name, initial_epochs, data_window
	      FROM rl_mlops.configure('default', initial_epochs => 30, data_window => '8 years',
	                              ledger_retention_days => 3650)" \
	-c "SELECT ok, libtorch_version, loss_before, loss_after, max_forward_diff FROM rl_mlops.check_trainer()"

echo "== first training (from scratch): Step 1 data, Step 2 PPO, Step 3 validation, Step 4 deploy"
run=$(sql -At -c "SELECT rl_mlops.retrain('default')")
follow_run "$run"

echo "== schedule weekly retraining with pg_cron (checked hourly), and monitoring every minute"
sql -c "SELECT rl_mlops.schedule_retraining('default', interval_days => 7)" \
	-c "SELECT rl_mlops.schedule_monitoring('default')"

echo "== one incremental retrain (5 epochs, warm start from the active model)"
run=$(sql -At -c "SELECT rl_mlops.retrain('default')")
follow_run "$run"

echo "== holdout backtest of each version (greedy policy, 5 bp costs) against buy-and-hold"
sql -c "SELECT version, (metrics #>> '{holdout,steps}')::int AS steps,
               round((metrics #>> '{holdout,sharpe}')::numeric, 2) AS sharpe,
               round((metrics #>> '{holdout,total_log_return}')::numeric, 4) AS log_return,
               round((metrics #>> '{holdout,buy_hold_log_return}')::numeric, 4) AS buy_hold,
               round((metrics #>> '{initial,total_log_return}')::numeric, 4) AS before_training,
               round((metrics #>> '{holdout,max_drawdown}')::numeric, 4) AS max_drawdown,
               round((metrics #>> '{holdout,turnover}')::numeric, 3) AS turnover
          FROM rl_mlops.models ORDER BY created_at"

echo "== live: six months of new bars arrive, a monitor() call after each month"
for _ in 1 2 3 4 5 6; do arrive 30; done
sql -c "SELECT version, role, decisions, round(total_return::numeric, 4) AS live_return,
               round(sharpe::numeric, 2) AS live_sharpe, round(max_drawdown::numeric, 4) AS max_drawdown,
               round(buy_hold_return::numeric, 4) AS buy_hold, round(test_statistic::numeric, 2) AS test_statistic,
               round(test_threshold::numeric, 2) AS threshold
          FROM rl_mlops.live_performance WHERE agent = 'default'"

echo "== a deliberately bad model: the champion with its short and long actions swapped, deployed by hand"
good=$(sql -At -c "SELECT version FROM rl_mlops.models WHERE agent = 'default' AND state = 'active'")
sql -At -c "SELECT encode(rl_mlops.export_model('default'), 'hex')" | /usr/bin/python3 -c '
import json, struct, sys
b = bytearray.fromhex(sys.stdin.read().strip())
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
for t in ("actor.weight", "actor.bias"):
    o1, o2 = h[t]["data_offsets"]
    row = (o2 - o1) // 3
    base = 8 + n + o1
    short = bytes(b[base:base + row])
    b[base:base + row] = b[base + 2 * row:base + 3 * row]
    b[base + 2 * row:base + 3 * row] = short
sys.stdout.write(b.hex())' >"$demo/bad.hex"
chmod a+r "$demo/bad.hex"
bad=$(sql -At -c "SELECT rl_mlops.import_model('default', decode(pg_read_file('$demo/bad.hex'), 'hex'))")
sql -c "SELECT rl_mlops.validate_model('default', '$bad') ->> 'ok' AS valid" \
	-c "SELECT rl_mlops.deploy_model('default', '$bad', 'demo: a bad model') AS deployed"
echo "   bars arrive, a month at a time; the champion ($bad) and the version it replaced ($good) trade the same bars:"
for _ in $(seq 1 12); do
	arrive 30
	[ "$(sql -At -c "SELECT version FROM rl_mlops.models WHERE agent = 'default' AND state = 'active'")" = "$good" ] && break
done
echo "== the automatic rollback, on evidence (paired always-valid test, alpha 0.01)"
sql -c "SELECT id, action, version, previous_version, deployed_at::timestamp(0) FROM rl_mlops.deployments
         WHERE agent = 'default' ORDER BY id DESC LIMIT 2" \
	-c "SELECT jsonb_pretty(details) AS details FROM rl_mlops.deployments
	     WHERE agent = 'default' AND action = 'auto_rollback' ORDER BY id DESC LIMIT 1"

echo "== a challenger: the next retrained model joins beside the champion for 20% of the symbols (deploy_mode challenger)"
sql -c "SELECT name, deploy_mode, challenger_share FROM rl_mlops.configure('default', deploy_mode => 'challenger', challenger_share => 0.2)"
run=$(sql -At -c "SELECT rl_mlops.retrain('default')")
follow_run "$run"
for _ in 1 2 3; do arrive 30; done
sql -c "SELECT version, mode, traffic_share, paired_decisions, round(mean_difference::numeric, 6) AS mean_difference,
               round(test_statistic::numeric, 2) AS test_statistic, round(p_value_holm::numeric, 3) AS p_holm,
               beats_champion FROM rl_mlops.challengers" \
	-c "SELECT symbol, d.version AS decided_by, d.position FROM (SELECT DISTINCT symbol FROM public.market_bars) s,
	           LATERAL rl_mlops.decide('default', s.symbol) d ORDER BY 1"

echo "== status (the original service's JSON, with monitoring)"
sql -c "SELECT jsonb_pretty(rl_mlops.status('default') #- '{status,monitoring,versions}' #- '{status,monitoring,challengers}')"
echo "== model history"
sql -c "SELECT version, state, origin, parent_version, training_epochs, training_loss, size,
               round(holdout_sharpe::numeric, 2) AS holdout_sharpe, valid, deployed_at
          FROM rl_mlops.models_overview"
echo "== deployment history"
sql -c "SELECT id, action, version, previous_version, deployed_by, reason FROM rl_mlops.deployment_history"
echo "== serving: a backtest of SYM001's last year with rl_mlops.backtest_summary()"
sql -c "SELECT version, steps, round(total_log_return::numeric, 4) AS log_return,
	           round(buy_hold_log_return::numeric, 4) AS buy_hold, round(sharpe::numeric, 2) AS sharpe,
	           round(max_drawdown::numeric, 4) AS max_drawdown, round(turnover::numeric, 3) AS turnover
	      FROM rl_mlops.backtest_summary('default', 'SYM001',
	           (SELECT max(ts) FROM public.market_bars) - interval '1 year', (SELECT max(ts) FROM public.market_bars))"

echo "== the dashboard"
sql -At -c "SELECT rl_mlops.dashboard()" >"$demo/dashboard.html"
shot=""
if command -v chromium >/dev/null 2>&1; then
	run_as env HOME="$demo" chromium --headless=new --no-sandbox --disable-gpu --no-first-run \
		--user-data-dir="$demo/chromium" --virtual-time-budget=10000 --window-size=1400,2000 \
		--screenshot="$demo/dashboard.png" "file://$demo/dashboard.html" >/dev/null 2>&1 &&
		shot="  screenshot:  $demo/dashboard.png"
fi
echo "== the server log's lines for the last runs and monitor()"
grep 'rl_mlops:' "$demo/server.log" | tail -12 | sed 's/^.*LOG:  /   /'

cat <<MSG

rl_mlops demo cluster is running in $demo (Unix socket only).
  dashboard:   open $demo/dashboard.html in a browser (one file, no network needed)
$shot
  connect:     $as_user psql -h $demo/socket -d rl_demo
  try:         SELECT * FROM rl_mlops.live_performance;  SELECT * FROM rl_mlops.challengers;
  stop:        $as_user $PGBIN/pg_ctl -D $demo/data stop
  server log:  $demo/server.log
MSG
