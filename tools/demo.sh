#!/usr/bin/env bash
# make demo: a throwaway local cluster with rl_mlops (and pg_cron) installed,
# then the lifecycle of a trading agent on synthetic market data.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
demo=${RL_MLOPS_DEMO_DIR:-/tmp/rl_mlops_demo}

if [ "$(id -u)" = 0 ]; then
	user=postgres
	id -u "$user" >/dev/null 2>&1 || useradd --system --create-home "$user"
	run_as() { runuser -u "$user" -- "$@"; }
else
	user=$(id -un)
	run_as() { "$@"; }
fi

if [ -f "$demo/data/postmaster.pid" ]; then
	echo "rl_mlops demo: stopping the previous demo cluster in $demo"
	run_as /usr/lib/postgresql/15/bin/pg_ctl -D "$demo/data" -m fast -w stop >/dev/null || true
fi
rm -rf "$demo"
mkdir -p "$demo"
cp "$src/test/lib/cluster.sh" "$src/tools/demo.sql" "$demo/"
chown -R "$user" "$demo"

run_as bash -c "
	set -euo pipefail
	source '$demo/cluster.sh'
	start_cluster '$demo' \"shared_preload_libraries = 'pg_cron'\" \
		\"cron.database_name = 'rl_demo'\" \"cron.host = '$demo/socket'\"
	createdb rl_demo
	psql -X -v ON_ERROR_STOP=1 -d rl_demo -f '$demo/demo.sql'
"

cat <<MSG

rl_mlops demo cluster is running in $demo (Unix socket only).
  connect:  sudo -u $user psql -h $demo/socket -d rl_demo
  stop:     sudo -u $user /usr/lib/postgresql/15/bin/pg_ctl -D $demo/data stop
  server log: $demo/server.log
MSG
