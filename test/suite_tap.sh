#!/usr/bin/env bash
# Perl TAP suite: test/t/*.pl with PostgreSQL::Test::Cluster and the
# helpers they share, test/lib/RlMlops.pm; each test starts the clusters
# it needs.
set -u
cd "$1"
PGXS_DIR=/usr/lib/postgresql/15/lib/pgxs
export PATH="/usr/lib/postgresql/15/bin:$PATH"
export PG_REGRESS="$PGXS_DIR/src/test/regress/pg_regress"
export TESTDIR="$1/tap" top_builddir="$1/tap"
export RL_MLOPS_SRC="$1"
mkdir -p "$TESTDIR"
prove -v -I "$PGXS_DIR/src/test/perl" -I test/lib -I test/t test/t/*.pl
