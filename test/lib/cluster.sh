# Shell helpers for the suites: a throwaway PostgreSQL 15 cluster that
# listens only on a private Unix socket, so any port number is free.
# Sourced by test/suite_*.sh; runs as the (non-root) test user.

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
export PATH="$PGBIN:$PATH"

# start_cluster DIR [extra postgresql.conf lines...]: initdb and start.
# Sets PGHOST, PGPORT and CLUSTER_DIR for the caller.
start_cluster() {
	CLUSTER_DIR=$1
	shift
	mkdir -p "$CLUSTER_DIR/socket"
	initdb -D "$CLUSTER_DIR/data" -A trust -N --no-instructions >"$CLUSTER_DIR/initdb.log" 2>&1 ||
		{ cat "$CLUSTER_DIR/initdb.log"; return 1; }
	export PGHOST="$CLUSTER_DIR/socket" PGPORT=5432
	{
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$PGHOST'"
		echo "port = $PGPORT"
		echo "fsync = off"
		echo "max_worker_processes = 16"
		echo "log_line_prefix = '%m [%p] %b '"
		for line in "$@"; do echo "$line"; done
	} >>"$CLUSTER_DIR/data/postgresql.conf"
	pg_ctl -D "$CLUSTER_DIR/data" -l "$CLUSTER_DIR/server.log" -w start >/dev/null ||
		{ cat "$CLUSTER_DIR/server.log"; return 1; }
}

# stop_cluster: fast shutdown of the cluster start_cluster made.
stop_cluster() {
	pg_ctl -D "$CLUSTER_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
}
