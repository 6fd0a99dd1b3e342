# The registry survives pg_dump -Fc / pg_restore into a fresh database:
# every model row, its large object (same bytes, same sha256) and the
# active pointer; the restored registry keeps working; DROP EXTENSION
# leaves no large object behind (ARCHITECTURE.md "Tables").
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RlMlops;

my $src_tree = $ENV{RL_MLOPS_SRC} or die "RL_MLOPS_SRC is not set";
my $helpers = slurp_file("$src_tree/test/pgtap/helpers/checkpoint.sql");

my $node = new_cluster('dump');
$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql('src', 'CREATE EXTENSION rl_mlops');
$node->safe_psql('src', $helpers);

# Agent d: m1 archived and pinned, m2 active, m3 validated, m4 rejected,
# m5 registered with optimizer state.  Agent e: one registered model.
$node->safe_psql('src', q{
	SET client_min_messages = error;
	SELECT rl_mlops.create_agent('d', 'rl_test.bars');
	SELECT rl_mlops.create_agent('e', 'rl_test.bars', window_size => 16, hidden_size => 8);
	CREATE TABLE rl_test.v AS SELECT 1 AS n, rl_test.add_model('d', 1, true, 'first') AS version;
	INSERT INTO rl_test.v SELECT 2, rl_test.add_model('d', 2, true, 'second');
	INSERT INTO rl_test.v SELECT 3, rl_test.add_model('d', 3);
	INSERT INTO rl_test.v SELECT 4, rl_mlops.import_model('d', rl_test.checkpoint(4, corrupt => 'huge'));
	SELECT rl_mlops.validate_model('d', version) FROM rl_test.v WHERE n = 4;
	INSERT INTO rl_test.v SELECT 5, rl_mlops.import_model('d', rl_test.checkpoint(5, optimizer => true),
	                                                      training_epochs => 5, training_loss => 0.5);
	SELECT rl_mlops.pin_model('d', version) FROM rl_test.v WHERE n = 1;
	SELECT rl_mlops.import_model('e', rl_test.checkpoint(6, window_size => 16, hidden_size => 8));
});

# Everything that must survive, one line per model.
my $models_q = q{
	SELECT agent, version, state, pinned, checkpoint, sha256, size_bytes,
	       md5(lo_get(checkpoint)), encode(sha256(lo_get(checkpoint)), 'hex') = sha256,
	       training_epochs, training_loss, validation -> 'ok', created_at, deployed_at, archived_at
	  FROM rl_mlops.models ORDER BY agent, version};
my $history_q = q{
	SELECT agent, version, previous_version, action, reason, deployed_by, deployed_at
	  FROM rl_mlops.deployments ORDER BY id};
my $active_q = q{SELECT rl_mlops.status('d') #>> '{status,model_info,current_version}'};
my $agents_q = q{SELECT name, source, window_size, hidden_size, keep_min FROM rl_mlops.agents ORDER BY name};

my $models_before = $node->safe_psql('src', $models_q);
my $history_before = $node->safe_psql('src', $history_q);
my $active_before = $node->safe_psql('src', $active_q);
my $agents_before = $node->safe_psql('src', $agents_q);
my @model_lines = split /\n/, $models_before;
is(scalar @model_lines, 6, 'six models before the dump');
my $sha_q = q{SELECT bool_and(encode(sha256(lo_get(checkpoint)), 'hex') = sha256) FROM rl_mlops.models};
is($node->safe_psql('src', $sha_q), 't', 'before the dump every large object matches its sha256');
is($node->safe_psql('src', 'SELECT count(*) FROM pg_largeobject_metadata'), '6',
	'six large objects before the dump');

my $dump = $node->basedir . '/registry.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', 'src' ], 'pg_dump -Fc');
$node->safe_psql('postgres', 'CREATE DATABASE dst');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', 'dst', $dump ],
	'pg_restore into a fresh database');

is($node->safe_psql('dst', $agents_q), $agents_before, 'agents restored, source relation included');
is($node->safe_psql('dst', $models_q), $models_before,
	'every model row restored with its large object: same oid, same bytes (md5), sha256 recomputed matches');
is($node->safe_psql('dst', $sha_q), 't', 'after the restore every large object matches its recorded sha256');
is($node->safe_psql('dst', $history_q), $history_before, 'deployment history restored');
is($node->safe_psql('dst', $active_q), $active_before, 'the active pointer is the same');
is($node->safe_psql('dst', 'SELECT count(*) FROM pg_largeobject_metadata'), '6',
	'exactly the registry\'s large objects were restored');
is($node->safe_psql('dst', q{
	SELECT bool_and(l.lomowner = e.extowner)
	  FROM rl_mlops.models m JOIN pg_largeobject_metadata l ON l.oid = m.checkpoint, pg_extension e
	 WHERE e.extname = 'rl_mlops'}), 't', 'restored large objects belong to the extension owner');

# The restored registry works: export, validate, rollback (the history's
# sequence was dumped too, so new rows do not collide), retention.
is($node->safe_psql('dst', q{
	SELECT md5(rl_mlops.export_model('d')) = md5(lo_get(checkpoint))
	  FROM rl_mlops.models WHERE agent = 'd' AND state = 'active'}), 't',
	'export_model of the restored active model');
is($node->safe_psql('dst', q{
	SELECT rl_mlops.validate_model('d', version) -> 'ok' FROM rl_test.v WHERE n = 3}), 'true',
	'a restored checkpoint validates');
my $first = $node->safe_psql('dst', 'SELECT version FROM rl_test.v WHERE n = 1');
is($node->safe_psql('dst', q{SET client_min_messages = error; SELECT rl_mlops.rollback('d', reason => 'after restore')}),
	$first, 'rollback works in the restored database');
is($node->safe_psql('dst', q{
	SELECT count(*) FROM rl_mlops.deployments WHERE agent = 'd' AND action = 'rollback' AND reason = 'after restore'}),
	'1', 'the rollback is recorded');
is($node->safe_psql('dst', q{SELECT rl_mlops.cleanup_old_models('d', dry_run => true) ->> 'count'}), '0',
	'retention runs in the restored database');

# DROP EXTENSION leaves no large object, in both databases.
$node->safe_psql('dst', 'DROP EXTENSION rl_mlops');
is($node->safe_psql('dst', 'SELECT count(*) FROM pg_largeobject_metadata'), '0',
	'DROP EXTENSION in the restored database leaves no large object');
$node->safe_psql('src', 'DROP EXTENSION rl_mlops CASCADE');
is($node->safe_psql('src', 'SELECT count(*) FROM pg_largeobject_metadata'), '0',
	'DROP EXTENSION ... CASCADE in the original database leaves no large object');
is($node->safe_psql('src', q{SELECT count(*) FROM pg_extension WHERE extname = 'rl_mlops'}), '0',
	'the extension is gone');

$node->stop;
done_testing();
