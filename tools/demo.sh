#!/usr/bin/env bash
# make demo: the main job on a throwaway local cluster.  Starts PostgreSQL
# with pg_cron, makes synthetic 1-minute bars, creates the agent, trains,
# validates and deploys the first model, schedules weekly retraining, runs
# one incremental retrain, and shows status, history and a backtest.
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

echo "== market data: 5 symbols x 10 days of synthetic 1-minute bars (AR(1) log returns, phi 0.25)"
sql -c "CREATE TABLE public.market_bars AS
          SELECT * FROM rl_mlops.synthetic_bars(symbols => 5, bars => 14400,
                 start_at => date_trunc('minute', now()) - interval '10 days')" \
	-c "CREATE INDEX ON public.market_bars (symbol, ts)" \
	-c "SELECT symbol, count(*) AS bars, min(ts), max(ts), round(min(price)::numeric, 2) AS min_price,
	           round(max(price)::numeric, 2) AS max_price FROM public.market_bars GROUP BY 1 ORDER BY 1"

echo "== create the agent (window 32, 64x64 actor-critic) and check the trainer path"
sql -c "SELECT name, source, window_size, hidden_size, incremental_epochs, data_window, retention_days
          FROM rl_mlops.create_agent('default', 'public.market_bars')" \
	-c "SELECT name, initial_epochs FROM rl_mlops.configure('default', initial_epochs => 20)" \
	-c "SELECT ok, libtorch_version, loss_before, loss_after, max_forward_diff FROM rl_mlops.check_trainer()"

echo "== first training (from scratch): Step 1 data, Step 2 PPO, Step 3 validation, Step 4 deploy"
run=$(sql -At -c "SELECT rl_mlops.retrain('default')")
follow_run "$run"

echo "== schedule weekly retraining with pg_cron (checked hourly)"
sql -c "SELECT rl_mlops.schedule_retraining('default', interval_days => 7)"

echo "== one incremental retrain (5 epochs, warm start from the active model)"
run=$(sql -At -c "SELECT rl_mlops.retrain('default')")
follow_run "$run"

echo "== status (the original service's JSON)"
sql -c "SELECT jsonb_pretty(rl_mlops.status('default'))"
echo "== model history"
sql -c "SELECT version, state, origin, parent_version, training_epochs, training_loss, size,
               round(holdout_sharpe::numeric, 2) AS holdout_sharpe, valid, deployed_at
          FROM rl_mlops.models_overview"
echo "== deployment history"
sql -c "SELECT id, action, version, previous_version, deployed_by, reason FROM rl_mlops.deployment_history"
echo "== holdout backtest of each version (greedy policy, 5 bp costs) against buy-and-hold"
sql -c "SELECT version, (metrics #>> '{holdout,steps}')::int AS steps,
               round((metrics #>> '{holdout,total_log_return}')::numeric, 4) AS log_return,
               round((metrics #>> '{holdout,buy_hold_log_return}')::numeric, 4) AS buy_hold,
               round((metrics #>> '{initial,total_log_return}')::numeric, 4) AS before_training,
               round((metrics #>> '{holdout,max_drawdown}')::numeric, 4) AS max_drawdown,
               round((metrics #>> '{holdout,turnover}')::numeric, 3) AS turnover
          FROM rl_mlops.models ORDER BY created_at"
echo "== serving: the position to hold now, and a backtest of SYM001's last two days with rl_mlops.backtest_summary()"
sql -c "SELECT position, action, probabilities, ts, round(price::numeric, 2) AS price, version
          FROM rl_mlops.decide('default', 'SYM001')" \
	-c "SELECT version, steps, round(total_log_return::numeric, 4) AS log_return,
	           round(buy_hold_log_return::numeric, 4) AS buy_hold, round(sharpe::numeric, 2) AS sharpe,
	           round(max_drawdown::numeric, 4) AS max_drawdown, round(turnover::numeric, 3) AS turnover
	      FROM rl_mlops.backtest_summary('default', 'SYM001', now() - interval '2 days', now())"
echo "== the server log's lines for the last run"
grep 'rl_mlops:' "$demo/server.log" | tail -12 | sed 's/^.*LOG:  /   /'

cat <<MSG

rl_mlops demo cluster is running in $demo (Unix socket only).
  connect:     $as_user psql -h $demo/socket -d rl_demo
  try:         SELECT * FROM rl_mlops.training_progress;  SELECT rl_mlops.rollback('default');
  stop:        $as_user $PGBIN/pg_ctl -D $demo/data stop
  server log:  $demo/server.log
MSG
