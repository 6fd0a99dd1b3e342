# ALTER EXTENSION rl_mlops UPDATE from 0.1.0 keeps a user's data and gives
# the same extension as a fresh install (sql/upgrade/README.md):
#   1. a 0.1.0 database with real content: two agents, a model trained in
#      another database and registered as 0.1.0's worker did, imported
#      models (validated, deployed, rolled back, pinned, rejected), runs,
#      GRANTs to a role;
#   2. after the update every row, large object, sha256 and the active
#      pointer are intact, serving answers the same, the GRANT on the old
#      retrain() carries over to the new one;
#   3. the extension's definitions equal a fresh 0.2.0 install's;
#   4. the upgraded registry trains and deploys, and pg_dump of it restores.
# The 0.1.0 script runs on the current library here (as it does between
# "make install" and ALTER EXTENSION on a real server), so its content is
# made by 0.1.0's SQL functions rather than by a 0.1.0 training worker.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RlMlops;

my $src_tree = $ENV{RL_MLOPS_SRC} or die "RL_MLOPS_SRC is not set";
my $fingerprint_q = slurp_file("$src_tree/test/sql/extension_fingerprint.sql");

my $node = new_cluster('upgrade', conf => 'max_worker_processes = 16');

# A trained checkpoint, from a fresh 0.2.0 database of the same cluster.
sql_in('postgres', 'CREATE DATABASE trainer');
sql_in('postgres', 'CREATE DATABASE old');
sql_in('postgres', 'CREATE DATABASE fresh');
my $bars = q{CREATE TABLE bars AS
	SELECT * FROM rl_mlops.synthetic_bars(2, 1500, 0.25, 0.01, '2026-01-01', '1 minute', 0.8);
	CREATE INDEX ON bars (symbol, ts);};
sql_in('trainer', "CREATE EXTENSION rl_mlops; $bars");
sql_in('trainer', q{SELECT rl_mlops.create_agent('t', 'bars') IS NULL;
	SELECT rl_mlops.configure('t', initial_epochs => 1, data_window => '10 days') IS NULL});
my ($rc, $out, $err) = $node->psql('trainer', "SELECT rl_mlops.retrain('t', async => false)");
like($err, qr/NOTICE:  run $out succeeded/, 'a model trained in another database');
my $trained_hex = sql_in('trainer', q{SELECT encode(rl_mlops.export_model('t'), 'hex')});
my $trained_meta = sql_in('trainer', q{
	SELECT format('%s, %s, %L, %L, %L', training_epochs, training_loss, data_from, data_to, metrics)
	  FROM rl_mlops.models WHERE agent = 't' AND state = 'active'});

#
# 1. 0.1.0 with content.
#
sql_in('old', "CREATE EXTENSION rl_mlops VERSION '0.1.0'; $bars");
is(sql_in('old', q{SELECT extversion FROM pg_extension WHERE extname = 'rl_mlops'}), '0.1.0',
	'1. version 0.1.0 installed');
sql_in('old', qq{
	SET client_min_messages = warning;
	CREATE ROLE upgrade_ops;
	GRANT USAGE ON SCHEMA rl_mlops TO upgrade_ops;
	GRANT SELECT ON ALL TABLES IN SCHEMA rl_mlops TO upgrade_ops;
	GRANT SELECT ON bars TO upgrade_ops;
	GRANT EXECUTE ON FUNCTION rl_mlops.retrain(text, boolean, integer, boolean, text),
	                          rl_mlops.deploy_model(text, text, text) TO upgrade_ops;
	SELECT rl_mlops.create_agent('a', 'bars') IS NULL;
	SELECT rl_mlops.create_agent('b', 'bars', window_size => 16, hidden_size => 8) IS NULL;
	SELECT rl_mlops.configure('a', initial_epochs => 1, incremental_epochs => 1,
	                          data_window => '10 days', keep_min => 5) IS NULL;
	-- the trained model, registered as 0.1.0's worker registers it
	INSERT INTO rl_mlops.runs (agent, state, epoch, epochs, started_at, finished_at)
	VALUES ('a', 'succeeded', 1, 1, now() - interval '1 hour', now() - interval '50 minutes');
	SELECT rl_mlops._register_trained('a', '20260101_000000', decode('$trained_hex', 'hex'),
	    currval('rl_mlops.runs_id_seq'), NULL, $trained_meta);
	UPDATE rl_mlops.runs SET produced_version = '20260101_000000';
	SELECT rl_mlops.validate_model('a', '20260101_000000') IS NULL;
	SELECT rl_mlops.deploy_model('a', '20260101_000000', 'trained') IS NULL;
	-- imported copies: deployed, rolled back, pinned
	SELECT rl_mlops.import_model('a', decode('$trained_hex', 'hex'), 3, 0.25) IS NULL;
	SELECT rl_mlops.validate_model('a', max(version)) IS NULL FROM rl_mlops.models WHERE agent = 'a';
	SELECT rl_mlops.deploy_model('a', max(version), 'imported') IS NULL FROM rl_mlops.models WHERE agent = 'a';
	SELECT rl_mlops.rollback('a', reason => 'back to the trained one') IS NULL;
	SELECT rl_mlops.pin_model('a', max(version)) IS NULL FROM rl_mlops.models WHERE agent = 'a';
	-- a failed run and a registered version of b whose checkpoint does not fit b
	INSERT INTO rl_mlops.runs (agent, state, error, started_at, finished_at)
	VALUES ('b', 'failed', 'not enough training data', now(), now());
});
($rc, $out, $err) = $node->psql('old', qq{SELECT rl_mlops.import_model('b', decode('$trained_hex', 'hex'))});
like($err, qr/ERROR:  .*architecture|ERROR:  .*shape/, '1. a checkpoint that does not fit agent b is refused by 0.1.0');

# What must survive, with every 0.1.0 column (0.2.0 adds columns at the end).
my %tables = (
	agents => 'name',
	models => 'agent, version',
	deployments => 'id',
	runs => 'id');
my %old_columns;
for my $t (keys %tables)
{
	$old_columns{$t} = sql_in('old', qq{SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum)
		FROM pg_attribute WHERE attrelid = 'rl_mlops.$t'::regclass AND attnum > 0 AND NOT attisdropped});
}
sub rows_of
{
	my ($db, $t) = @_;
	return sql_in($db, "SELECT $old_columns{$t} FROM rl_mlops.$t ORDER BY $tables{$t}");
}
my %before = map { $_ => rows_of('old', $_) } keys %tables;
my $lo_q = q{SELECT string_agg(format('%s %s %s', m.version, m.checkpoint,
	                                  encode(sha256(lo_get(m.checkpoint)), 'hex') = m.sha256), ', '
	                           ORDER BY m.agent, m.version)
	           FROM rl_mlops.models m};
my $serve_q = q{SELECT string_agg(format('%s %s %s %s', d.symbol, x.version, x.action, x.probabilities), ', '
	                              ORDER BY d.symbol)
	              FROM (SELECT DISTINCT symbol FROM bars) d,
	                   LATERAL rl_mlops.decide('a', d.symbol) x};
my $active_q = q{SELECT version FROM rl_mlops.models WHERE agent = 'a' AND state = 'active'};
my $lo_before = sql_in('old', $lo_q);
my $serve_before = sql_in('old', $serve_q);
my $active_before = sql_in('old', $active_q);
like($lo_before, qr/^\S+ \d+ t, \S+ \d+ t$/, '1. two versions, every large object matches its sha256');
like($serve_before, qr/^SYM001 20260101_000000 \d /, '1. the trained version serves');
is(sql_in('old', 'SELECT count(*) FROM rl_mlops.deployments'), '3', '1. deploy, deploy, rollback recorded');

#
# 2. ALTER EXTENSION UPDATE.
#
sql_in('old', 'ALTER EXTENSION rl_mlops UPDATE');
is(sql_in('old', q{SELECT extversion FROM pg_extension WHERE extname = 'rl_mlops'}), '0.2.0',
	'2. updated to 0.2.0');
for my $t (sort keys %tables)
{
	is(rows_of('old', $t), $before{$t}, "2. every row of rl_mlops.$t is intact");
}
is(sql_in('old', $lo_q), $lo_before, '2. every large object is intact and matches its sha256');
is(sql_in('old', $active_q), $active_before, '2. the active version is the same');
is(sql_in('old', $serve_q), $serve_before, '2. decide() gives the same answers');
is(sql_in('old', q{SELECT has_function_privilege('upgrade_ops', 'rl_mlops.retrain(text, boolean, integer, boolean)', 'EXECUTE')}),
	't', '2. the GRANT on the old retrain() carries over to the new one');
is(sql_in('old', q{SELECT count(*) FROM pg_proc WHERE proname = 'retrain' AND pronamespace = 'rl_mlops'::regnamespace}),
	'1', '2. the old retrain() signature is gone');
is(sql_in('old', 'SELECT count(*) FROM rl_mlops.check_integrity()'), '0', '2. check_integrity() finds nothing');

#
# 3. The same definitions as a fresh install.
#
# The fresh install gets the GRANTs the user made in 1, in 0.2.0's terms.
# (The user granted SELECT on the tables 0.1.0 had; tables new in 0.2.0
# have no GRANT of theirs, in either database.)
my $old_tables = sql_in('old', q{
	SELECT string_agg(c.oid::regclass::text, ', ' ORDER BY c.oid::regclass::text) FROM pg_class c
	 WHERE c.relnamespace = 'rl_mlops'::regnamespace AND c.relkind IN ('r', 'v')
	   AND has_table_privilege('upgrade_ops', c.oid, 'SELECT')});
sql_in('fresh', qq{
	CREATE EXTENSION rl_mlops;
	GRANT USAGE ON SCHEMA rl_mlops TO upgrade_ops;
	GRANT SELECT ON $old_tables TO upgrade_ops;
	GRANT EXECUTE ON FUNCTION rl_mlops.retrain(text, boolean, integer, boolean),
	                          rl_mlops.deploy_model(text, text, text) TO upgrade_ops;
});
my $fresh = sql_in('fresh', $fingerprint_q);
my $upgraded = sql_in('old', $fingerprint_q);
ok(length($fresh) > 10000, '3. the fingerprint of a fresh install lists the extension\'s definitions');
is($upgraded, $fresh, '3. the upgraded extension has the definitions (and GRANTs) of a fresh install');

#
# 4. The upgraded registry works: a run as the operator, a dump, a restore.
#
sql_in('old', q{GRANT EXECUTE ON FUNCTION rl_mlops.retrain(text, boolean, integer, boolean) TO upgrade_ops});
($rc, $out, $err) = $node->psql('old', "SET ROLE upgrade_ops; SELECT rl_mlops.retrain('a', async => false)");
like($err, qr/NOTICE:  run \d+ succeeded|WARNING:  run \d+ ended rejected/,
	'4. the operator retrains on the upgraded registry (incremental from the active model)');
is(sql_in('old', q{SELECT parent_version FROM rl_mlops.runs ORDER BY id DESC LIMIT 1}), $active_before,
	'4. warm-started from the version that was active before the update');
is(sql_in('old', 'SELECT count(*) FROM rl_mlops.check_integrity()'), '0', '4. check_integrity() finds nothing');

my $dump = $node->basedir . '/old.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-d', $node->connstr('old'), '-f', $dump ], '4. pg_dump of the upgraded database');
sql_in('postgres', 'CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '-d', $node->connstr('restored'), $dump ], '4. pg_restore into a new database');
for my $t (sort keys %tables)
{
	is(rows_of('restored', $t), rows_of('old', $t), "4. rl_mlops.$t restored");
}
is(sql_in('restored', $lo_q), sql_in('old', $lo_q), '4. large objects restored');
is(sql_in('restored', $serve_q), sql_in('old', $serve_q), '4. the restored database serves the same');

$node->stop;
done_testing();
