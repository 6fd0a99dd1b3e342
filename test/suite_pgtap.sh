#!/usr/bin/env bash
# pgTAP suite: test/pgtap/*.sql with pg_prove, against a throwaway cluster
# with pg_cron preloaded.
set -u
cd "$1"
source test/lib/cluster.sh
start_cluster "$1/pgtap_cluster" \
	"shared_preload_libraries = 'pg_cron'" \
	"cron.database_name = 'rl_test'" \
	"cron.host = '$1/pgtap_cluster/socket'" || exit 1
trap stop_cluster EXIT
createdb rl_test || exit 1
psql -qX -d rl_test -c 'CREATE EXTENSION pgtap' || exit 1
pg_prove -v -d rl_test test/pgtap/*.sql
