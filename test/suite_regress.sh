#!/usr/bin/env bash
# pg_regress suite: sql/*.sql (not the extension script) against expected/,
# in a temporary instance pg_regress starts itself.
set -u
cd "$1"
source test/lib/cluster.sh
tests=$(cd sql && ls [0-9]*.sql 2>/dev/null | sed 's/\.sql$//')
[ -n "$tests" ] || { echo "no pg_regress tests found" >&2; exit 1; }
/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress \
	--bindir="$PGBIN" --temp-instance="$1/regress_instance" \
	--inputdir=. --outputdir="$1/regress_out" --dbname=rl_regress \
	$tests
rc=$?
[ $rc -ne 0 ] && [ -f "$1/regress_out/regression.diffs" ] && cat "$1/regress_out/regression.diffs"
exit $rc
